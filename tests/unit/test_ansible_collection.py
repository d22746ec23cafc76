"""The fleetdiag.drops collection's pure parts: task options, the play's instant, results into one sweep."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from fleetdiag.ansible_armed import arm_lead_s, armed_document, armed_from, not_armed_result
from fleetdiag.ansible_instant import (
    HERD_S_PER_HOST,
    QUIET_S,
    leave,
    note_arrival,
    play_instant,
    wave_instant,
    wave_lead_s,
)
from fleetdiag.ansible_sweep import NO_RESULT, save_sweep, sweep_from_results
from fleetdiag.ansible_task import wait_until, window_options, window_task_result
from fleetdiag.armed_sweep import ArmedHost
from fleetdiag.errors import UsageError
from fleetdiag.history import ResultsStore
from fleetdiag.model import FlowDrop, HostResult, HostSpec, Status, frozen_map
from fleetdiag.transport.ansible_connection import AnsibleTransport


def test_window_options_defaults_and_templated_strings() -> None:
    assert window_options({}) == window_options({"duration": 60, "tracer": "auto"})
    options = window_options({"duration": "30", "port": "8888", "start_at": "1796190000.5", "tracer": "counters"})
    assert (options.duration, options.port, options.start_at, options.tracer) == (30, 8888, 1796190000.5, "counters")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"duration": 0}, "duration: 0 is outside 1..3600"),
        ({"duration": "soon"}, "duration: 'soon' is not a whole number"),
        ({"tracer": "dtrace"}, "tracer: 'dtrace' is not one of auto, bpftrace, bcc, stap, counters"),
        ({"port": 70000}, "port: 70000 is outside 1..65535"),
        ({"start_at": "tomorrow"}, "start_at: 'tomorrow' is not a Unix time"),
        ({"durations": 5}, "unsupported option(s) durations"),
    ],
)
def test_window_options_name_the_bad_option(args: dict, says: str) -> None:
    with pytest.raises(UsageError) as raised:
        window_options(args)
    assert says in str(raised.value)


def test_the_first_host_sets_the_play_instant_and_the_others_read_it(tmp_path: Path) -> None:
    chosen: list[float] = []
    seen: list[float] = []

    def choose(arrivals: list[float]) -> float:
        chosen.append(100.0 + len(chosen))
        return chosen[-1]

    threads = [threading.Thread(target=lambda: seen.append(play_instant("play-1", choose, tmp_path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert chosen == [100.0] and seen == [100.0] * 8
    assert play_instant("play-2", lambda arrivals: 7.0, tmp_path) == 7.0  # another play, another instant


def test_the_instant_waits_for_the_hosts_ansible_is_still_starting(tmp_path: Path) -> None:
    for moment in (10.0, 10.2, 10.4):
        note_arrival("play", tmp_path, clock=lambda moment=moment: moment)
    got: list[list[float]] = []
    play_instant("play", lambda arrivals: got.append(arrivals) or 0.0, tmp_path)
    assert got == [[10.0, 10.2, 10.4]]
    # 10 hosts in the batch, 3 arrived 0.2 s apart: 7 more take about 1.4 s to start.
    alone = arm_lead_s(1.0, hosts=10, forks=10, arrivals=[10.0], now=11.0)
    starting = arm_lead_s(1.0, hosts=10, forks=10, arrivals=[10.0, 10.2, 10.4], now=11.0)
    assert starting - alone == pytest.approx((7 * 0.2 + 0.4 - 9 * 0.1) * 2.0)


def test_the_armed_instant_waits_for_the_whole_first_batch(tmp_path: Path) -> None:
    # Ansible starts a batch's workers one by one: the instant is set only once the last of them is
    # ready, so no host is armed after it (a pace extrapolated from the first hosts left 16-53 of 200 late).
    clock = [100.0]
    for _host in range(4):
        note_arrival("play", tmp_path, clock=lambda: clock[0])
    got: list[float] = []
    waiting = threading.Thread(target=lambda: got.append(wave_instant("play", 4, 10, tmp_path, clock=lambda: clock[0])))
    waiting.start()
    for _host in range(2):
        threading.Thread(
            target=lambda: got.append(wave_instant("play", 4, 10, tmp_path, clock=lambda: clock[0]))
        ).start()
    waiting.join(0.6)
    assert waiting.is_alive() and got == []  # three ready, one still detecting
    clock[0] = 103.0
    got.append(wave_instant("play", 4, 10, tmp_path, clock=lambda: clock[0]))
    waiting.join(2)
    deadline = time.monotonic() + 2
    while len(got) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got == [got[-1]] * 4
    assert got[-1] == pytest.approx(103.0 + wave_lead_s(4, 4, 4, 10, 3.0))
    # A host of a later batch reads it at once.
    assert wave_instant("play", 4, 10, tmp_path, clock=lambda: 200.0) == got[-1]


def test_hosts_that_fail_first_or_never_come_do_not_hold_the_batch(tmp_path: Path) -> None:
    note_arrival("p1", tmp_path, clock=lambda: 10.0)
    note_arrival("p1", tmp_path, clock=lambda: 10.5)
    leave("p1", tmp_path, clock=lambda: 11.0)  # unreachable: its detection failed
    assert wave_instant("p1", 2, 2, tmp_path, clock=lambda: 12.0) == pytest.approx(12.0 + wave_lead_s(1, 2, 2, 2, 2.0))
    # Three hosts in the batch, one never reached the task: set after QUIET_S without news.
    note_arrival("p2", tmp_path, clock=lambda: 10.0)
    note_arrival("p2", tmp_path, clock=lambda: 10.1)
    moments = [10.2, 10.2]  # ready, first look; then nothing for QUIET_S

    def clock() -> float:
        return moments.pop(0) if moments else 10.2 + QUIET_S

    start = wave_instant("p2", 3, 3, tmp_path, clock=clock, sleep=lambda s: None)
    assert start == pytest.approx(10.2 + QUIET_S + wave_lead_s(1, 3, 3, 3, QUIET_S + 0.2))


def test_wave_lead_covers_the_burst_of_arm_trips_and_later_batches() -> None:
    assert wave_lead_s(200, 200, 200, 200, 20.0) == pytest.approx(1.0 + 200 * HERD_S_PER_HOST)
    # 6 hosts, -f 2: two batches after the first, each about as long as the first (plus room).
    assert wave_lead_s(2, 2, 6, 2, 3.0) == pytest.approx(1.0 + 2 * HERD_S_PER_HOST + 2 * (3.0 + 1.0) * 2.0)


def test_arm_lead_grows_with_the_forks_batches() -> None:
    one = arm_lead_s(1.0, hosts=2, forks=2)
    three = arm_lead_s(1.0, hosts=6, forks=2)
    assert 1.0 < one < three
    assert three - one == pytest.approx(1.0 * 1.5 * 2 * 2.0)  # two more batches of three trips


def test_wait_until_holds_until_the_instant() -> None:
    assert wait_until(None) is None
    hold = wait_until(50.0, clock=lambda: 100.0)  # already past: no wait
    assert hold is not None
    hold()


def test_armed_document_round_trips_through_json() -> None:
    import json

    armed = ArmedHost(HostSpec("web1", "10.0.0.5", become=True), "/tmp/fleetdiag-armed.abc123", "b" * 36,
                      "@@facts", "bpftrace", "bpftrace:kfree_skb", "traced", 0.01, 0.05, 1000.0, 29, duration_s=30)  # fmt: skip
    document = json.loads(json.dumps(armed_document(armed, 30, "auto", 8888, instant=999.5)))
    assert armed_from(document) == (armed, 30, "auto", 8888)
    assert document["instant"] == 999.5
    with pytest.raises(ValueError, match="not what fleetdiag.drops.arm returned"):
        armed_from({"spec": {"name": "x"}})


def test_a_host_the_arm_task_did_not_arm_keeps_its_failure() -> None:
    unreachable = {"unreachable": True, "msg": "Failed to connect", "host": {"name": "h4", "status": "unreachable"}}
    assert not_armed_result(unreachable) == {"changed": False, **unreachable}
    assert not_armed_result({"changed": False})["failed"] is True


def host(name: str, status: Status = Status.OK, **kwargs) -> HostResult:
    return HostResult(name, f"10.0.0.{len(name)}", status, kernel="6.1.0", probe="bpftrace:kfree_skb", **kwargs)


def test_results_make_one_sweep_with_every_host_and_its_reason(tmp_path: Path) -> None:
    flow = FlowDrop("10.0.0.3", 5201, "10.0.0.4", 40000, None, "SOCKET_BACKLOG", 12)
    dropping = host(
        "h01", drops=frozen_map({"SOCKET_BACKLOG": 12}), flows=(flow,), window_start=1000.2, window_end=1010.2
    )
    results = {
        "h01": window_task_result(dropping),
        "h02": window_task_result(host("h02", window_start=1000.0, window_end=1010.0)),
        "h03": {
            "unreachable": True,
            "msg": "Failed to connect to the host via ssh: Connection refused",
            "changed": False,
        },
        "h04": {"skipped": True, "skip_reason": "Conditional result was False"},
        "h05": None,
    }
    sweep = sweep_from_results(results, {"h03": "10.0.0.33"}, duration_s=10, port=5201)
    by_name = {h.name: h for h in sweep.hosts}
    assert list(by_name) == ["h01", "h02", "h03", "h04", "h05"]
    assert by_name["h01"].flows == (flow,) and by_name["h01"].drops == {"SOCKET_BACKLOG": 12}
    assert (by_name["h03"].status, by_name["h03"].error) == (Status.UNREACHABLE, results["h03"]["msg"])
    assert by_name["h03"].address == "10.0.0.33"
    assert by_name["h04"].status is Status.FAILED and "skipped" in by_name["h04"].error
    assert (by_name["h05"].status, by_name["h05"].error) == (Status.FAILED, NO_RESULT)
    assert sweep.started_at.timestamp() == 1000.0 and sweep.port == 5201

    record, path = save_sweep(sweep, tmp_path / "results", prom_file=str(tmp_path / "drops.prom"))
    store = ResultsStore.open(tmp_path / "results")
    assert [r.id for r in store.records()] == [record.id] and path.exists()
    _, loaded = store.load(record.id)
    assert [h.status for h in loaded.hosts] == [h.status for h in sweep.hosts]
    assert "SOCKET_BACKLOG" in (tmp_path / "drops.prom").read_text()


def test_ansible_transport_gives_stdin_and_reads_ansibles_result() -> None:
    calls: list[tuple[str, bytes]] = []

    def execute(command: str, stdin: bytes) -> dict:
        calls.append((command, stdin))
        return {"rc": 3, "stdout": "a\nb\n", "stderr": "oops"}

    lines: list[str] = []
    transport = AnsibleTransport(execute)
    assert transport.can_answer is False
    result = transport.run("echo 'it''s'", timeout=5, on_line=lines.append)
    assert (result.stdout, result.stderr, result.exit_code, lines) == ("a\nb\n", "oops", 3, ["a", "b"])
    assert calls[0] == ("sh -c 'echo '\"'\"'it'\"'\"''\"'\"'s'\"'\"''", b"\n")  # quoted; a newline keeps ssh off a tty
    transport.run_with_input("cat", b"1\n\n")
    assert calls[1][1] == b"1\n\n"
