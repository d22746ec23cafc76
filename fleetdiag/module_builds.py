"""Compile once per kernel release: systemtap modules built on one host, shipped to the others.

A systemtap module takes minutes to compile and needs stap, the kernel headers and debuginfo;
it then runs on every host with the same kernel release, which need only systemtap-runtime.
In a sweep, hosts that chose systemtap and can compile announce themselves after detection.
The first of them to reach its window builds the module (``systemtap.build_script``, its own
command with its own temp dir); every other host of that release waits for it and receives it
in its window script. A failed build is reported to every host of the release once, with the
builder's words, and not retried on each host in turn.

Where the user gave the controller a kernel tree for a release (``--stap-kernel RELEASE=DIR``,
``fleetdiag.stap_controller_build``), the controller builds that release's module itself, first,
and no host needs stap, headers or debuginfo.

Built modules are kept in the controller's cache (``$FLEETDIAG_CACHE_DIR``, else
``$XDG_CACHE_HOME/fleetdiag``, else ``~/.cache/fleetdiag``; 0700) by release, by the kernel's build
id where the host's is known, and by a digest of fleetdiag's probe sources, so the next sweep of the
same kernels compiles nothing and a rebuilt kernel of the same release never loads a stale module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from fleetdiag.errors import HostError
from fleetdiag.model import HostFacts, ModuleOrigin, StapModule
from fleetdiag.stap_controller_build import (
    BUILT_ON,
    ControllerBuildError,
    KernelTree,
    build_mismatch,
    build_on_controller,
)
from fleetdiag.tracers import systemtap
from fleetdiag.tracers.base import probe_text
from fleetdiag.transport.base import Transport

log = logging.getLogger(__name__)

# The controller waits this long for the compile's output beyond the host's own limit.
_BUILD_MARGIN_S = 60
# The module travels inside the window script, one argument of `sh -c`: Linux caps one argument
# at 128 KiB (MAX_ARG_STRLEN). fleetdiag's module is about 55 KB gzipped (75 KB in base64).
MAX_SHIPPED_CHARS = 110_000
# The probe sources a module is built from: any change to them means a new module.
_SOURCES = ("stap_backlog.stp", "stap_statement.stp", "stap_statement_v6.stp", "stap_return.stp", "stap_build.sh")


class ModuleUnavailable(HostError):
    """No module for this host's kernel release: none could be built, or its build failed."""


def sources_digest() -> str:
    """16 hex digits over the probe sources and the map cap: what a cached module was built from."""
    digest = hashlib.sha256(str(systemtap.MAP_KEYS_MAX).encode())
    for name in _SOURCES:
        digest.update(probe_text(name).encode())
    return digest.hexdigest()[:16]


