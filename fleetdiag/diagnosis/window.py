"""Why a backlog drop happened, in bytes: the advertised window against the room the kernel's limit left.

The origin case's question (64 MB autotuned rcvbuf dropped, SO_RCVBUF 8 MB did not) is
arithmetic over four things the probe and the host report:

- the window: what the receiver let the sender have in flight. Everything the application has
  not read yet (receive queue, backlog, in flight) is at most the window's worth of payload,
  ``W(rcvbuf)``: ``tcp_win_from_space`` takes ``rcvbuf - rcvbuf >> tcp_adv_win_scale`` before 6.6
  (half of it with the default 1) and ``rcvbuf * scaling_ratio / 256`` from 6.6, where
  scaling_ratio is the measured len/truesize of the flow's skbs;
- the memory that costs: payload times the truesize/len ratio of the skbs (measured from the
  dropped skbs, or, without them, the lower bound the queue itself implies);
- the kernel's limit on backlog + receive queue (``backlog_limit.py``): ``c * rcvbuf + d``;
- whether rcvbuf was autotuned (no SOCK_RCVBUF_LOCK in userlocks).

A window's worth fits when ``a * rcvbuf * ratio <= c * rcvbuf + d`` (``a`` the window's share of
rcvbuf). Before ec00ed472bdb (c = 1), when ``a * ratio > 1`` a large rcvbuf cannot fit, and the
largest that fits is ``d / (a * ratio - c)``: a limit in bytes, so a smaller buffer does.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetdiag.backlog_limit import kernel_version
from fleetdiag.diagnosis.verdict import Verdict, size
from fleetdiag.model import FlowDrop, HostResult

SOCK_RCVBUF_LOCK = 2  # include/net/sock.h
DEFAULT_ADV_WIN_SCALE = 1  # the default since 3.4 (b49960a05e32)
TCP_RMEM_TO_WIN_SCALE = 8  # include/net/tcp.h, 6.6+: window = space * scaling_ratio >> 8
UINT_MAX = 2**32 - 1
SO_RCVBUF_STEP = 4096  # advice rounded down to a page


@dataclass(frozen=True)
class LimitRule:
    """The kernel's backlog limit as ``coef * rcvbuf + (sndbuf part) + extra``, and where it comes from."""

    coef: int
    sndbuf_shift: int  # sndbuf >> shift
    extra: int
    formula: str
    source: str

    def limit(self, rcvbuf: int, sndbuf: int) -> int:
        return min(self.coef * rcvbuf + (sndbuf >> self.sndbuf_shift) + self.extra, UINT_MAX)


RULE_3_5 = LimitRule(1, 0, 0, "rcvbuf + sndbuf", "sk_add_backlog(sk, skb, sk->sk_rcvbuf + sk->sk_sndbuf) in tcp_v4_rcv (3.5-4.8)")
RULE_4_9 = LimitRule(1, 0, 64 << 10, "rcvbuf + sndbuf + 64K", "tcp_add_backlog, 4.9 (c9c3321257e1)")
RULE_6_1 = LimitRule(1, 1, 64 << 10, "rcvbuf + sndbuf/2 + 64K", "tcp_add_backlog after ec791d8149ff")
RULE_EC00 = LimitRule(2, 1, 64 << 10, "2*rcvbuf + sndbuf/2 + 64K", "tcp_add_backlog after ec00ed472bdb (6.10)")


def version_rule(release: str | None) -> LimitRule | None:
    """The rule a kernel version's mainline source has (backlog_limit.py's formulas)."""
    version = kernel_version(release)
    if version is None:
        return None
    if version >= (6, 10):
        return RULE_EC00
    if version >= (6, 1):
        return RULE_6_1
    if version >= (4, 9):
        return RULE_4_9
    return RULE_3_5


def backport_note(release: str | None) -> str | None:
    """For 4.9-6.9: the stable series may run ec00ed472bdb under the old version number."""
    rule = version_rule(release)
    if rule is None or rule is RULE_EC00 or rule is RULE_3_5:
        return None
    # A drop's backlog+rmem cannot tell the two apart: until __release_sock() ends, the skbs the owner
    # moved to the receive queue count in both sk_backlog.len and sk_rmem_alloc.
    return ("stable kernels of this version may carry ec00ed472bdb (Debian's 5.10.223 and 6.1.192 do: their "
            "tcp_ipv4.c doubles rcvbuf); then the limit is 2*rcvbuf + sndbuf/2 + 64K")


@dataclass(frozen=True)
class WindowRule:
    """The window's share of rcvbuf: ``a`` in W = a * rcvbuf, and how it was found."""

    share: float
    how: str


