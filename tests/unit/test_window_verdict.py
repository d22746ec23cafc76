"""The window arithmetic of backlog drops (diagnosis/window.py), per kernel formula, and the origin case."""

from __future__ import annotations

import re

import pytest

from fleetdiag.diagnosis import flow_verdicts
from fleetdiag.diagnosis.window import (
    RULE_3_5,
    RULE_4_9,
    RULE_6_1,
    RULE_EC00,
    largest_fitting_rcvbuf,
    version_rule,
    window_verdict,
)
from fleetdiag.model import FlowDrop, HostResult, Status, frozen_map

SEED_LINES = """\
[1627803919] 172.16.16.25:8888<=>172.16.16.20:57348	sk_rcvbuf:67108864 sk_sndbuf:46080 sk_backlog.len:3270400 sk_rmem_alloc:64025856 rcvq_full:1
[1627803919] 172.16.16.25:8888<=>172.16.16.20:57348	sk_rcvbuf:67108864 sk_sndbuf:46080 sk_backlog.len:3270400 sk_rmem_alloc:64025856 rcvq_full:1
[1627803919] 172.16.16.25:8888<=>172.16.16.20:57348	sk_rcvbuf:67108864 sk_sndbuf:46080 sk_backlog.len:5503744 sk_rmem_alloc:61758464 rcvq_full:1
[1627803920] 172.16.16.25:8888<=>172.16.16.20:57348	sk_rcvbuf:67108864 sk_sndbuf:46080 sk_backlog.len:2286080 sk_rmem_alloc:65022720 rcvq_full:1
[1627803920] 172.16.16.25:8888<=>172.16.16.20:57348	sk_rcvbuf:67108864 sk_sndbuf:46080 sk_backlog.len:2286080 sk_rmem_alloc:65022720 rcvq_full:1
"""


def seed_flow() -> FlowDrop:
    """The seed's stap lines aggregated as fleetdiag's probes aggregate them (max per field, max of the sum)."""
    rows = [dict((k, int(v)) for k, v in re.findall(r"(sk_\w+(?:\.len)?):(\d+)", line)) for line in SEED_LINES.splitlines()]
    return FlowDrop(
        "172.16.16.25", 8888, "172.16.16.20", 57348, None, "SOCKET_BACKLOG", len(rows),
        rcvbuf=rows[0]["sk_rcvbuf"], sndbuf=rows[0]["sk_sndbuf"],
        backlog_len_max=max(r["sk_backlog.len"] for r in rows), rmem_alloc_max=max(r["sk_rmem_alloc"] for r in rows),
        queue_max=max(r["sk_backlog.len"] + r["sk_rmem_alloc"] for r in rows),
        userlocks=0,  # the seed: rcvbuf grew by autotuning, no SO_RCVBUF
    )  # fmt: skip


def host(kernel: str, flow: FlowDrop, **buffers) -> HostResult:
    return HostResult("h", "10.0.0.1", Status.OK, kernel=kernel, flows=(flow,),
                      tcp_buffers=frozen_map({k: tuple(v) for k, v in buffers.items()}))  # fmt: skip


@pytest.mark.parametrize(
    "release, rule, limit",
    [
        ("3.10.0-1160.el7.x86_64", RULE_3_5, 67108864 + 46080),
        ("4.19.0-26-amd64", RULE_4_9, 67108864 + 46080 + 65536),
        ("6.1.0-57-cloud-amd64", RULE_6_1, 67108864 + 23040 + 65536),
        ("6.18.44", RULE_EC00, 2 * 67108864 + 23040 + 65536),
    ],
)
def test_limit_rule_per_kernel(release, rule, limit):
    assert version_rule(release) is rule
    assert rule.limit(67108864, 46080) == limit


def test_largest_fitting_rcvbuf_solves_the_inequality():
    # 3.10, window half of rcvbuf, truesize/len 2.01: B * (0.5 * 2.01 - 1) <= 46080.
    fit = largest_fitting_rcvbuf(RULE_3_5, 0.5, 2.01, 46080)
    assert fit == int(46080 / 0.005)
    window = 0.5 * fit
    assert window * 2.01 <= RULE_3_5.limit(fit, 46080) + 1
    assert 0.5 * (fit + 4096) * 2.01 > RULE_3_5.limit(fit + 4096, 46080)
    # The same window and ratio under ec00ed472bdb's doubled rcvbuf: every rcvbuf fits.
    assert largest_fitting_rcvbuf(RULE_EC00, 0.5, 2.01, 46080) is None
    # A ratio under 2: the window's worth fits under rcvbuf + sndbuf whatever rcvbuf is.
    assert largest_fitting_rcvbuf(RULE_3_5, 0.5, 1.6, 46080) is None


