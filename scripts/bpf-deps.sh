# Sourced by test.sh (and run.sh): installs, with apt on Debian, what the XDP
# sink and the veth harness need if it is missing: clang (BPF target),
# libelf and zlib headers and pkg-config (libbpf), iproute2 (ip), ethtool
# (the fault tests change an interface's queues).
missing=()
command -v clang >/dev/null 2>&1 || missing+=(clang)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists libelf 2>/dev/null || missing+=(libelf-dev)
pkg-config --exists zlib 2>/dev/null || missing+=(zlib1g-dev)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v ethtool >/dev/null 2>&1 || missing+=(ethtool)
command -v make >/dev/null 2>&1 || missing+=(make)
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]} (apt)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
