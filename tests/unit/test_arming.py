"""Armed windows: the arm and fetch protocol, run for real through the local transport, and its pure parts.

The local transport drives the same scripts as SSH (``fleetdiag.arming``): the window is armed in
this machine's TMPDIR, its keeper runs detached, and each test checks what is left behind.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fleetdiag.armed_fetch import fetch_host, finish
from fleetdiag.armed_sweep import ArmedHost, ArmOptions, FleetInstant, arm_fleet
from fleetdiag.arming import HostClock, parse_armed_dir, parse_clock
from fleetdiag.cli.armed import choose_mode, parse_duration
from fleetdiag.connect_ramp import ConnectRamp
from fleetdiag.errors import UnreachableError, UsageError
from fleetdiag.history import ResultsStore
from fleetdiag.history.pending import load_pending, save_pending
from fleetdiag.history.store import ResultsError
from fleetdiag.interrupt import StopRequest
from fleetdiag.model import HostSpec, Status, Window
from fleetdiag.sweep import SweepOptions
from fleetdiag.transport import SshOptions

LOCAL = HostSpec(name="here", address="localhost", connection="local", groups=("web",))


@pytest.fixture
def tmpdir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The armed windows' dirs go to a TMPDIR of the test's own, to see what is left there."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return tmp_path


def options(duration: int = 2) -> SweepOptions:
    return SweepOptions(window=Window(duration_s=duration), tracer="counters")


def keeper_alive(armed: ArmedHost) -> bool:
    pid_file = Path(armed.directory) / "keeper.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text()), 0)
    except ProcessLookupError:
        return False
    return True


def test_arm_then_fetch_collects_the_window_and_leaves_nothing(tmpdir_env: Path) -> None:
    stop = StopRequest()
    fleet = arm_fleet([LOCAL], options(), ArmOptions(pickup_s=60), stop=stop)
    assert not fleet.failed, fleet.failed
    (armed,) = fleet.armed
    assert Path(armed.directory).parent == tmpdir_env
    assert oct(Path(armed.directory).stat().st_mode & 0o777) == "0o700"
    assert abs(armed.clock_offset_s) < 0.2 and 0 <= armed.clock_bound_s < 0.2
    assert fleet.instant > fleet.launch
    sweep = finish(fleet, SshOptions(), forks=4, wanted="counters", stop=stop)
    (host,) = sweep.hosts
    assert host.status is Status.OK, host.error
    assert sweep.mode == "armed"
    assert host.window_end - host.window_start == pytest.approx(2, abs=0.3)
    assert host.window_start >= fleet.instant - 0.05  # it waited for the instant
    assert host.window_start - fleet.instant < 1.0
    assert "TCPBacklogDrop" in host.counters
    assert host.groups == ("web",)  # the report sorts armed hosts by their groups too
    assert host.timeline is not None and host.timeline.start == pytest.approx(host.window_start, abs=0.05)
    assert list(tmpdir_env.iterdir()) == []  # fetched and removed; the keeper is gone with it


def test_an_unfetched_result_leaves_the_host_at_the_pickup_deadline(tmpdir_env: Path) -> None:
    fleet = arm_fleet([LOCAL], options(duration=1), ArmOptions(pickup_s=1), stop=StopRequest())
    (armed,) = fleet.armed
    assert keeper_alive(armed)
    deadline = time.monotonic() + (fleet.window_end - time.time()) + 1 + 5
    while Path(armed.directory).exists():
        assert time.monotonic() < deadline, "the host kept the result past its pickup deadline"
        time.sleep(0.1)
    assert list(tmpdir_env.iterdir()) == []


def test_a_stop_before_the_instant_disarms_the_host(tmpdir_env: Path) -> None:
    stop = StopRequest()
    fleet = arm_fleet([LOCAL], options(), ArmOptions(start_in_s=60), stop=stop)
    (armed,) = fleet.armed
    stop.stop("SIGINT")
    started = time.monotonic()
    sweep = finish(fleet, SshOptions(), forks=4, wanted="counters", stop=stop)
    assert time.monotonic() - started < 10
    (host,) = sweep.hosts
    assert host.status is Status.FAILED
    assert host.error == "interrupted by SIGINT before its window started (the armed window was removed)"
    assert sweep.interrupted == "SIGINT"
    assert list(tmpdir_env.iterdir()) == []


def test_a_stop_during_the_window_ends_it_early_with_what_it_saw(tmpdir_env: Path) -> None:
    stop = StopRequest()
    fleet = arm_fleet([LOCAL], options(duration=60), ArmOptions(), stop=stop)
    time.sleep(max(0.0, fleet.instant - time.time()) + 1.5)
    stop.stop("SIGTERM")
    sweep = finish(fleet, SshOptions(), forks=4, wanted="counters", stop=stop)
    (host,) = sweep.hosts
    assert host.status is Status.OK, host.error
    assert host.window_end - host.window_start < 10
    assert host.notes[-1].startswith("window cut short by SIGTERM after")
    assert list(tmpdir_env.iterdir()) == []


def test_a_lost_directory_or_a_reboot_is_said_in_one_sentence(tmpdir_env: Path) -> None:
    fleet = arm_fleet([LOCAL], options(duration=1), ArmOptions(start_in_s=30), stop=StopRequest())
    (armed,) = fleet.armed
    keeper = int((Path(armed.directory) / "keeper.pid").read_text())
    # The arm script may return before the detached keeper has called setsid (a loaded machine):
    # its process group exists only from then on.
    deadline = time.monotonic() + 10
    while os.getpgid(keeper) != keeper and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(keeper, 15)
    time.sleep(0.3)
    os.system(f"rm -rf {armed.directory}")
    ramp = ConnectRamp(SshOptions())
    gone = fetch_host(armed, ramp, "counters", stop=False)
    assert gone.status is Status.FAILED
    assert gone.error.startswith(f"its armed window's directory {armed.directory} is gone")
    rebooted = fetch_host(replace(armed, boot_id="00000000-0000-0000-0000-000000000000"), ramp, "counters", stop=False)
    assert rebooted.error == f"the host rebooted during its armed window: its result ({armed.directory}) is lost"


def test_clock_offset_is_taken_at_the_round_trip_midpoint() -> None:
    out = "facts\n@@fleetdiag ask\n@@fleetdiag clock 1005.25 6f8bf8c6-4961-4377-94ab-8b4e50a4b676\n@@fleetdiag ask\n"
    clock = parse_clock(out, sent=1000.0, received=1000.5)
    assert clock == HostClock(1005.25, 1000.0, 1000.5, "6f8bf8c6-4961-4377-94ab-8b4e50a4b676")
    assert (clock.offset_s, clock.bound_s) == (5.0, 0.25)
    assert parse_clock("no clock here\n", 0, 1) is None
    assert parse_armed_dir("x\n@@fleetdiag armed /tmp/fleetdiag-armed.AbC123\n") == "/tmp/fleetdiag-armed.AbC123"
    assert parse_armed_dir("@@fleetdiag armed /tmp/x; rm -rf /\n") is None


def test_the_instant_leaves_room_for_the_waves_still_to_come() -> None:
    stop = StopRequest()
    instant = FleetInstant(total=10, forks=2, start_in_s=None, timeout_s=5)
    assert instant.enter() and instant.enter() and not instant.enter()
    instant.leave()  # one first-wave host failed
    before = time.time()
    value = instant.wait(True, elapsed_s=0.5, stop=stop)
    # 4 more waves of 2 hosts at ~0.5 s each, with the margin: later than 2 s from now.
    assert value is not None and value - before >= 4 * 0.5 * 1.3
    fixed = FleetInstant(total=3, forks=1, start_in_s=120, timeout_s=5)
    fixed.enter()
    assert fixed.wait(True, 0.1, stop) == pytest.approx(fixed.launch + 120)


def test_mode_choice() -> None:
    assert choose_mode("auto", hosts=10, forks=50, follow=False, start_in=None, detach=False) == "held"
    assert choose_mode("auto", hosts=51, forks=50, follow=False, start_in=None, detach=False) == "armed"
    assert choose_mode("auto", hosts=500, forks=50, follow=True, start_in=None, detach=False) == "held"
    assert choose_mode("auto", hosts=1, forks=50, follow=False, start_in=None, detach=True) == "armed"
    with pytest.raises(UsageError, match="--follow"):
        choose_mode("auto", hosts=1, forks=50, follow=True, start_in=None, detach=True)
    with pytest.raises(UsageError, match="--mode held"):
        choose_mode("held", hosts=1, forks=50, follow=False, start_in=120.0, detach=False)


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("2m", 120), ("1h", 3600), ("1m30s", 90)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "--start-in") == seconds


def test_a_bad_duration_names_the_option() -> None:
    with pytest.raises(UsageError, match="--pickup-timeout: 'soon' is not a duration"):
        parse_duration("soon", "--pickup-timeout")


def test_a_pending_sweep_reads_back_and_expires(tmp_path: Path, tmpdir_env: Path) -> None:
    store = ResultsStore.open(tmp_path / "results")
    fleet = arm_fleet([LOCAL, HostSpec(name="nowhere", address="127.0.0.1", port=1)], options(duration=1),
                      ArmOptions(pickup_s=1), stop=StopRequest())  # fmt: skip
    sweep_id = save_pending(store, fleet, SshOptions(connect_timeout=3), "counters", None, pickup_s=1)
    record = (store.root / "pending" / f"{sweep_id}.json")
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    pending = load_pending(store, sweep_id[:8])
    back = pending.fleet()
    assert back.armed == fleet.armed
    assert back.failed["nowhere"].status is Status.UNREACHABLE
    assert pending.ssh(None).connect_timeout == 3
    time.sleep(max(0.0, pending.pickup_deadline - time.time()) + 0.1)
    with pytest.raises(ResultsError, match=f"sweep {sweep_id} expired"):
        load_pending(store, sweep_id)
    with pytest.raises(ResultsError, match="matches no pending sweep"):
        load_pending(store, sweep_id)


def test_the_ramp_retries_a_timed_out_handshake_but_not_a_refusal() -> None:
    tries: list[str] = []

    def opener(spec: HostSpec, _ssh: SshOptions):
        tries.append(spec.name)
        if spec.name == "slow" and len(tries) < 3:
            raise UnreachableError("the SSH handshake did not finish within 10 s")
        if spec.name == "refused":
            raise UnreachableError("connection refused on port 22")
        return "transport"

    ramp = ConnectRamp(SshOptions(), limit=2, opener=opener)
    assert ramp.open(HostSpec(name="slow", address="x")) == "transport"
    assert tries == ["slow"] * 3
    tries.clear()
    with pytest.raises(UnreachableError, match="refused"):
        ramp.open(HostSpec(name="refused", address="x"))
    assert tries == ["refused"]


def test_an_authentication_that_timed_out_is_not_called_a_failed_one() -> None:
    import paramiko

    from fleetdiag.transport.ssh import SshTransport

    transport = SshTransport(HostSpec(name="h", address="192.0.2.1"), SshOptions(connect_timeout=7))
    timed_out = transport._unreachable(paramiko.AuthenticationException("Authentication timeout."), transport.connection)
    assert timed_out.message == "authentication did not finish within 7 s (timed out, not refused)"
    refused = transport._unreachable(paramiko.AuthenticationException("Authentication failed."), transport.connection)
    assert refused.message.startswith("authentication failed for user")


def test_detach_refuses_options_that_need_the_result(tmp_path: Path) -> None:
    # --html, --prom-file, --keep and --fail-on-drops act on a result a detached sweep does not have.
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "fleetdiag", "collect", "--detach", "--duration", "5",
                           "--results-dir", str(tmp_path / "r"), "--html", str(tmp_path / "x.html"), "--keep", "3"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--html, --keep cannot go with --detach" in done.stderr
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "r").exists()
