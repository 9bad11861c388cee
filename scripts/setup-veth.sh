#!/usr/bin/env bash
# The veth harness: a network namespace NAME holding one end of a veth pair
# (the peer, NAMEp), the other end (the host, NAMEh) in the root namespace,
# addresses on both, MTU 9000 by default, and static neighbour entries both
# ways so kernel sends need no ARP. Idempotent; `down` removes all of it.
#
#   scripts/setup-veth.sh up   [NAME] [--mtu N] [--subnet K] [--queues Q]
#   scripts/setup-veth.sh down [NAME]
#
# NAME defaults to "spead" (at most 12 characters); addresses are
# 10.200.K.1 (host) and 10.200.K.2 (peer), K 0..255, default 0, so several
# harnesses can coexist with different K. --queues gives each end Q TX and
# RX queues (default 1; set when the pair is created). `up` prints
# KEY=VALUE lines: NETNS, HOST_IF, HOST_IP, HOST_MAC, PEER_IF, PEER_IP,
# PEER_MAC, MTU, QUEUES.
set -euo pipefail

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[ $# -ge 1 ] || usage
action=$1
shift
name=spead
if [ $# -ge 1 ] && [ "${1#--}" = "$1" ]; then
    name=$1
    shift
fi
mtu=9000
subnet=0
queues=1
while [ $# -gt 0 ]; do
    case $1 in
        --mtu) mtu=${2:?--mtu needs a value}; shift 2 ;;
        --subnet) subnet=${2:?--subnet needs a value}; shift 2 ;;
        --queues) queues=${2:?--queues needs a value}; shift 2 ;;
        *) usage ;;
    esac
done
if [ ${#name} -gt 12 ] || ! [[ $name =~ ^[A-Za-z0-9_-]+$ ]]; then
    echo "setup-veth: NAME must be 1-12 letters, digits, '-' or '_' (got '$name')" >&2
    exit 2
fi
if ! [[ $subnet =~ ^[0-9]+$ ]] || [ "$subnet" -gt 255 ]; then
    echo "setup-veth: --subnet must be 0..255 (got '$subnet')" >&2
    exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "setup-veth: needs root (network namespaces and veth pairs)" >&2
    exit 1
fi

host_if=${name}h
peer_if=${name}p
host_ip=10.200.$subnet.1
peer_ip=10.200.$subnet.2

down() {
    ip link del "$host_if" 2>/dev/null || true
    ip netns del "$name" 2>/dev/null || true
}

mac() { cat "/sys/class/net/$1/address"; }

case $action in
    down)
        down
        ;;
    up)
        if ! ip netns list | grep -qx "$name\( (id: [0-9]*)\)\?"; then
            ip netns add "$name"
        fi
        if ! ip link show "$host_if" >/dev/null 2>&1; then
            ip link add "$host_if" numtxqueues "$queues" numrxqueues "$queues" type veth \
                peer name "$peer_if" numtxqueues "$queues" numrxqueues "$queues" netns "$name"
        fi
        ip link set "$host_if" mtu "$mtu" up
        ip -n "$name" link set "$peer_if" mtu "$mtu" up
        ip -n "$name" link set lo up
        ip addr replace "$host_ip/24" dev "$host_if"
        ip -n "$name" addr replace "$peer_ip/24" dev "$peer_if"
        host_mac=$(mac "$host_if")
        peer_mac=$(ip netns exec "$name" cat "/sys/class/net/$peer_if/address")
        ip neigh replace "$peer_ip" lladdr "$peer_mac" dev "$host_if" nud permanent
        ip -n "$name" neigh replace "$host_ip" lladdr "$host_mac" dev "$peer_if" nud permanent
        cat <<OUT
NETNS=$name
HOST_IF=$host_if
HOST_IP=$host_ip
HOST_MAC=$host_mac
PEER_IF=$peer_if
PEER_IP=$peer_ip
PEER_MAC=$peer_mac
MTU=$mtu
QUEUES=$(ls -d /sys/class/net/$host_if/queues/tx-* | wc -l)
OUT
        ;;
    *)
        usage
        ;;
esac
