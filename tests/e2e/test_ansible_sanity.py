"""The fleetdiag.drops collection passes ansible-test sanity, and ansible-galaxy builds its tarball."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from tests.lab.requirements import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = ROOT / "ansible_collections" / "fleetdiag" / "drops"
# ansible-test bootstraps pip in each of its venvs with a script it downloads from
# ci-files.testing.ansible.com; where only package registries answer, this stand-in does the same
# from the interpreter's bundled pip, then installs what ansible-test asks for from the registry.
GET_PIP_STAND_IN = '''\
import ensurepip, os, subprocess, sys
ensurepip.bootstrap(upgrade=True)
os.environ.pop("PIP_CONFIG_FILE", None)  # ensurepip points it at /dev/null for its own run
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
'''


def ansible_test_home() -> Path:
    """A HOME of its own for ansible-test (its venvs are cached there), with the user's pip settings:
    ansible-test runs pip with a clean environment, so PIP_CERT and the like must be in a pip.conf."""
    home = Path(tempfile.gettempdir()) / f"fleetdiag-ansible-test-{os.getuid()}"
    cache = home / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for script in ("get_pip_24_2.py",):  # the pip version ansible-core 2.19 bootstraps
        if not (cache / script).exists():
            (cache / script).write_text(GET_PIP_STAND_IN)
    conf = configparser.ConfigParser()
    conf.read([Path.home() / ".pip" / "pip.conf", Path.home() / ".config" / "pip" / "pip.conf"])
    if not conf.has_section("global"):
        conf.add_section("global")
    for env, key in (("PIP_CERT", "cert"), ("PIP_INDEX_URL", "index-url"), ("PIP_FIND_LINKS", "find-links")):
        if os.environ.get(env):
            conf.set("global", key, os.environ[env])
    (home / ".config" / "pip").mkdir(parents=True, exist_ok=True)
    with open(home / ".config" / "pip" / "pip.conf", "w") as file:
        conf.write(file)
    return home


def collection_copy(tmp_path: Path) -> Path:
    """The collection at a path ending ansible_collections/fleetdiag/drops, outside any git tree."""
    target = tmp_path / "ansible_collections" / "fleetdiag" / "drops"
    shutil.copytree(COLLECTION, target, ignore=shutil.ignore_patterns("output", "__pycache__", "*.tar.gz"))
    return target


def test_ansible_test_sanity_passes(tmp_path: Path) -> None:
    ansible_test = shutil.which("ansible-test") or str(Path(sys.executable).with_name("ansible-test"))
    skip_or_fail("ansible-test sanity", [] if Path(ansible_test).exists() else ["ansible-test (pip install '.[test]')"])
    target = collection_copy(tmp_path)
    env = {**os.environ, "HOME": str(ansible_test_home())}
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    result = subprocess.run(
        [ansible_test, "sanity", "--python", version, "--color", "no"],
        cwd=target, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith(("ERROR", "FATAL"))]
    assert result.returncode == 0, "\n".join(problems) or result.stderr[-4000:]
    assert "Running sanity test \"validate-modules\"" in result.stdout + result.stderr


def test_galaxy_builds_the_collection_tarball(tmp_path: Path) -> None:
    target = collection_copy(tmp_path)
    build = subprocess.run(
        [sys.executable, "-m", "ansible", "galaxy", "collection", "build", "--output-path", str(tmp_path / "out")],
        cwd=target, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (tarball,) = (tmp_path / "out").glob("fleetdiag-drops-*.tar.gz")
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    assert {"MANIFEST.json", "meta/runtime.yml", "plugins/action/window.py", "plugins/modules/window.py",
            "plugins/action/save.py", "playbooks/sweep.yml"} <= names  # fmt: skip
    assert not [n for n in names if n.startswith("tests/output")]
