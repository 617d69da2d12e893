// SPDX-License-Identifier: GPL-2.0-only
/*
 * Connection attribution: which task opened each TCP connection to the proxy.
 *
 * One sockops program on the cgroup v2 root joins the two ends in the kernel
 * (see shared/BPF-NOTES.md):
 *  1. TCP_CONNECT_CB runs in the connecting task's context with the source
 *     port assigned: if the destination port is a proxy port, record the task
 *     in `pending`, keyed by the client-side 4-tuple.
 *  2. PASSIVE_ESTABLISHED_CB runs on the accepted socket before accept()
 *     returns: move the record into that socket's sk storage (`owners`).
 * The proxy then looks its accepted fd up in `owners`; the record lives and
 * dies with the socket.
 */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "attribution.h"

#define AF_INET 2
#define AF_INET6 10

/* Set by the loader before load (frozen .rodata: dead branches are pruned by
 * the verifier, so a helper refused on some kernel costs nothing when off). */
const volatile bool read_task = true;   /* start time and netns inode via task BTF */
const volatile bool netns_cookie = true; /* bpf_get_netns_cookie(skops), 5.15+ */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KSCRIBE_MAX_PORTS);
	__type(key, __u16); /* host order */
	__type(value, __u8);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KSCRIBE_MAX_PENDING);
	__type(key, struct kscribe_tuple);
	__type(value, struct kscribe_owner);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kscribe_owner);
} owners SEC(".maps");

/* The record is 88 bytes: built in a per-CPU slot, not on the 512-byte stack
 * next to the tuple and helper arguments. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kscribe_owner);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KSCRIBE_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &which);

	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

static __always_inline bool is_proxy_port(__u16 port)
{
	return bpf_map_lookup_elem(&ports, &port) != NULL;
}

#define V4_MAPPED_PREFIX bpf_htonl(0x0000ffff)

/*
 * Both ends' addresses as v4-mapped IPv6. Every context field is loaded once,
 * unconditionally, and pinned with barrier_var(): otherwise clang merges the
 * connect and accept paths into one load through a context pointer offset by
 * a variable, which the verifier refuses ("dereference of modified ctx ptr").
 */
static __always_inline int read_addrs(const struct bpf_sock_ops *skops,
				      __u32 local[4], __u32 remote[4])
{
	__u32 family = skops->family;
	__u32 l4 = skops->local_ip4, r4 = skops->remote_ip4;
	__u32 l0 = skops->local_ip6[0], l1 = skops->local_ip6[1];
	__u32 l2 = skops->local_ip6[2], l3 = skops->local_ip6[3];
	__u32 r0 = skops->remote_ip6[0], r1 = skops->remote_ip6[1];
	__u32 r2 = skops->remote_ip6[2], r3 = skops->remote_ip6[3];

	barrier_var(l4);
	barrier_var(r4);
	barrier_var(l0);
	barrier_var(l1);
	barrier_var(l2);
	barrier_var(l3);
	barrier_var(r0);
	barrier_var(r1);
	barrier_var(r2);
	barrier_var(r3);
	if (family == AF_INET) {
		local[0] = 0;
		local[1] = 0;
		local[2] = V4_MAPPED_PREFIX;
		local[3] = l4;
		remote[0] = 0;
		remote[1] = 0;
		remote[2] = V4_MAPPED_PREFIX;
		remote[3] = r4;
		return 0;
	}
	if (family == AF_INET6) {
		local[0] = l0;
		local[1] = l1;
		local[2] = l2;
		local[3] = l3;
		remote[0] = r0;
		remote[1] = r1;
		remote[2] = r2;
		remote[3] = r3;
		return 0;
	}
	return -1;
}

