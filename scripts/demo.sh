#!/bin/sh
# The main job on a simulated 8 x A100 node, no GPU needed:
#   1. build mighook and the fake driver (fake libnvidia-ml.so.1 + fake /proc + host nodes),
#   2. `mighook list` and `mighook resolve 0:1`,
#   3. start a real container with runc and mighook as its prestart hook, asking for
#      NVIDIA_VISIBLE_DEVICES=0:1, and show `ls -l /dev/nvidia*` inside it.
# Run as root (step 3 creates a container). Usage: scripts/demo.sh [DEVICES]
set -eu
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
DEVICES=${1:-0:1}
scripts/install-deps.sh >/dev/null
cargo build --workspace --quiet
W=$(pwd)/.work/demo
rm -rf "$W" && mkdir -p "$W"
target/debug/fake-node tests/topologies/a100x8.json "$W/node" --mknod >/dev/null
M="$(pwd)/target/debug/mighook"
NODE="--nvml-lib $W/node/libnvidia-ml.so.1 --proc-root $W/node/proc"

echo "\$ mighook list"
$M $NODE list
echo
echo "\$ mighook resolve $DEVICES"
$M $NODE resolve "$DEVICES"
echo

# A busybox container whose prestart hook is mighook.
mkdir -p "$W/bundle/rootfs/bin"
cp "$(command -v busybox)" "$W/bundle/rootfs/bin/busybox"
chroot "$W/bundle/rootfs" /bin/busybox --install -s /bin
(cd "$W/bundle" && runc spec)
jq --arg m "$M" --arg lib "$W/node/libnvidia-ml.so.1" --arg proc "$W/node/proc" --arg dev "$DEVICES" '
  .process.terminal = false
  | .process.args = ["sh", "-c", "ls -l /dev/nvidia*; for n in /dev/nvidia* /dev/nvidia-caps/*; do [ -c $n ] && { cat $n 2>&1 | head -1; }; done; true"]
  | .process.env += ["NVIDIA_VISIBLE_DEVICES=" + $dev]
  | .hooks.prestart = [{path: $m, args: ["mighook", "--nvml-lib", $lib, "--proc-root", $proc, "prestart"], env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]}]
' "$W/bundle/config.json" > "$W/config.json" && mv "$W/config.json" "$W/bundle/config.json"
echo "\$ runc run (NVIDIA_VISIBLE_DEVICES=$DEVICES, prestart hook: mighook)"
echo "  inside the container: ls -l /dev/nvidia*; opening a granted node gives 'No such device or address'"
echo "  (no driver here, but the device cgroup let it through)"
(cd "$W/bundle" && runc --root "$W/runc" run "mighook-demo-$$")
