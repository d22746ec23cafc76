"""Drop reasons explained by name: the kernel's skb_drop_reason -> a plain sentence and a next step.

Names are the kernel's own (``include/net/dropreason-core.h``, printed in the host's
``events/skb/kfree_skb/format``); numbers differ between kernels, names do not.
SOCKET_BACKLOG is listed too, but its flows get the detailed verdicts of ``backlog.py``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from fleetdiag.diagnosis.verdict import Verdict

# name -> (what happened, what to do next)
REASON_TABLE: Mapping[str, tuple[str, str]] = MappingProxyType({
    "NOT_SPECIFIED": (
        "the kernel dropped the segment without naming a reason",
        "look at the flow's other reasons and the TcpExt counters; older code paths do not set a reason",
    ),
    "NO_SOCKET": (
        "no socket matched the segment: nothing listens on that port, or the connection was already gone",
        "check the service listens on that address and port (ss -ltn); a peer still sending after a close or a port scan also shows here",
    ),
    "SOCKET_CLOSE": (
        "the socket was closing or closed when the segment arrived",
        "usually harmless at connection teardown; many of them mean the application closes with data in flight",
    ),
    "SOCKET_FILTER": (
        "a socket filter (SO_ATTACH_FILTER / BPF) attached to the socket rejected the segment",
        "check programs that attach filters to the socket (ss -tp shows the owner; bpftool prog shows BPF filters)",
    ),
    "SOCKET_RCVBUFF": (
        "the socket's receive buffer was full",
        "the application is not reading fast enough, or SO_RCVBUF is too small for the traffic",
    ),
    "PKT_TOO_SMALL": (
        "the packet was shorter than its headers claim",
        "look for broken senders or middleboxes truncating packets",
    ),
    "TCP_CSUM": (
        "the TCP checksum was wrong",
        "check NIC checksum offload and the path for corruption (ethtool -k, TcpInCsumErrors)",
    ),
    "NETFILTER_DROP": (
        "a netfilter rule (nftables/iptables) dropped the segment",
        "list the rules with nft list ruleset or iptables-save and find the one that matches this flow",
    ),
    "OTHERHOST": (
        "the packet was addressed to another host (interface in promiscuous mode)",
        "harmless unless unexpected; check what put the interface in promiscuous mode",
    ),
    "IP_CSUM": ("the IP header checksum was wrong", "check the NIC and the path for corruption"),
    "IP_INHDR": ("the IP header was invalid", "look for broken senders or middleboxes (IpInHdrErrors)"),
    "IP_RPFILTER": (
        "reverse-path filtering rejected the source address",
        "check net.ipv4.conf.*.rp_filter and the routes back to the source (asymmetric routing)",
    ),
    "XFRM_POLICY": ("an IPsec (xfrm) policy check failed", "check ip xfrm policy for this flow"),
    "IP_NOPROTO": ("no handler for the IP protocol", "harmless unless the protocol is expected here"),
    "PROTO_MEM": (
        (
            "TCP could not charge the segment to memory: the socket's receive buffer was full "
            "(TcpExt TCPRcvQDrop / TCPOFODrop) or TCP's global memory limit was reached"
        ),
        (
            "if TCPRcvQDrop moved, the application is not draining the socket; if TCPMemoryPressures moved, "
            "compare /proc/net/sockstat 'TCP: mem' with net.ipv4.tcp_mem"
        ),
    ),
    "SOCKET_BACKLOG": (
        "the socket backlog was over the kernel's limit while the application owned the socket (TCPBacklogDrop)",
        "see the flow's verdicts: receive queue, backlog and rcvbuf at drop against the kernel's limit",
    ),
    "TCP_FLAGS": ("the TCP flags were invalid for the connection state", "look for broken or hostile senders"),
    "TCP_ZEROWINDOW": (
        "data arrived while the receive window was zero (TcpExt TCPZeroWindowDrop)",
        "the receiving application is not reading; check it and its socket's Recv-Q (ss -tm)",
    ),
    "TCP_OLD_DATA": (
        "the data had already been received: a retransmission of something delivered (spurious retransmits)",
        "usually follows other drops or a lost ACK; fix the first drops of the flow and these go away",
    ),
    "TCP_OVERWINDOW": (
        "the data was beyond the right edge of the advertised receive window",
        "usually follows a shrinking window (SO_RCVBUF lowered on a live socket) or a misbehaving sender",
    ),
    "TCP_OFOMERGE": (
        "the data was already in the out-of-order queue",
        "a duplicate; harmless alone, a sign of retransmissions when frequent",
    ),
    "TCP_RFC7323_PAWS": (
        "PAWS rejected a segment with an old timestamp",
        "check for NAT or load balancers mixing connections, and net.ipv4.tcp_timestamps",
    ),
    "TCP_RFC7323_PAWS_ACK": (
        "PAWS rejected an ACK with an old timestamp",
        "check for NAT or load balancers mixing connections, and net.ipv4.tcp_timestamps",
    ),
    "TCP_RFC7323_TW_PAWS": (
        "a TIME_WAIT socket's PAWS check rejected the segment",
        "a peer reusing a port too soon: check net.ipv4.tcp_tw_reuse and NAT in front of the peers",
    ),
    "TCP_RFC7323_TSECR": (
        "the echoed timestamp (TSecr) was invalid",
        "look for middleboxes rewriting TCP timestamps",
    ),
    "TCP_ABORT_ON_DATA": (
        "data arrived for a socket the application had already closed; the connection was reset",
        "the application closes connections with data still coming: check its shutdown logic (TcpExt TCPAbortOnData)",
    ),
    "TCP_OLD_SEQUENCE": (
        "the segment's sequence numbers were all before the window (a duplicate)",
        "a retransmission of data already acknowledged; look for the loss that caused it",
    ),
    "TCP_INVALID_SEQUENCE": ("the sequence number was not acceptable", "look for middleboxes rewriting sequences, or a reset race"),
    "TCP_INVALID_END_SEQUENCE": (
        "the segment ended beyond the right edge of the receive window while data waited in the receive queue",
        (
            "the receiver's window shrank under the sender (SO_RCVBUF lowered on a live socket) or the sender "
            "overruns it; TcpExt BeyondWindow (6.17+) counts these with TCP_INVALID_SEQUENCE"
        ),
    ),
    "TCP_INVALID_ACK_SEQUENCE": ("the ACK number was not acceptable", "look for middleboxes or stale connections"),
    "TCP_RESET": ("an invalid RST was ignored", "harmless unless frequent: look for RST injection or stale peers"),
    "TCP_INVALID_SYN": ("an unexpected SYN arrived on an established connection", "look for peers reusing ports too fast"),
    "TCP_CLOSE": ("the socket was in CLOSE state", "harmless at teardown"),
    "TCP_FASTOPEN": ("a TCP Fast Open request socket dropped the segment", "check net.ipv4.tcp_fastopen"),
    "TCP_OLD_ACK": ("an old (in-window) ACK was dropped", "harmless"),
    "TCP_TOO_OLD_ACK": ("an ACK far too old was dropped", "look for stale peers or middleboxes"),
    "TCP_ACK_UNSENT_DATA": ("an ACK for data never sent was dropped", "look for middleboxes or hostile peers"),
    "TCP_LISTEN_OVERFLOW": (
        "the listening socket's accept queue was full (TcpExt ListenOverflows)",
        "the application does not accept() fast enough, or its listen() backlog / net.core.somaxconn is too small",
    ),
    "TCP_OFO_QUEUE_PRUNE": (
        "out-of-order data was pruned to free memory (TcpExt OfoPruned counts the prunes, not the segments dropped)",
        "the receive buffer was full: the application is not draining, or rcvbuf is small for the path's loss",
    ),
    "TCP_OFO_DROP": ("out-of-order data was already in the receive queue", "a duplicate; harmless alone"),
    "TCP_MINTTL": ("the TTL was below the socket's IP_MINTTL", "check the application's IP_MINTTL setting"),
    "TCP_MD5NOTFOUND": ("a TCP-MD5 signature was expected and missing", "check the peers' MD5 keys (BGP sessions)"),
    "TCP_MD5UNEXPECTED": ("a TCP-MD5 signature was present but not expected", "check the peers' MD5 keys"),
    "TCP_MD5FAILURE": ("the TCP-MD5 signature was wrong", "check the peers' MD5 keys"),
    "TCP_AUTH_HDR": ("TCP-MD5 or TCP-AO options were duplicated or wrong", "check both peers' authentication setup"),
    "CPU_BACKLOG": (
        "the per-CPU input backlog was full before TCP saw the packet",
        "raise net.core.netdev_max_backlog, or spread the load (RPS/RSS); check softnet_stat",
    ),
    "XDP": ("an XDP program dropped the packet", "check the XDP programs on the interface (ip link, bpftool net)"),
    "TC_INGRESS": ("a tc ingress rule or program dropped the packet", "check tc filter show dev IFACE ingress"),
    "TC_EGRESS": ("a tc egress rule or program dropped the packet", "check tc filter show dev IFACE egress"),
    "QDISC_DROP": ("the queueing discipline dropped the packet on output", "check tc -s qdisc for the interface"),
    "NOMEM": ("the kernel was out of memory for the packet", "check memory pressure on the host"),
    "PFMEMALLOC": (
        "the packet used emergency memory reserves and the socket may not use them (TcpExt PFMemallocDrop)",
        "the host is short of memory; check vm.min_free_kbytes and memory use",
    ),
    "SKB_CSUM": ("checksum computation failed", "check NIC offloads"),
    "IP_INADDRERRORS": ("the destination address was not valid here", "check routing and addresses"),
    "IP_INNOROUTES": ("no route for the packet", "check the routing table"),
    "QUEUE_PURGE": ("a queue was purged (socket closed with data queued)", "harmless at teardown"),
    "SECURITY_HOOK": ("a security module (LSM) dropped the packet", "check SELinux/AppArmor network rules"),
    # Not a kernel reason: the counters tier's sampled flows (ss skmem "d", any reason).
    "SK_DROPS": (
        "the socket's own drop counter (ss skmem d) rose between samples: drops of any reason, sampled, not traced",
        "run with a tracer on this host to learn the reasons; meanwhile check the socket's Recv-Q and rcvbuf (ss -tm)",
    ),
    "BPF_CGROUP_EGRESS": ("a cgroup BPF program dropped the packet", "check bpftool cgroup tree"),
})

_UNKNOWN = (
    "the kernel named this reason but fleetdiag has no explanation for it",
    "look it up in include/net/dropreason-core.h of this host's kernel version",
)


def explain_reason(reason: str) -> tuple[str, str]:
    """(what happened, next step) for a reason name; REASON_<n> and unknown names get a lookup hint."""
    return REASON_TABLE.get(reason, _UNKNOWN)


def reason_verdict(reason: str, drops: int, where: str) -> Verdict:
    """The plain explanation of one reason's drops, e.g. ``reason_verdict("NO_SOCKET", 6, "on h01")``."""
    what, next_step = explain_reason(reason)
    return Verdict(
        code="drop_reason",
        title=reason,
        summary=f"{drops} drop{'s' if drops != 1 else ''} {where} with reason {reason}: {what}.",
        next_step=next_step,
        evidence={"reason": reason, "drops": drops, "explained": reason in REASON_TABLE},
    )