def window_rule(host: HostResult, flow: FlowDrop) -> WindowRule | None:
    """tcp_win_from_space as this kernel computes it (None: kernel unknown)."""
    version = kernel_version(host.kernel)
    if version is None:
        return None
    if version >= (6, 6):
        if flow.scaling_ratio:
            return WindowRule(flow.scaling_ratio / (1 << TCP_RMEM_TO_WIN_SCALE),
                              f"scaling_ratio {flow.scaling_ratio}/256 (6.6+, measured len/truesize)")
        return None  # 6.6+ without the socket's ratio: the share is the flow's own, unknown here
    scale_values = host.tcp_buffers.get("tcp_adv_win_scale")
    scale = scale_values[0] if scale_values else DEFAULT_ADV_WIN_SCALE
    how = f"tcp_adv_win_scale {scale}" + ("" if scale_values else " (not read from the host: the default)")
    share = 1 / (1 << -scale) if scale <= 0 else 1 - 1 / (1 << scale)
    return WindowRule(share, how)


def truesize_ratio(flow: FlowDrop, window: int) -> tuple[float, str] | None:
    """truesize/len of the flow's skbs: measured from the dropped skbs, else the queue's lower bound."""
    if flow.skb_len_sum and flow.skb_truesize_sum:
        return flow.skb_truesize_sum / flow.skb_len_sum, "measured over the dropped skbs"
    if flow.queue_max and window and flow.queue_max > window:
        # Unread data is at most a window's worth of payload: the queue's memory over it is a floor.
        return flow.queue_max / window, "inferred (lower bound): backlog+rmem at drop over the window's payload"
    return None


def largest_fitting_rcvbuf(rule: LimitRule, share: float, ratio: float, sndbuf: int) -> int | None:
    """The largest rcvbuf whose window's worth, at RATIO, fits under RULE (None: any rcvbuf fits)."""
    slope = share * ratio - rule.coef
    if slope <= 0:
        return None
    return int(((sndbuf >> rule.sndbuf_shift) + rule.extra) / slope)


def window_verdict(host: HostResult, flow: FlowDrop) -> Verdict | None:
    """The mechanism of one flow's backlog drops in the host's numbers, with a value to set; or what is missing."""
    if flow.reason != "SOCKET_BACKLOG" or flow.rcvbuf is None or flow.sndbuf is None:
        return None
    rule, backport = version_rule(host.kernel), backport_note(host.kernel)
    wrule = window_rule(host, flow)
    if rule is None:
        return _lacking(flow, ["the kernel version"])
    if wrule is None:
        return _lacking(flow, ["the socket's scaling_ratio (6.6+ sizes its window from it)"])
    window = int(wrule.share * flow.rcvbuf)
    if flow.window_clamp:
        window = min(window, flow.window_clamp)
    ratio_found = truesize_ratio(flow, window)
    if ratio_found is None:
        return _lacking(flow, ["the skbs' len and truesize (this tier does not read the dropped skb)"])
    ratio, ratio_how = ratio_found
    limit = rule.limit(flow.rcvbuf, flow.sndbuf)
    rmem = flow.rmem_alloc_max or 0
    in_flight = flow.rcv_wnd if flow.rcv_wnd is not None else window
    cost = int(in_flight * ratio)
    worth = int(window * ratio)
    room = max(0, limit - rmem)  # 0: the receive queue alone was over the limit
    autotuned = None if flow.userlocks is None else not flow.userlocks & SOCK_RCVBUF_LOCK
    fit = largest_fitting_rcvbuf(rule, wrule.share, ratio, flow.sndbuf)
    fix_rule = largest_fitting_rcvbuf(RULE_EC00, wrule.share, ratio, flow.sndbuf)
    evidence = {
        "kernel": host.kernel, "formula": rule.formula, "formula_source": rule.source, "backport_note": backport,
        "rcvbuf": flow.rcvbuf, "sndbuf": flow.sndbuf, "backlog_limit": limit, "rmem_alloc_max": flow.rmem_alloc_max,
        "backlog_len_max": flow.backlog_len_max, "room_at_drop": room, "window_rule": wrule.how,
        "window_share": round(wrule.share, 4), "window_bytes": window, "rcv_wnd": flow.rcv_wnd,
        "window_clamp": flow.window_clamp, "rcv_ssthresh": flow.rcv_ssthresh, "in_flight_bytes": in_flight,
        "truesize_ratio": round(ratio, 4), "truesize_ratio_how": ratio_how, "in_flight_truesize": cost,
        "window_truesize": worth, "autotuned": autotuned, "tcp_buffers": {k: list(v) for k, v in host.tcp_buffers.items()},
        "largest_fitting_rcvbuf": fit, "largest_fitting_rcvbuf_with_ec00ed472bdb": fix_rule,
    }  # fmt: skip
    tuned = {True: "autotuned (no SO_RCVBUF)", False: "set by SO_RCVBUF", None: "autotuned or set: unknown"}[autotuned]
    # Below tcp_rmem[2] an unlocked rcvbuf still grows when pruning finds the queue over it (and the
    # limit grows with it); at the cap it cannot, and the window it advertised stays.
    rmem_cap = (host.tcp_buffers.get("tcp_rmem") or (None, None, None))[-1]
    at_cap = bool(autotuned and rmem_cap and flow.rcvbuf >= rmem_cap)
    evidence["rcvbuf_at_tcp_rmem_max"] = at_cap if rmem_cap else None
    if at_cap:
        tuned += f", at tcp_rmem max {rmem_cap}"
    summary = (
        f"the window let the sender have {size(in_flight)} in flight ({wrule.how}; rcvbuf {size(flow.rcvbuf)} {tuned}); "
        f"at truesize/len {ratio:.3f} ({ratio_how}) that is {size(cost)} of memory, against {size(room)} of room "
        f"the {rule.formula} = {size(limit)} limit left beside the {size(rmem)} receive queue."
    )
    # A window is never shrunk (tcp_select_window keeps the right edge): rcv_wnd past what this rcvbuf
    # gives means rcvbuf was lowered after that window was advertised.
    shrunk = flow.rcv_wnd is not None and flow.rcv_wnd > window + (64 << 10)
    evidence["window_over_rcvbuf"] = shrunk
    if backport:
        summary += f" ({backport}.)"
    next_step, code = _advice(host, flow, rule, fit, fix_rule, worth, limit, ratio)
    if code == "window_fits_limit" and shrunk and cost > room:
        code = "window_advertised_before_rcvbuf_lowered"
        next_step = (
            f"the window in flight ({size(in_flight)}) was advertised under a larger rcvbuf than the {size(flow.rcvbuf)} "
            "at drop: set SO_RCVBUF before listen()/connect(), never lower it on a live socket"
        )
    return Verdict(code=code, title="window against the backlog limit", summary=summary, next_step=next_step,
                   evidence=evidence)  # fmt: skip


