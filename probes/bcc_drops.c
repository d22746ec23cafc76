// fleetdiag: TCP drops with bcc: one program for every tier, chosen by the FD_* switches below.
//
// FD_TRACEPOINT      tracepoint skb:kfree_skb with `reason` (5.18+ with SOCKET_BACKLOG)
// FD_RX_SK           ... and with `rx_sk` (6.11+): flow and socket state from the socket
// FD_RAW_TP          ... attached as a raw tracepoint (a recursion guard of its own), else the tracepoint
// FD_ADD_BACKLOG     the return of tcp_add_backlog (kprobe + kretprobe, 4.9+): SOCKET_BACKLOG
//                    with the socket's state; with FD_TRACEPOINT, kfree_skb leaves those to it
// Everything is aggregated in the kernel; the runner prints the maps once, at the end.
// Placeholders (names between double @) are filled by fleetdiag with integers it validated.
#define FD_NETNS @@NETNS@@ULL
#define FD_PORT @@PORT@@
#define FD_SOCKET_BACKLOG @@SOCKET_BACKLOG@@
#define FD_MAP_KEYS_MAX @@MAP_KEYS_MAX@@
#define FD_TRACEPOINT @@TRACEPOINT@@
#define FD_RX_SK @@RX_SK@@
#define FD_ADD_BACKLOG @@ADD_BACKLOG@@
#define FD_READ_KERNEL @@READ_KERNEL@@
// tcp_sock.scaling_ratio came in 6.6: older kernels' headers do not have it.
#define FD_SCALING_RATIO @@SCALING_RATIO@@
#define FD_INTERVAL_NS @@INTERVAL_NS@@ULL
#define FD_RAW_TP @@RAW_TP@@

#include <uapi/linux/ptrace.h>
#include <linux/skbuff.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <net/sock.h>
// 6.x moved enum skb_drop_reason out of skbuff.h; the tracepoint's `reason` needs it.
#if defined(__has_include)
#if __has_include(<net/dropreason.h>)
#include <net/dropreason.h>
#endif
#endif

#if FD_READ_KERNEL
#define fd_read bpf_probe_read_kernel
#else
#define fd_read bpf_probe_read
#endif

struct fd_key {
    u64 ns;  // 0: the packet carried no namespace (drops after the socket lookup, no rx_sk)
    u32 reason;
    u16 family;
    u16 lport;
    u16 rport;
    u16 pad;
    u8 laddr[16];
    u8 raddr[16];
};

struct fd_state {
    u32 rcvbuf;
    u32 sndbuf;
    u32 backlog_max;
    u32 rmem_max;
    u32 queue_max;
};

// The receive window at the last backlog drop and the dropped skbs' sizes (max, sum).
struct fd_window {
    u32 rcv_wnd;
    u32 window_clamp;
    u32 rcv_ssthresh;
    s32 scaling_ratio;  // -1: not in this kernel
    u32 len_max;
    u32 truesize_max;
    u64 len_sum;
    u64 truesize_sum;
};

BPF_HASH(fd_total, u32, u64, 1024);
BPF_HASH(fd_drops, struct fd_key, u64, FD_MAP_KEYS_MAX);
BPF_HASH(fd_state, struct fd_key, struct fd_state, FD_MAP_KEYS_MAX);
BPF_ARRAY(fd_overflow, u64, 1);
BPF_HASH(fd_window, struct fd_key, struct fd_window, FD_MAP_KEYS_MAX);
// The timeline: drops per (reason, interval since fd_t0), and per (flow, interval). The runner
// sets fd_t0 (CLOCK_MONOTONIC, as bpf_ktime_get_ns) just before it says the probe watches.
struct fd_tl_key {
    u32 reason;
    u32 index;
};
struct fd_ftl_key {
    struct fd_key flow;
    u64 index;
};
BPF_ARRAY(fd_t0, u64, 1);
BPF_HASH(fd_tl, struct fd_tl_key, u64, FD_MAP_KEYS_MAX);
BPF_HASH(fd_ftl, struct fd_ftl_key, u64, FD_MAP_KEYS_MAX);
// Drops without a socket per (reason, local port, interval) instead: a storm hits one key a second.
struct fd_ptl_key {
    u32 reason;
    u32 lport;
    u64 index;
};
BPF_HASH(fd_ptl, struct fd_ptl_key, u64, FD_MAP_KEYS_MAX);

// Per flow only for drops with a socket: a storm of new flows without one (SYNs to a closed
// port) would fill fd_ftl and cost every drop a failed insert.
static inline void fd_count_interval(struct fd_key *key, int with_socket)
{
    int first = 0;
    u64 index = 0, now = bpf_ktime_get_ns();
    u64 *t0 = fd_t0.lookup(&first);
    if (t0 && *t0 && now > *t0)
        index = (now - *t0) / FD_INTERVAL_NS;
    struct fd_tl_key tk = {};
    tk.reason = key->reason;
    tk.index = index;
    fd_tl.increment(tk);  // no new key when the map is full: the parser says so
    if (!with_socket) {
        struct fd_ptl_key pk = {};
        pk.reason = key->reason;
        pk.lport = key->lport;
        pk.index = index;
        fd_ptl.increment(pk);
        return;
    }
    struct fd_ftl_key fk = {};
    __builtin_memcpy(&fk.flow, key, sizeof(fk.flow));
    fk.index = index;
    fd_ftl.increment(fk);
}

