"""The command line: the only place that writes to the terminal or decides an exit code.

One module per command; shared options live in ``options.py``.
"""

from __future__ import annotations

import logging
import sys

import click

from fleetdiag import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fleetdiag")
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-vv for debug).")
def main(verbose: int) -> None:
    """Find where TCP packets vanish across a fleet of Linux servers."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="fleetdiag: %(message)s")
    if verbose < 2:
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)


def _register() -> None:
    from fleetdiag.cli.armed import fetch
    from fleetdiag.cli.check import check
    from fleetdiag.cli.collect import collect
    from fleetdiag.cli.history import diff, history, report

    main.add_command(collect)
    main.add_command(check)
    main.add_command(fetch)
    for command in (report, history, diff):
        main.add_command(command)


_register()
