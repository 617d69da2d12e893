/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The ABI between bpf/attribution.bpf.c and user space (agent/bpf_loader.cc,
 * agent/attribution.cc). Plain C, fixed-width fields, explicit padding: the
 * same bytes on both sides. C++ conveniences and layout checks live in
 * agent/bpf_abi.h; never re-declare these structs there.
 */
#ifndef KSCRIBE_BPF_ATTRIBUTION_H
#define KSCRIBE_BPF_ATTRIBUTION_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define KSCRIBE_COMM_LEN 16
/* Connects to a proxy port not yet accepted; an LRU so that connects that
 * never complete (refused, timed out) age out instead of filling it. */
#define KSCRIBE_MAX_PENDING 16384
/* The proxy listens on a handful of ports. */
#define KSCRIBE_MAX_PORTS 64

/* Bumped whenever struct kscribe_owner or kscribe_tuple change shape. */
#define KSCRIBE_ABI_VERSION 1

/* Owner flags. */
enum kscribe_owner_flags {
	/* start_boottime_ns is the group leader's start time from the task. */
	KSCRIBE_OWNER_HAVE_START = 1 << 0,
	/* netns_cookie is bpf_get_netns_cookie() of the connecting socket. */
	KSCRIBE_OWNER_HAVE_NETNS_COOKIE = 1 << 1,
	/* netns_ino is the inode of the connecting socket's network namespace. */
	KSCRIBE_OWNER_HAVE_NETNS_INO = 1 << 2,
};

/*
 * The connecting task, recorded at BPF_SOCK_OPS_TCP_CONNECT_CB (process
 * context) and moved into the accepted socket's sk storage.
 */
struct kscribe_owner {
	__u32 tgid;
	__u32 tid;
	__u32 uid;
	__u32 gid;
	__u64 cgroup_id;	  /* cgroup v2 id == inode of the cgroup dir */
	__u64 netns_cookie;	  /* 0 unless KSCRIBE_OWNER_HAVE_NETNS_COOKIE */
	__u64 connect_boot_ns;	  /* bpf_ktime_get_boot_ns() at connect */
	__u64 start_boottime_ns;  /* task->group_leader->start_boottime */
	__u32 netns_ino;	  /* 0 unless KSCRIBE_OWNER_HAVE_NETNS_INO */
	__u32 flags;		  /* enum kscribe_owner_flags */
	__u32 abi_version;	  /* KSCRIBE_ABI_VERSION */
	__u32 _pad0;
	char comm[KSCRIBE_COMM_LEN];  /* the connecting thread's comm */
};

/*
 * A TCP connection as seen from the client: addresses as IPv6 in network
 * byte order (IPv4 as v4-mapped ::ffff:a.b.c.d), ports in host order.
 */
struct kscribe_tuple {
	__u32 client_ip[4];
	__u32 server_ip[4];
	__u16 client_port;
	__u16 server_port;
	__u32 _pad0;
};

/* Per-CPU counters (index into the `counters` array map). */
enum kscribe_counter {
	/* connect() to a proxy port: a pending entry was written */
	KSCRIBE_CNT_CONNECT = 0,
	/* accepted on a proxy port */
	KSCRIBE_CNT_ACCEPT,
	/* accepted and the owner moved into sk storage */
	KSCRIBE_CNT_JOINED,
	/* accepted but no pending entry: connected before attach, or evicted */
	KSCRIBE_CNT_NO_PENDING,
	/* the pending map refused an update (full / out of memory) */
	KSCRIBE_CNT_PENDING_FULL,
	/* bpf_sk_storage_get(F_CREATE) failed on the accepted socket */
	KSCRIBE_CNT_STORAGE_FAIL,
	/* skops->sk was NULL where a socket was needed */
	KSCRIBE_CNT_NO_SK,
	/* not IPv4/IPv6 */
	KSCRIBE_CNT_BAD_FAMILY,
	KSCRIBE_CNT_MAX,
};

#endif /* KSCRIBE_BPF_ATTRIBUTION_H */