static inline int fd_port_ok(struct fd_key *key)
{
    return FD_PORT == 0 || key->lport == FD_PORT || key->rport == FD_PORT;
}

static inline void fd_count(struct fd_key *key, int with_socket)
{
    u64 zero = 0;
    u32 reason = key->reason;
    u64 *n = fd_total.lookup(&reason);
    if (!n) {
        fd_total.update(&reason, &zero);
        n = fd_total.lookup(&reason);
    }
    if (n)
        __sync_fetch_and_add(n, 1);
    n = fd_drops.lookup(key);
    if (!n) {
        fd_drops.update(key, &zero);  // refused when the map is full
        n = fd_drops.lookup(key);
    }
    if (n) {
        __sync_fetch_and_add(n, 1);
    } else {
        int first = 0;
        u64 *lost = fd_overflow.lookup(&first);
        if (lost)
            __sync_fetch_and_add(lost, 1);
    }
    fd_count_interval(key, with_socket);
}

static inline u64 fd_sock_ns(struct sock *sk)
{
    return sk->__sk_common.skc_net.net->ns.inum;
}

static inline void fd_from_sock(struct fd_key *key, struct sock *sk)
{
    u16 family = sk->__sk_common.skc_family;
    u16 dport = sk->__sk_common.skc_dport;
    key->family = family;
    key->lport = sk->__sk_common.skc_num;
    key->rport = ntohs(dport);
    if (family == AF_INET6) {
        fd_read(key->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
        fd_read(key->raddr, 16, &sk->__sk_common.skc_v6_daddr);
    } else {
        fd_read(key->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
        fd_read(key->raddr, 4, &sk->__sk_common.skc_daddr);
    }
}

static inline void fd_record_state(struct fd_key *key, struct sock *sk)
{
    struct fd_state fresh = {};
    struct fd_state *st = fd_state.lookup(key);
    if (!st) {
        fd_state.update(key, &fresh);
        st = fd_state.lookup(key);
        if (!st)
            return;
    }
    u32 backlog = sk->sk_backlog.len;
    u32 rmem = sk->sk_backlog.rmem_alloc.counter;
    st->rcvbuf = sk->sk_rcvbuf;
    st->sndbuf = sk->sk_sndbuf;
    if (backlog > st->backlog_max)
        st->backlog_max = backlog;
    if (rmem > st->rmem_max)
        st->rmem_max = rmem;
    if (backlog + rmem > st->queue_max)
        st->queue_max = backlog + rmem;
}

static inline void fd_record_window(struct fd_key *key, struct sock *sk, struct sk_buff *skb)
{
    struct fd_window fresh = {};
    struct fd_window *w = fd_window.lookup(key);
    if (!w) {
        fd_window.update(key, &fresh);
        w = fd_window.lookup(key);
        if (!w)
            return;
    }
    struct tcp_sock *tp = (struct tcp_sock *)sk;
    u32 v = 0, len = 0, truesize = 0;
    fd_read(&v, sizeof(v), &tp->rcv_wnd);
    w->rcv_wnd = v;
    fd_read(&v, sizeof(v), &tp->window_clamp);
    w->window_clamp = v;
    fd_read(&v, sizeof(v), &tp->rcv_ssthresh);
    w->rcv_ssthresh = v;
#if FD_SCALING_RATIO
    u8 ratio = 0;
    fd_read(&ratio, sizeof(ratio), &tp->scaling_ratio);
    w->scaling_ratio = ratio;
#else
    w->scaling_ratio = -1;
#endif
    fd_read(&len, sizeof(len), &skb->len);
    fd_read(&truesize, sizeof(truesize), &skb->truesize);
    if (len > w->len_max)
        w->len_max = len;
    if (truesize > w->truesize_max)
        w->truesize_max = truesize;
    __sync_fetch_and_add(&w->len_sum, (u64)len);
    __sync_fetch_and_add(&w->truesize_sum, (u64)truesize);
}

#if FD_TRACEPOINT
// The flow from the packet's own headers (IPv4, or IPv6 without extension headers).
static inline int fd_from_headers(struct fd_key *key, struct sk_buff *skb, u16 protocol)
{
    unsigned char *head = skb->head;
    u16 nh = skb->network_header;
    struct tcphdr th = {};
    if (protocol == ETH_P_IP) {
        struct iphdr ip = {};
        fd_read(&ip, sizeof(ip), head + nh);
        if (ip.protocol != IPPROTO_TCP)
            return 0;
        fd_read(&th, sizeof(th), head + nh + ip.ihl * 4);
        key->family = AF_INET;
        __builtin_memcpy(key->laddr, &ip.daddr, 4);
        __builtin_memcpy(key->raddr, &ip.saddr, 4);
    } else {
        struct ipv6hdr ip6 = {};
        fd_read(&ip6, sizeof(ip6), head + nh);
        if (ip6.nexthdr != IPPROTO_TCP)
            return 0;
        fd_read(&th, sizeof(th), head + nh + sizeof(ip6));
        key->family = AF_INET6;
        __builtin_memcpy(key->laddr, &ip6.daddr, 16);
        __builtin_memcpy(key->raddr, &ip6.saddr, 16);
    }
    key->lport = ntohs(th.dest);
    key->rport = ntohs(th.source);
    return 1;
}

#if FD_RAW_TP
// A raw tracepoint: its recursion guard is the program's own (prog->active), so a drop nested in
// another BPF tracing program on this CPU is still seen; tracepoint programs share one guard per
// CPU (bpf_prog_active) and are all skipped then. Its arguments: skb, location, reason, rx_sk (6.11+).
static inline u16 fd_raw_protocol(struct sk_buff *skb)
{
    __be16 proto = 0;
    fd_read(&proto, sizeof(proto), &skb->protocol);
    return ntohs(proto);  // the tracepoint's field is in host order
}
#define FD_KFREE_SKB RAW_TRACEPOINT_PROBE(kfree_skb)
#define FD_SKBADDR ctx->args[0]
#define FD_PROTOCOL fd_raw_protocol((struct sk_buff *)ctx->args[0])
#define FD_REASON ((u32)ctx->args[2])
#define FD_RX_SK_ARG ctx->args[3]
#else
#define FD_KFREE_SKB TRACEPOINT_PROBE(skb, kfree_skb)
#define FD_SKBADDR args->skbaddr
#define FD_PROTOCOL args->protocol
#define FD_REASON args->reason
#define FD_RX_SK_ARG args->rx_sk
#endif

FD_KFREE_SKB
{
    struct fd_key key;
    __builtin_memset(&key, 0, sizeof(key));
    u16 protocol = FD_PROTOCOL;
    if (protocol != ETH_P_IP && protocol != ETH_P_IPV6)
        return 0;
    key.reason = FD_REASON;
#if FD_ADD_BACKLOG
    if (key.reason == FD_SOCKET_BACKLOG)
        return 0;  // counted, with the socket, at the return of tcp_add_backlog
#endif
#if FD_RX_SK
    struct sock *sk = (struct sock *)FD_RX_SK_ARG;
    if (sk) {
        if (sk->sk_protocol != IPPROTO_TCP)
            return 0;
        key.ns = fd_sock_ns(sk);
        if (key.ns != FD_NETNS)
            return 0;
        fd_from_sock(&key, sk);
        if (!fd_port_ok(&key))
            return 0;
        fd_count(&key, 1);
        if (key.reason == FD_SOCKET_BACKLOG) {
            fd_record_state(&key, sk);
            fd_record_window(&key, sk, (struct sk_buff *)FD_SKBADDR);
        }
        return 0;
    }
#endif
    struct sk_buff *skb = (struct sk_buff *)FD_SKBADDR;
    struct net_device *dev = skb->dev;
    u64 ns = 0;
    if (dev)
        ns = dev->nd_net.net->ns.inum;
    // With rx_sk every drop after the lookup has its socket; without, they carry no device.
    if (ns != FD_NETNS && (FD_RX_SK || ns != 0))
        return 0;
    key.ns = ns;
    if (!fd_from_headers(&key, skb, protocol) || !fd_port_ok(&key))
        return 0;
    fd_count(&key, 0);
    return 0;
}
#endif

#if FD_ADD_BACKLOG
// A kretprobe cannot see the arguments: the entry saves the socket by thread.
BPF_HASH(fd_entry, u64, struct sock *, 10240);
BPF_HASH(fd_entry_skb, u64, struct sk_buff *, 10240);

int kprobe__tcp_add_backlog(struct pt_regs *ctx, struct sock *sk, struct sk_buff *skb)
{
    u64 id = bpf_get_current_pid_tgid();
    fd_entry.update(&id, &sk);
    fd_entry_skb.update(&id, &skb);
    return 0;
}

int kretprobe__tcp_add_backlog(struct pt_regs *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    struct sock **saved = fd_entry.lookup(&id);
    if (!saved)
        return 0;
    struct sock *sk = *saved;
    fd_entry.delete(&id);
    struct sk_buff **saved_skb = fd_entry_skb.lookup(&id);
    struct sk_buff *skb = saved_skb ? *saved_skb : 0;
    fd_entry_skb.delete(&id);
    if ((PT_REGS_RC(ctx) & 0xff) == 0)  // a bool: only the low byte is defined
        return 0;
    struct fd_key key;
    __builtin_memset(&key, 0, sizeof(key));
    key.ns = fd_sock_ns(sk);
    if (key.ns != FD_NETNS)
        return 0;
    key.reason = FD_SOCKET_BACKLOG;
    fd_from_sock(&key, sk);
    if (!fd_port_ok(&key))
        return 0;
    fd_count(&key, 1);
    fd_record_state(&key, sk);
    if (skb)
        fd_record_window(&key, sk, skb);
    return 0;
}
#endif
