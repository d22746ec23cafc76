"""Verdicts on a flow's SOCKET_BACKLOG drops, from the socket state the probe saw at drop time.

The kernel drops a segment for the backlog when, with the socket owned by the
application, ``sk_backlog.len + sk_rmem_alloc`` exceeds a limit that depends on the
kernel version (``backlog_limit.py``). Which of the two parts was large, and how
rcvbuf came to be what it was, says what to change.
"""

from __future__ import annotations

from fleetdiag.backlog_limit import backlog_limit, backlog_limit_formula
from fleetdiag.diagnosis.verdict import Verdict, percent, size
from fleetdiag.diagnosis.window import window_verdict
from fleetdiag.model import FlowDrop, HostResult

SOCKET_BACKLOG = "SOCKET_BACKLOG"
# include/net/sock.h: set once the application calls setsockopt(SO_RCVBUF).
SOCK_RCVBUF_LOCK = 2
# rmem_alloc at or above this share of rcvbuf: the receive queue was full.
RCVQ_FULL_SHARE = 0.9
# rmem_alloc above this share of rcvbuf was queued when rcvbuf was larger.
RCVBUF_SHRUNK_SHARE = 2.0
# Backlog at least this share of the limit while rmem stayed under RMEM_LOW_SHARE of rcvbuf:
# the backlog alone overflowed, so the socket was owned for long, not slowly drained.
BACKLOG_HIGH_SHARE = 0.5
RMEM_LOW_SHARE = 0.5
# An autotuned buffer this large lets the sender fill a window bigger than the backlog can take
# (the origin case: 64 MB autotuned dropped, 8 MB set by hand did not).
AUTOTUNED_LARGE = 4 << 20
# A hand-set rcvbuf under this is small enough that ordinary bursts overflow the limit.
LOCKED_SMALL = 64 << 10


def flow_verdicts(host: HostResult, flow: FlowDrop) -> tuple[Verdict, ...]:
    """Every backlog verdict the flow's numbers support (none for other reasons or without state)."""
    if flow.reason != SOCKET_BACKLOG or flow.rcvbuf is None:
        return ()
    found = [
        _over_limit(host, flow),
        _receive_queue_full(flow),
        _backlog_while_owned(host, flow),
        _autotuned_large(host, flow),
        _locked_small(host, flow),
        window_verdict(host, flow),  # the mechanism in bytes, with a value to set (window.py)
    ]
    return tuple(v for v in found if v is not None)


def _over_limit(host: HostResult, flow: FlowDrop) -> Verdict | None:
    limit = backlog_limit(host.kernel, flow.rcvbuf, flow.sndbuf)
    formula = backlog_limit_formula(host.kernel)
    if limit is None or flow.queue_max is None or formula is None:
        return None
    over = flow.queue_max > limit
    evidence = {
        "kernel": host.kernel,
        "formula": formula,
        "rcvbuf": flow.rcvbuf,
        "sndbuf": flow.sndbuf,
        "backlog_limit": limit,
        "queue_max": flow.queue_max,
        "over_by": flow.queue_max - limit,
    }
    if over:
        return Verdict(
            code="over_backlog_limit",
            title="over the kernel's backlog limit",
            summary=(
                f"backlog+rmem reached {size(flow.queue_max)} at drop, over the {size(limit)} limit "
                f"{host.kernel} computes as {formula} (rcvbuf {size(flow.rcvbuf)}, sndbuf {size(flow.sndbuf)})."
            ),
            next_step="the limit scales with rcvbuf: see the flow's other verdicts for why the queue outgrew it",
            evidence=evidence,
        )
    # Drops under the computed limit: the socket state moved between the check and the probe,
    # or this kernel's limit differs from its version's formula (a stable backport).
    return Verdict(
        code="under_backlog_limit",
        title="dropped under the computed limit",
        summary=(
            f"backlog+rmem peaked at {size(flow.queue_max)}, under the {size(limit)} that {formula} gives "
            f"for {host.kernel}: rcvbuf changed around the drop, or this kernel's limit is not its version's."
        ),
        next_step="check whether the application changes SO_RCVBUF on the live socket, and the kernel's changelog",
        evidence=evidence,
    )


