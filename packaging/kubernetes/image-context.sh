#!/bin/sh
# Makes the docker build context of the installer image: DIR/Dockerfile and
# DIR/rootfs/ holding BINARY as /usr/bin/mighook plus every shared object `ldd`
# says it loads (the glibc files: libc, libgcc_s, the dynamic loader), each at
# the path ldd printed, links resolved. mighook loads libnvidia-ml only after it
# has chrooted into the host root, so no NVIDIA file belongs in the image.
# The static busybox (Debian's busybox-static) goes in as /bin/sh, sleep and
# chroot for the DaemonSet's CDI refresh loop.
#
# Usage: image-context.sh BINARY DIR    (DIR is emptied first)
#        BUSYBOX=/path/to/static/busybox overrides /bin/busybox
set -eu
[ $# = 2 ] || { echo "usage: image-context.sh BINARY DIR" >&2; exit 2; }
bin=$1 dir=$2
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$bin" ] || { echo "image-context.sh: $bin is not an executable" >&2; exit 1; }

rm -rf "$dir"
mkdir -p "$dir/rootfs/usr/bin"
cp "$here/Dockerfile" "$dir/Dockerfile"
cp -L "$bin" "$dir/rootfs/usr/bin/mighook"
chmod 0755 "$dir/rootfs/usr/bin/mighook"

# `libX.so => /path (0x...)` and `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has no path.
libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
[ -n "$libs" ] || { echo "image-context.sh: ldd found no libraries for $bin (static?)" >&2; exit 1; }
for lib in $libs; do
  mkdir -p "$dir/rootfs$(dirname "$lib")"
  cp -L "$lib" "$dir/rootfs$lib"
  echo "image-context.sh: $lib"
done

busybox=${BUSYBOX:-/bin/busybox}
if ldd "$busybox" >/dev/null 2>&1; then
  echo "image-context.sh: $busybox is not a static binary (install busybox-static)" >&2
  exit 1
fi
mkdir -p "$dir/rootfs/bin"
cp -L "$busybox" "$dir/rootfs/bin/busybox"
for applet in sh sleep chroot; do
  ln -s busybox "$dir/rootfs/bin/$applet"
done
