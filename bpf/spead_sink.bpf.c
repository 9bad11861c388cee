// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * spead_sink: an XDP program for the receiving end of the veth harness.
 * It counts UDP packets to the SPEAD port (packets, whole-frame bytes with
 * fragments, valid SPEAD packets, malformed ones, heaps completed, first
 * and last packet time) in per-CPU counters, then drops them (or passes
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

/* Per-CPU counters; user space sums them. Field order is the ABI. */
struct counters {
	__u64 packets;       /* UDP packets to the SPEAD port */
	__u64 bytes;         /* their whole frame length, fragments included */
	__u64 spead_packets; /* of them, valid SPEAD packets */
	__u64 malformed;     /* of them, not valid SPEAD */
	__u64 heaps;         /* heaps whose payload fully arrived */
	__u64 first_ns;      /* bpf_ktime_get_ns of the first counted packet */
	__u64 last_ns;       /* ... and of the last */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} counters SEC(".maps");

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
	__u64 now = bpf_ktime_get_ns();
	c->packets++;
	c->bytes += bpf_xdp_get_buff_len(ctx);
	if (!c->first_ns)
		c->first_ns = now;
	c->last_ns = now;

	__u32 udp_len = bpf_ntohs(udp->len);
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
