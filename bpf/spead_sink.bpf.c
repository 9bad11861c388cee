// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * spead_sink: an XDP program for the receiving end of the veth harness.
 * It counts UDP packets to the SPEAD port (packets, whole-frame bytes with
 * fragments, valid SPEAD packets, malformed ones, heaps completed) in
 * per-CPU counters, records their arrival timing (gaps, bursts), then
 * drops them (or passes
 * them, so a socket or tcpdump can see them). Everything else, ARP
 * included, passes untouched. Kept minimal: on veth it runs on the
 * sender's CPU.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Set by the loader before load. */
const volatile __u16 spead_port = 7148;
const volatile __u8 pass_packets = 0;
/* A gap longer than this (ns) starts a new burst. */
const volatile __u64 burst_gap_ns = 10000;
/* The rate anchor is the first burst starting this long (ns) after the
 * first packet, past a sender's start-up transient. */
const volatile __u64 settle_ns = 10000000;

/* Per-CPU counters; user space sums them. Field order is the ABI. */
struct counters {
	__u64 packets;       /* UDP packets to the SPEAD port */
	__u64 bytes;         /* their whole frame length, fragments included */
	__u64 spead_packets; /* of them, valid SPEAD packets */
	__u64 malformed;     /* of them, not valid SPEAD */
	__u64 heaps;         /* heaps whose payload fully arrived */
};

#define GAP_BUCKETS 32

/*
 * Arrival timing of the counted packets, shared by all CPUs (gaps only mean
 * something along one sequence of packets): exact when one sender thread
 * sends at a time, as in the pacing measurements. Field order is the ABI.
 */
struct timing {
	__u64 first_ns;             /* bpf_ktime_get_ns of the first packet */
	__u64 last_ns;              /* ... and of the last */
	__u64 payload_bytes;        /* UDP payload bytes of all packets */
	__u64 gaps;                 /* inter-packet gaps seen */
	__u64 gap_sum;              /* their sum (ns) */
	__u64 gap_sum_sq;           /* and sum of squares (ns^2) */
	__u64 bursts;               /* bursts (runs with gaps <= burst_gap_ns) */
	__u64 burst_bytes;          /* UDP payload bytes of the current burst */
	__u64 burst_max;            /* largest burst, in UDP payload bytes */
	__u64 burst_start_ns;       /* when the current burst began */
	__u64 bytes_before_burst;   /* UDP payload bytes before it began */
	__u64 anchor_ns;            /* when the first burst after settle_ns began */
	__u64 bytes_before_anchor;  /* UDP payload bytes before it began */
	/* Least-squares sums over burst starts after the anchor, x = KiB
	 * before the burst and y = us since the anchor (both from the
	 * anchor): n, sum x, sum y, sum x^2, sum x*y. */
	__u64 fit_n, fit_x, fit_y, fit_xx, fit_xy;
	__u64 gap_hist[GAP_BUCKETS]; /* gaps by floor(log2(ns)) */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct timing);
} timing SEC(".maps");

static __always_inline __u32 log2_bucket(__u64 v)
{
	__u32 bucket = 0;
	for (int i = 0; i < GAP_BUCKETS - 1; i++) {
		if (v < 2)
			break;
		v >>= 1;
		bucket++;
	}
	return bucket;
}

static __always_inline void record_timing(__u64 now, __u64 payload)
{
	__u32 zero = 0;
	struct timing *t = bpf_map_lookup_elem(&timing, &zero);
	if (!t)
		return;
	if (!t->first_ns) {
		t->first_ns = now;
		t->bursts = 1;
		t->burst_start_ns = now;
	} else {
		__u64 gap = now - t->last_ns;
		t->gaps++;
		t->gap_sum += gap;
		t->gap_sum_sq += gap * gap;
		__u32 bucket = log2_bucket(gap);
		if (bucket < GAP_BUCKETS)
			t->gap_hist[bucket]++;
		if (gap > burst_gap_ns) {
			t->bursts++;
			t->burst_bytes = 0;
			t->burst_start_ns = now;
			t->bytes_before_burst = t->payload_bytes;
			if (!t->anchor_ns && now - t->first_ns >= settle_ns) {
				t->anchor_ns = now;
				t->bytes_before_anchor = t->payload_bytes;
			}
			if (t->anchor_ns) {
				__u64 x = (t->payload_bytes - t->bytes_before_anchor) >> 10;
				__u64 y = (now - t->anchor_ns) / 1000;
				t->fit_n++;
				t->fit_x += x;
				t->fit_y += y;
				t->fit_xx += x * x;
				t->fit_xy += x * y;
			}
		}
	}
	t->last_ns = now;
	t->payload_bytes += payload;
	t->burst_bytes += payload;
	if (t->burst_bytes > t->burst_max)
		t->burst_max = t->burst_bytes;
}