def test_the_seed_case_explained_with_the_3_10_formula():
    flow = seed_flow()
    assert (flow.queue_max, flow.rmem_alloc_max) == (67308800, 65022720)
    verdict = window_verdict(host("3.10.0-1160.el7.x86_64", flow), flow)
    ev = verdict.evidence
    assert verdict.code == "window_over_backlog_room"
    assert ev["formula"] == "rcvbuf + sndbuf" and ev["backlog_limit"] == 67154944
    # Autotuned 64 MB: the window let 32 MB of payload in flight (tcp_adv_win_scale 1).
    assert ev["autotuned"] is True and ev["window_bytes"] == 33554432 == ev["in_flight_bytes"]
    # No skb sizes in the seed's probe: the ratio is the floor its queue implies, just over 2.
    assert ev["truesize_ratio"] == pytest.approx(67308800 / 33554432, abs=1e-4)
    assert "lower bound" in ev["truesize_ratio_how"]
    # Room the limit left beside the queue as it was: 2 MB, against a 64 MB window's worth.
    assert ev["room_at_drop"] == 67154944 - 65022720
    assert ev["in_flight_truesize"] > 30 * ev["room_at_drop"]
    # The value: an SO_RCVBUF under ~7.7 MB fits (the seed's 8 MB by hand stopped the drops), or the upgrade.
    so_rcvbuf = int(re.search(r"set SO_RCVBUF to (\d+) bytes", verdict.next_step).group(1))
    assert 7 << 20 < so_rcvbuf < 8 << 20
    assert "ec00ed472bdb" in verdict.next_step
    assert so_rcvbuf * 2 <= ev["largest_fitting_rcvbuf"] < 64 << 20
    # It sits among the flow's verdicts, beside the older ones.
    codes = [v.code for v in flow_verdicts(host("3.10.0-1160.el7.x86_64", flow), flow)]
    assert codes[-1] == "window_over_backlog_room" and "autotuned_rcvbuf_large" in codes


def test_measured_sizes_and_host_scale_drive_the_numbers():
    flow = FlowDrop("10.0.0.1", 80, "10.0.0.2", 5555, 7, "SOCKET_BACKLOG", 10, rcvbuf=4 << 20, sndbuf=87040,
                    rmem_alloc_max=1 << 20, backlog_len_max=3 << 20, queue_max=(4 << 20) + 100000, userlocks=2,
                    rcv_wnd=3 << 20, window_clamp=8 << 20, skb_len_sum=15000, skb_truesize_sum=34560)  # fmt: skip
    verdict = window_verdict(host("4.19.0-26-amd64", flow, tcp_adv_win_scale=[2], rmem_max=[212992]), flow)
    ev = verdict.evidence
    assert ev["window_share"] == 0.75 and ev["truesize_ratio"] == pytest.approx(2.304)
    assert ev["in_flight_bytes"] == 3 << 20 and ev["autotuned"] is False
    assert ev["in_flight_truesize"] == int((3 << 20) * 2.304)
    # 0.75 * 2.304 = 1.728 > 1: the largest rcvbuf fitting rcvbuf + sndbuf + 64K is (87040 + 65536) / 0.728.
    assert ev["largest_fitting_rcvbuf"] == int((87040 + 65536) / (0.75 * 2.304 - 1))
    assert "above net.core.rmem_max 212992" not in verdict.next_step  # 100K <= rmem_max
    assert verdict.code == "window_over_backlog_room"


def test_6_6_uses_the_sockets_scaling_ratio_and_finds_the_window_fits():
    flow = FlowDrop("10.0.0.1", 80, "10.0.0.2", 5555, 7, "SOCKET_BACKLOG", 3, rcvbuf=6 << 20, sndbuf=87040,
                    rmem_alloc_max=5 << 20, queue_max=(12 << 20) + 150000, rcv_wnd=1 << 20, scaling_ratio=111,
                    skb_len_sum=4500, skb_truesize_sum=10368, skb_truesize_max=3456)  # fmt: skip
    verdict = window_verdict(host("6.18.44", flow), flow)
    assert verdict.evidence["window_share"] == pytest.approx(111 / 256, abs=1e-4)
    assert verdict.code == "window_fits_limit" and "owned for long" in verdict.next_step
    # Without the ratio a 6.6+ socket's window share is unknown: said, not guessed.
    lacking = window_verdict(host("6.18.44", flow), FlowDrop(**{**flow.__dict__, "scaling_ratio": None}))
    assert lacking.code == "window_not_computed" and "scaling_ratio" in lacking.summary