def default_cache_dir() -> Path:
    """Where built modules are kept between runs."""
    if os.environ.get("FLEETDIAG_CACHE_DIR"):
        return Path(os.environ["FLEETDIAG_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fleetdiag"


@dataclass(frozen=True)
class ModuleCache:
    """Modules on the controller's disk: DIR/stap/RELEASE/DIGEST.ko.gz beside DIGEST.json."""

    directory: Path

    def _paths(self, kernel: str, build_id: str | None = None) -> tuple[Path, Path]:
        if "/" in kernel or kernel in ("", ".", ".."):
            raise ValueError(f"not a kernel release: {kernel!r}")
        if build_id is not None and not (build_id.isalnum() and build_id.isascii()):
            raise ValueError(f"not a build id: {build_id!r}")
        name = sources_digest() + (f"-{build_id}" if build_id else "")
        base = self.directory / "stap" / kernel / name
        return base.with_suffix(".ko.gz"), base.with_suffix(".json")

    def load(self, kernel: str, build_id: str | None = None) -> StapModule | None:
        """The cached module for KERNEL (that very build, when BUILD_ID is known) from today's probe sources, or None."""
        data_path, meta_path = self._paths(kernel, build_id)
        try:
            meta = json.loads(meta_path.read_text())
            data = data_path.read_bytes()
        except (OSError, ValueError):
            return None
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            log.warning("ignoring the cached module %s: its checksum does not match", data_path)
            return None
        return StapModule(data, kernel, meta["tier"], meta["built_on"], meta["build_seconds"], meta["built_at"],
                          meta.get("build_id"))  # fmt: skip

    def store(self, module: StapModule) -> None:
        """Keep MODULE (a failure to write is logged: the sweep's results matter more)."""
        data_path, meta_path = self._paths(module.kernel, module.build_id)
        meta = {key: value for key, value in asdict(module).items() if key != "gzip_data"}
        meta.update(sha256=module.sha256, built_at=module.built_at or datetime.now(timezone.utc).isoformat())
        try:
            for directory in (self.directory, self.directory / "stap", data_path.parent):
                directory.mkdir(mode=0o700, exist_ok=True)
            _write_atomically(data_path, module.gzip_data)
            _write_atomically(meta_path, json.dumps(meta, indent=1).encode())
        except OSError as exc:
            log.warning("could not cache the systemtap module for %s in %s: %s", module.kernel, self.directory, exc)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@dataclass
class _Release:
    """One kernel release's state in a sweep."""

    builders: set[str] = field(default_factory=set)  # announced, not yet withdrawn
    building: str | None = None
    module: StapModule | None = None
    cached: bool = False
    cache_checked: bool = False
    failure: str | None = None


class ModuleBuilds:
    """The sweep-wide coordinator: one build per kernel release, every host of it served."""

    def __init__(
        self,
        cache: ModuleCache | None = None,
        wait_s: float = systemtap.PREPARE_TIMEOUT_S + _BUILD_MARGIN_S,
        trees: dict[str, KernelTree] | None = None,
    ):
        self.cache = cache
        self.wait_s = wait_s
        self.trees = dict(trees or {})  # release -> where the controller builds it (--stap-kernel)
        self._releases: dict[str, _Release] = {}
        self._condition = threading.Condition()

    @staticmethod
    def _key(facts: HostFacts) -> str:
        """One build per kernel build: the release, and its build id where the host gave one."""
        return f"{facts.kernel or ''}@{facts.kernel_build_id or ''}"

    def announce(self, host: str, facts: HostFacts) -> None:
        """HOST chose systemtap and can compile for its release: others may wait for its build."""
        if facts.kernel and systemtap.build_problem(facts) is None:
            with self._condition:
                self._releases.setdefault(self._key(facts), _Release()).builders.add(host)

    def withdraw(self, host: str) -> None:
        """HOST will not build after all (its run ended): nobody waits for it any more."""
        with self._condition:
            for release in self._releases.values():
                release.builders.discard(host)
            self._condition.notify_all()

    def module_for(self, host: str, facts: HostFacts, transport: Transport) -> tuple[StapModule, ModuleOrigin]:
        """The module for HOST's release: cached, built by another host, or built here now."""
        kernel = facts.kernel or ""
        can_build = systemtap.build_problem(facts) is None  # also when it came to systemtap by fallback
        tree = self.trees.get(kernel)
        deadline = time.monotonic() + self.wait_s
        with self._condition:
            release = self._releases.setdefault(self._key(facts), _Release())
            if not release.cache_checked:  # once per release and sweep, before anyone builds
                release.cache_checked = True
                release.module = self.cache.load(kernel, facts.kernel_build_id) if self.cache is not None else None
                release.cached = release.module is not None
            while True:
                if release.module is not None:
                    return release.module, self._origin(host, release)
                if release.failure is not None:
                    raise ModuleUnavailable(release.failure)
                if release.building is None and tree is not None:  # the user's tree first: no host compiles
                    release.building = BUILT_ON
                    break
                if release.building is None and (host in release.builders or can_build):
                    release.building = host
                    break
                if release.building is None and not release.builders:
                    raise ModuleUnavailable(
                        f"no host in this run can build a systemtap module for {kernel or 'its kernel'} "
                        "(one needs stap, kernel headers and debuginfo for that release)",
                        hint="give the controller that kernel's build tree (--stap-kernel RELEASE=DIR), or add a host "
                        "with the same kernel and its devel and debuginfo packages once: the module is then cached",
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ModuleUnavailable(f"no systemtap module for {kernel} within {self.wait_s:.0f} s")
                self._condition.wait(remaining)
        if tree is not None:
            return self._build_on_controller(host, facts, tree, release)
        return self._build(host, facts, transport, release)

    def _build_on_controller(self, host: str, facts: HostFacts, tree: KernelTree, release: _Release) -> tuple[StapModule, ModuleOrigin]:
        """Compile from the user's tree here; a failure (or another build) is every host of the release's one sentence."""
        mismatch = build_mismatch(tree, facts)
        if mismatch:
            self._settle(release, BUILT_ON, failure=mismatch)
            raise ModuleUnavailable(mismatch, hint="give the tree of the kernel build the hosts run")
        try:
            module = build_on_controller(tree, facts)
        except ControllerBuildError as exc:
            self._settle(release, BUILT_ON, failure=str(exc))
            raise ModuleUnavailable(str(exc)) from exc
        except BaseException:
            self._settle(release, BUILT_ON, failure=None)
            raise
        if len(module.encoded()) > MAX_SHIPPED_CHARS:
            failure = f"the systemtap module built on the controller is {len(module.gzip_data) // 1024} KiB gzipped, too big to ship"
            self._settle(release, BUILT_ON, failure=failure)
            raise ModuleUnavailable(failure)
        log.debug("controller: built the systemtap module for %s in %.0f s", facts.kernel, module.build_seconds)
        with self._condition:
            release.module = module
            release.building = None
            self._condition.notify_all()
        if self.cache is not None:
            self.cache.store(module)
        return module, self._origin(host, release)

    def _build(self, host: str, facts: HostFacts, transport: Transport, release: _Release) -> tuple[StapModule, ModuleOrigin]:
        started = time.monotonic()
        try:
            result = transport.run(systemtap.build_script(facts), timeout=systemtap.PREPARE_TIMEOUT_S + _BUILD_MARGIN_S)
        except BaseException:
            # The connection failed, not the compile: another host of the release may still build.
            self._settle(release, host, failure=None)
            raise
        try:
            module = systemtap.parse_build(result.stdout, facts, host, time.monotonic() - started)
        except ValueError as exc:
            # The compile failed: every host of this release hears why, once; nobody retries it.
            failure = ModuleUnavailable(f"{exc} (systemtap module build on {host})")
            self._settle(release, host, failure=failure.message)
            raise failure from exc
        if len(module.encoded()) > MAX_SHIPPED_CHARS:
            failure = ModuleUnavailable(
                f"the systemtap module built on {host} is {len(module.gzip_data) // 1024} KiB gzipped, more than "
                f"fits in one remote command ({MAX_SHIPPED_CHARS // 1024} KiB in base64)"
            )
            self._settle(release, host, failure=failure.message)
            raise failure
        log.debug("%s: built the systemtap module for %s in %.0f s", host, facts.kernel, module.build_seconds)
        with self._condition:
            release.module = module
            release.building = None
            self._condition.notify_all()
        if self.cache is not None:
            self.cache.store(module)
        return module, ModuleOrigin("built here", host, module.sha256, module.build_seconds)

    def _settle(self, release: _Release, host: str, failure: str | None) -> None:
        with self._condition:
            release.building = None
            release.builders.discard(host)
            release.failure = failure or release.failure
            self._condition.notify_all()

    @staticmethod
    def _origin(host: str, release: _Release) -> ModuleOrigin:
        module = release.module
        assert module is not None
        if release.cached:
            return ModuleOrigin("cache", module.built_on, module.sha256, module.build_seconds)
        if module.built_on == BUILT_ON:
            return ModuleOrigin("built on controller", BUILT_ON, module.sha256, module.build_seconds)
        how = "built here" if module.built_on == host else "shipped"
        return ModuleOrigin(how, module.built_on, module.sha256, module.build_seconds)