def _advice(host: HostResult, flow: FlowDrop, rule: LimitRule, fit: int | None, fix_rule: int | None,
            worth: int, limit: int, ratio: float) -> tuple[str, str]:  # fmt: skip
    assert flow.rcvbuf is not None
    if fit is None:
        return (
            f"a whole window's worth ({size(worth)} at this ratio) fits under the {size(limit)} limit at any rcvbuf: "
            "the drops come from the socket being owned for long (collapse/prune of a large queue, long recv/send "
            "calls, other threads on the socket), not from the window's size",
            "window_fits_limit",
        )
    if fit >= flow.rcvbuf:
        return (
            f"a whole window's worth ({size(worth)}) fits under the {size(limit)} limit at this rcvbuf; "
            "the drops come from the socket being owned for long, not from the window's size",
            "window_fits_limit",
        )
    so_rcvbuf = max(SO_RCVBUF_STEP, fit // 2 // SO_RCVBUF_STEP * SO_RCVBUF_STEP)  # the kernel doubles SO_RCVBUF
    rmem_max = (host.tcp_buffers.get("rmem_max") or (None,))[0]
    cap = ""
    if rmem_max is not None and so_rcvbuf > rmem_max:
        cap = f" (above net.core.rmem_max {rmem_max}: raise it, or use SO_RCVBUFFORCE)"
    upgrade = ""
    if rule.coef == 1:
        # Measured on the lab guest: draining the backlog counts its skbs twice until __release_sock ends.
        upgrade += "; before ec00ed472bdb the backlog counts what the owner drains twice, so half of it leaves headroom"
    if rule.coef == 1 and fix_rule is None:
        upgrade = ("; or upgrade to a kernel with ec00ed472bdb (6.10+, some stable series), whose "
                   "2*rcvbuf + sndbuf/2 + 64K limit holds this window at any rcvbuf")  # fmt: skip
    return (
        f"set SO_RCVBUF to {so_rcvbuf} bytes or less{cap} (rcvbuf {2 * so_rcvbuf}, window ~{size(int(2 * so_rcvbuf * (worth / flow.rcvbuf) / ratio))}): "
        f"the largest rcvbuf whose window's worth fits under {rule.formula} at truesize/len {ratio:.3f} is "
        f"{size(fit)}; fleet-wide, net.ipv4.tcp_rmem max {fit // SO_RCVBUF_STEP * SO_RCVBUF_STEP}{upgrade}",
        "window_over_backlog_room",
    )


def _lacking(flow: FlowDrop, missing: list[str]) -> Verdict:
    return Verdict(
        code="window_not_computed",
        title="window arithmetic not computed",
        summary=f"the window against the backlog limit cannot be computed for this flow: missing {', '.join(missing)}.",
        next_step="run a tier that reads the socket and the dropped skb (bpftrace kfree_skb, bcc, systemtap)",
        evidence={"missing": missing, "rcvbuf": flow.rcvbuf},
    )
