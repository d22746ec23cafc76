"""Issue 16 on this machine's 6.18 kernel: real backlog drops carry the window and skb sizes, and the verdict.

The real CLI against the namespace lab (bpftrace kfree_skb with rx_sk), during tests/lab/backlog.py's
real drops: every SOCKET_BACKLOG flow has rcv_wnd, window_clamp, rcv_ssthresh, scaling_ratio (6.6+)
and the dropped skbs' len/truesize; the host has its buffer sysctls; the window verdict computes.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.test_collect import collect_during_backlog_drops

pytestmark = pytest.mark.lab


def test_backlog_drops_on_6_18_carry_the_window(lab_fleet, lab_roles, tmp_path):
    inventory = lab_fleet.write_inventory(tmp_path / "hosts.yaml")
    doc, _, generated, stderr, _ = collect_during_backlog_drops(lab_fleet, inventory, lab_roles)
    receiver = next(h for h in doc["hosts"] if h["name"] == "h01")
    assert receiver["status"] == "ok", receiver["error"]
    read = subprocess.run(["ip", "netns", "exec", lab_roles.receiver.netns, "cat", "/proc/sys/net/ipv4/tcp_rmem"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    expected = [int(v) for v in read.stdout.split()]
    assert receiver["tcp_buffers"]["tcp_rmem"] == expected
    assert set(receiver["tcp_buffers"]) == {"tcp_rmem", "rmem_max", "tcp_adv_win_scale", "tcp_moderate_rcvbuf"}
    flows = [f for f in doc["flows"] if f["reason"] == "SOCKET_BACKLOG"]
    assert flows and generated > 0, stderr
    for flow in flows:
        assert flow["window_clamp"] > 0 and flow["rcv_ssthresh"] > 0 and flow["rcv_wnd"] >= 0, flow
        assert 0 < flow["scaling_ratio"] <= 255, flow  # tcp_sock.scaling_ratio, 6.6+
        assert 0 < flow["skb_len_max"] <= flow["skb_truesize_max"], flow
        assert flow["skb_len_sum"] >= flow["skb_len_max"] and flow["skb_truesize_sum"] >= flow["skb_truesize_max"]
        # One skb per drop: the sums cover exactly the flow's drops, each at most the max.
        assert flow["skb_truesize_sum"] <= flow["drops"] * flow["skb_truesize_max"]
        (window,) = [v for v in flow["verdicts"] if v["code"].startswith("window_")]
        assert window["code"] in ("window_fits_limit", "window_over_backlog_room",
                                  "window_advertised_before_rcvbuf_lowered"), window
        ev = window["evidence"]
        assert ev["formula"] == "2*rcvbuf + sndbuf/2 + 64K" and ev["truesize_ratio_how"] == "measured over the dropped skbs"
        assert ev["truesize_ratio"] == pytest.approx(flow["skb_truesize_sum"] / flow["skb_len_sum"], abs=1e-3)
        assert ev["window_share"] == pytest.approx(flow["scaling_ratio"] / 256, abs=1e-3)
        print(f"{flow['drops']} drops: {window['summary']} {window['next_step']}")  # quoted in docs/backlog-drops.md
