"""``python -m fleetdiag``."""

from fleetdiag.cli import main

main()