/* Payload bytes received so far, per heap cnt. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} heap_bytes SEC(".maps");

#define MAX_POINTERS_SCANNED 8
#define HEAP_CNT_ID 1
#define HEAP_LENGTH_ID 2
#define PAYLOAD_LENGTH_ID 4

static __always_inline int spead_valid(struct xdp_md *ctx, __u8 *spead, void *end,
				       __u32 udp_payload, __u64 *cnt, __u64 *heap_len,
				       __u64 *payload_len)
{
	if ((void *)(spead + 8) > end)
		return 0;
	if (spead[0] != 0x53 || spead[1] != 4 || spead[4] != 0 || spead[5] != 0)
		return 0;
	__u32 addr_bytes = spead[3];
	if (addr_bytes < 1 || addr_bytes > 7 || spead[2] + addr_bytes != 8)
		return 0;
	__u32 n_items = ((__u32)spead[6] << 8) | spead[7];
	if (8 + 8 * n_items > udp_payload)
		return 0;
	__u32 addr_bits = addr_bytes * 8;
	__u64 value_mask = (1ULL << addr_bits) - 1;
	__u64 id_mask = (1ULL << (63 - addr_bits)) - 1;
	int found = 0;
	for (int i = 0; i < MAX_POINTERS_SCANNED; i++) {
		if (i >= n_items)
			break;
		__u8 *p = spead + 8 + 8 * i;
		if ((void *)(p + 8) > end)
			return 0;
		__u64 raw;
		__builtin_memcpy(&raw, p, 8);
		raw = bpf_be64_to_cpu(raw);
		if (!(raw >> 63))
			continue;
		__u64 id = (raw >> addr_bits) & id_mask;
		__u64 value = raw & value_mask;
		if (id == HEAP_CNT_ID) {
			*cnt = value;
			found |= 1;
		} else if (id == HEAP_LENGTH_ID) {
			*heap_len = value;
			found |= 2;
		} else if (id == PAYLOAD_LENGTH_ID) {
			*payload_len = value;
			found |= 4;
		}
	}
	if (found != 7)
		return 0;
	return 8 + 8 * (__u64)n_items + *payload_len <= udp_payload;
}

SEC("xdp.frags")
int spead_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return XDP_PASS;
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end || udp->dest != bpf_htons(spead_port))
		return XDP_PASS;

	__u32 zero = 0;
	struct counters *c = bpf_map_lookup_elem(&counters, &zero);
	if (!c)
		return XDP_PASS;
	c->packets++;
	c->bytes += bpf_xdp_get_buff_len(ctx);
	__u32 udp_len = bpf_ntohs(udp->len);
	record_timing(bpf_ktime_get_ns(), udp_len > sizeof(*udp) ? udp_len - sizeof(*udp) : 0);

	__u64 cnt = 0, heap_len = 0, payload_len = 0;
	if (udp_len < sizeof(*udp) ||
	    !spead_valid(ctx, (__u8 *)(udp + 1), end, udp_len - sizeof(*udp), &cnt, &heap_len,
			 &payload_len)) {
		c->malformed++;
		goto out;
	}
	c->spead_packets++;

	__u64 *got = bpf_map_lookup_elem(&heap_bytes, &cnt);
	if (!got) {
		__u64 none = 0;
		bpf_map_update_elem(&heap_bytes, &cnt, &none, BPF_NOEXIST);
		got = bpf_map_lookup_elem(&heap_bytes, &cnt);
		if (!got)
			goto out;
	}
	__u64 before = __sync_fetch_and_add(got, payload_len);
	if (before + payload_len == heap_len) {
		c->heaps++;
		bpf_map_delete_elem(&heap_bytes, &cnt);
	}
out:
	return pass_packets ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