def test_a_tier_without_sizes_says_what_it_lacks():
    flow = FlowDrop("10.0.0.1", 80, "10.0.0.2", 5555, 7, "SOCKET_BACKLOG", 3, rcvbuf=1 << 20, sndbuf=87040,
                    rmem_alloc_max=1000, queue_max=200000)  # fmt: skip
    verdict = window_verdict(host("5.4.0-150-generic", flow), flow)
    assert verdict.code == "window_not_computed" and "truesize" in verdict.summary


def test_6_1_names_the_stable_backport_and_its_numbers():
    # 6.1.192 (Debian 6.1.0-57) has ec00ed472bdb under a 6.1 version: the verdict gives both answers.
    flow = FlowDrop("10.0.0.1", 80, "10.0.0.2", 5555, 7, "SOCKET_BACKLOG", 250, rcvbuf=6 << 20, sndbuf=46080,
                    rmem_alloc_max=5 << 20, queue_max=(7 << 20), rcv_wnd=3 << 20,
                    skb_len_sum=536 * 10, skb_truesize_sum=2304 * 10)  # fmt: skip
    verdict = window_verdict(host("6.1.0-57-cloud-amd64", flow, tcp_adv_win_scale=[1]), flow)
    ev = verdict.evidence
    assert ev["formula"] == "rcvbuf + sndbuf/2 + 64K" and "ec00ed472bdb" in ev["backport_note"]
    # 0.5 * 4.3 = 2.15: over 1 and over 2, so both limits have a largest fitting rcvbuf.
    assert ev["largest_fitting_rcvbuf"] == int((23040 + 65536) / (0.5 * 2304 / 536 - 1))
    assert ev["largest_fitting_rcvbuf_with_ec00ed472bdb"] == int((23040 + 65536) / (0.5 * 2304 / 536 - 2))
    assert "ec00ed472bdb" in verdict.summary
    assert version_rule("3.10.0-1160.el7.x86_64") is RULE_3_5


def test_a_window_advertised_before_rcvbuf_was_lowered_is_named():
    # The 6.18 lab's drops: rcvbuf 8K set on the live socket, 115K window already advertised, 3.1M queued.
    flow = FlowDrop("10.0.0.1", 5201, "10.0.0.2", 5555, 7, "SOCKET_BACKLOG", 2, rcvbuf=8192, sndbuf=46080,
                    rmem_alloc_max=3_250_000, queue_max=3_300_000, userlocks=3, rcv_wnd=117_760, scaling_ratio=229,
                    skb_len_sum=3000, skb_truesize_sum=3081)  # fmt: skip
    verdict = window_verdict(host("6.18.44", flow), flow)
    assert verdict.code == "window_advertised_before_rcvbuf_lowered"
    assert verdict.evidence["room_at_drop"] == 0 and verdict.evidence["window_over_rcvbuf"] is True
    assert "never lower it on a live socket" in verdict.next_step


def test_an_autotuned_rcvbuf_at_tcp_rmem_max_is_said():
    flow = FlowDrop("10.0.0.1", 80, "10.0.0.2", 5555, 7, "SOCKET_BACKLOG", 5, rcvbuf=4 << 20, sndbuf=46080,
                    rmem_alloc_max=3 << 20, queue_max=5 << 20, userlocks=0, skb_len_sum=512, skb_truesize_sum=1936)  # fmt: skip
    capped = window_verdict(host("6.1.0-57-cloud-amd64", flow, tcp_rmem=[4096, 131072, 4 << 20]), flow)
    assert capped.evidence["rcvbuf_at_tcp_rmem_max"] is True and f"at tcp_rmem max {4 << 20}" in capped.summary
    below = window_verdict(host("6.1.0-57-cloud-amd64", flow, tcp_rmem=[4096, 131072, 64 << 20]), flow)
    assert below.evidence["rcvbuf_at_tcp_rmem_max"] is False
    assert window_verdict(host("6.1.0-57-cloud-amd64", flow), flow).evidence["rcvbuf_at_tcp_rmem_max"] is None