static __always_inline int on_connect(struct bpf_sock_ops *skops)
{
	struct kscribe_tuple key = {};
	struct kscribe_owner *o;
	__u32 zero = 0;
	__u64 id;
	__u16 dport = bpf_ntohl(skops->remote_port);

	if (!is_proxy_port(dport))
		return 0;

	/* The connecting socket: local is the client. */
	if (read_addrs(skops, key.client_ip, key.server_ip)) {
		count(KSCRIBE_CNT_BAD_FAMILY);
		return 0;
	}
	key.client_port = (__u16)skops->local_port;
	key.server_port = dport;

	o = bpf_map_lookup_elem(&scratch, &zero);
	if (!o)
		return 0;
	id = bpf_get_current_pid_tgid();
	o->tgid = id >> 32;
	o->tid = (__u32)id;
	id = bpf_get_current_uid_gid();
	o->uid = (__u32)id;
	o->gid = id >> 32;
	o->cgroup_id = bpf_get_current_cgroup_id();
	o->connect_boot_ns = bpf_ktime_get_boot_ns();
	o->abi_version = KSCRIBE_ABI_VERSION;
	o->flags = 0;
	o->netns_cookie = 0;
	o->netns_ino = 0;
	o->start_boottime_ns = 0;
	o->_pad0 = 0;
	bpf_get_current_comm(o->comm, sizeof(o->comm));
	if (netns_cookie) {
		o->netns_cookie = bpf_get_netns_cookie(skops);
		o->flags |= KSCRIBE_OWNER_HAVE_NETNS_COOKIE;
	}
	if (read_task) {
		struct task_struct *task = bpf_get_current_task_btf();

		/* Trusted BTF pointer walks, not bpf_probe_read_kernel (which
		 * lockdown may refuse). The group leader's start time is what
		 * /proc/PID/stat reports (field 22, in clock ticks). */
		o->start_boottime_ns = task->group_leader->start_boottime;
		o->flags |= KSCRIBE_OWNER_HAVE_START;
		if (task->nsproxy) {
			o->netns_ino = task->nsproxy->net_ns->ns.inum;
			o->flags |= KSCRIBE_OWNER_HAVE_NETNS_INO;
		}
	}

	if (bpf_map_update_elem(&pending, &key, o, BPF_ANY)) {
		count(KSCRIBE_CNT_PENDING_FULL);
		return 0;
	}
	count(KSCRIBE_CNT_CONNECT);
	return 0;
}

static __always_inline int on_accept(struct bpf_sock_ops *skops)
{
	struct kscribe_tuple key = {};
	struct kscribe_owner *o, *stored;
	__u16 lport = (__u16)skops->local_port;
	struct bpf_sock *sk;

	if (!is_proxy_port(lport))
		return 0;
	count(KSCRIBE_CNT_ACCEPT);

	/* The accepted socket sees the tuple reversed: remote is the client. */
	if (read_addrs(skops, key.server_ip, key.client_ip)) {
		count(KSCRIBE_CNT_BAD_FAMILY);
		return 0;
	}
	key.client_port = bpf_ntohl(skops->remote_port);
	key.server_port = lport;

	o = bpf_map_lookup_elem(&pending, &key);
	if (!o) {
		count(KSCRIBE_CNT_NO_PENDING);
		return 0;
	}
	sk = skops->sk;
	if (!sk) {
		count(KSCRIBE_CNT_NO_SK);
		bpf_map_delete_elem(&pending, &key);
		return 0;
	}
	stored = bpf_sk_storage_get(&owners, sk, o, BPF_SK_STORAGE_GET_F_CREATE);
	bpf_map_delete_elem(&pending, &key);
	if (!stored) {
		count(KSCRIBE_CNT_STORAGE_FAIL);
		return 0;
	}
	count(KSCRIBE_CNT_JOINED);
	return 0;
}

SEC("sockops")
int kscribe_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		on_connect(skops);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		on_accept(skops);
		break;
	}
	return 1; /* sockops: 1 lets the operation proceed */
}

char LICENSE[] SEC("license") = "GPL";