def _receive_queue_full(flow: FlowDrop) -> Verdict | None:
    rcvbuf, rmem = flow.rcvbuf, flow.rmem_alloc_max
    if rcvbuf is None or rmem is None or rmem < RCVQ_FULL_SHARE * rcvbuf:
        return None
    # A queue well over rcvbuf cannot have been admitted under it: rcvbuf shrank under queued data.
    shrunk = " rcvbuf was lowered while that data sat in the queue." if rmem > RCVBUF_SHRUNK_SHARE * rcvbuf else ""
    return Verdict(
        code="receive_queue_full",
        title="receive queue full at drop",
        summary=(
            f"the receive queue held {size(rmem)} at drop against an rcvbuf of {size(rcvbuf)} "
            f"({percent(rmem, rcvbuf):g}%): data arrived faster than the application read it.{shrunk}"
        ),
        next_step=(
            "the application is not draining the socket: check its read loop (CPU, blocking work between reads) "
            "and any code that lowers SO_RCVBUF on the live socket"
        ),
        evidence={"rmem_alloc_max": rmem, "rcvbuf": rcvbuf, "share_pct": percent(rmem, rcvbuf)},
    )


def _backlog_while_owned(host: HostResult, flow: FlowDrop) -> Verdict | None:
    limit = backlog_limit(host.kernel, flow.rcvbuf, flow.sndbuf)
    backlog, rmem, rcvbuf = flow.backlog_len_max, flow.rmem_alloc_max, flow.rcvbuf
    if None in (limit, backlog, rmem, rcvbuf):
        return None
    assert limit is not None and backlog is not None and rmem is not None and rcvbuf is not None
    if backlog < BACKLOG_HIGH_SHARE * limit or rmem > RMEM_LOW_SHARE * rcvbuf:
        return None
    return Verdict(
        code="backlog_overflow_while_owned",
        title="backlog overflowed while the socket was owned",
        summary=(
            f"the backlog reached {size(backlog)} ({percent(backlog, limit):g}% of the {size(limit)} limit) while "
            f"the receive queue held only {size(rmem)} of {size(rcvbuf)}: the application held the socket "
            "for long, it was not slow to read."
        ),
        next_step=(
            "find what keeps the socket locked: very large recv()/send() calls, or other threads calling "
            "setsockopt/getsockopt/sendmsg on it; read in smaller pieces and keep socket calls off hot loops"
        ),
        evidence={"backlog_len_max": backlog, "rmem_alloc_max": rmem, "rcvbuf": rcvbuf, "backlog_limit": limit},
    )


def _autotuned_large(host: HostResult, flow: FlowDrop) -> Verdict | None:
    if flow.userlocks is None or flow.userlocks & SOCK_RCVBUF_LOCK or (flow.rcvbuf or 0) < AUTOTUNED_LARGE:
        return None
    return Verdict(
        code="autotuned_rcvbuf_large",
        title="large autotuned rcvbuf",
        summary=(
            f"rcvbuf was {size(flow.rcvbuf)}, grown by autotuning (no SO_RCVBUF: userlocks {flow.userlocks}): "
            "the window it advertises lets the sender put more in flight than the socket absorbs "
            "while the application owns it."
        ),
        next_step=(
            "set SO_RCVBUF explicitly (e.g. 8 MiB): it locks the buffer and clamps the advertised window; "
            "in the original case 64 MB autotuned dropped and 8 MB set by hand did not. "
            "Fleet-wide, lower the max of net.ipv4.tcp_rmem"
        ),
        evidence={"rcvbuf": flow.rcvbuf, "userlocks": flow.userlocks, "rcvbuf_locked": False, "kernel": host.kernel},
    )


def _locked_small(host: HostResult, flow: FlowDrop) -> Verdict | None:
    if flow.userlocks is None or not flow.userlocks & SOCK_RCVBUF_LOCK or (flow.rcvbuf or 0) >= LOCKED_SMALL:
        return None
    limit = backlog_limit(host.kernel, flow.rcvbuf, flow.sndbuf)
    return Verdict(
        code="rcvbuf_set_small",
        title="SO_RCVBUF set small by hand",
        summary=(
            f"the application set SO_RCVBUF (userlocks {flow.userlocks}) and rcvbuf was {size(flow.rcvbuf)} "
            f"at drop, so the backlog limit was only {size(limit)}."
        ),
        next_step="remove the setsockopt(SO_RCVBUF) or raise it to cover a bandwidth-delay product of data",
        evidence={"rcvbuf": flow.rcvbuf, "userlocks": flow.userlocks, "rcvbuf_locked": True, "backlog_limit": limit},
    )
