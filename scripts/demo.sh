#!/bin/sh
# The main job on a simulated 8 x A100 node, no GPU needed:
#   1. build mighook and the fake driver (fake libnvidia-ml.so.1 + fake /proc + host nodes),
#   2. `mighook list` and `mighook resolve 0:1`,
#   3. start a real container with runc and mighook as its prestart hook, asking for
#      NVIDIA_VISIBLE_DEVICES=0:1, and show `ls -l /dev/nvidia*` inside it,
#   4. the driver's user space too: a plain glibc image (no driver file in it,
#      scripts/glibc-image.sh), mighook as the prestart hook with --driver-root on the
#      node's fake driver installation, and `nvidia-smi -L` inside the container
#      shows exactly the GPU and MIG device asked for.
# Run as root (steps 3 and 4 create containers). Usage: scripts/demo.sh [DEVICES]
set -eu
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
DEVICES=${1:-0:1}
scripts/install-deps.sh >/dev/null
cargo build --workspace --quiet
W=$(pwd)/.work/demo
rm -rf "$W" && mkdir -p "$W"
# The node, and a fake driver installation (libraries with SONAMEs, nvidia-smi, firmware).
target/debug/fake-node tests/topologies/a100x8.json "$W/node" --mknod --driver-root "$W/driver" --layout debian >/dev/null
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

# The driver's files in a plain glibc image: mighook finds them under --driver-root
# (NVML too, through that root's ld.so.cache), bind-mounts them read-only, makes the
# SONAME links and mounts a merged /etc/ld.so.cache over the image's.
echo
scripts/glibc-image.sh "$W/smi/rootfs" debian
(cd "$W/smi" && runc spec)
jq --arg m "$M" --arg drv "$W/driver" --arg proc "$W/node/proc" --arg dev "$DEVICES" '
  .process.terminal = false
  | .process.args = ["nvidia-smi", "-L"]
  | .process.env += ["NVIDIA_VISIBLE_DEVICES=" + $dev]
  | .hooks.prestart = [{path: $m, args: ["mighook", "--proc-root", $proc, "--driver-root", $drv, "prestart"], env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]}]
' "$W/smi/config.json" > "$W/config.json" && mv "$W/config.json" "$W/smi/config.json"
echo "\$ runc run (plain glibc image, NVIDIA_VISIBLE_DEVICES=$DEVICES, prestart hook: mighook --driver-root $W/driver)"
echo "  inside the container: nvidia-smi -L"
(cd "$W/smi" && runc --root "$W/runc" run "mighook-demo-smi-$$")
