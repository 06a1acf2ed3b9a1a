#!/bin/sh
# A plain glibc container image made from this host's files, for scripts/demo.sh
# and scripts/bench-hook.sh (the tests build a fuller one in tests/support/glibc_image.rs).
#
#   scripts/glibc-image.sh DIR [debian|rhel]
#
# DIR gets busybox (static) with its applets in /bin, the host's loader, libc and
# libgcc_s, and the image's own /etc/ld.so.cache written by the host's
# `ldconfig -r DIR`; no driver file. Layouts as in the tests:
#   debian: libraries in /usr/lib/x86_64-linux-gnu, /etc/debian_version,
#           /lib -> usr/lib, /lib64/ld-linux-x86-64.so.2 a link to the loader;
#   rhel:   libraries and the loader in /usr/lib64, /lib64 -> usr/lib64,
#           /etc/redhat-release.
# Needs busybox-static and ldconfig (scripts/install-deps.sh; ldconfig is in libc-bin).
# As root; DIR must not exist or be empty.
set -eu
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
die() { echo "glibc-image.sh: error: $*" >&2; exit 1; }

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: glibc-image.sh DIR [debian|rhel]"
root=$1
layout=${2:-debian}
case $layout in
  debian) lib=usr/lib/x86_64-linux-gnu ;;
  rhel) lib=usr/lib64 ;;
  *) die "layout must be debian or rhel, not $layout" ;;
esac
[ ! -e "$root" ] || [ -z "$(ls -A "$root")" ] || die "$root exists and is not empty"
busybox=$(command -v busybox) || die "busybox not found: run scripts/install-deps.sh"
command -v ldconfig >/dev/null || die "ldconfig not found"

# The host file behind the first existing path (links resolved).
host_file() {
  for p in "$@"; do
    [ -e "$p" ] && { readlink -f "$p"; return; }
  done
  die "none of $* exists on this host"
}
loader=$(host_file /lib64/ld-linux-x86-64.so.2 /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2)
libc=$(host_file /lib/x86_64-linux-gnu/libc.so.6 /usr/lib/x86_64-linux-gnu/libc.so.6 /usr/lib64/libc.so.6)
libgcc=$(host_file /lib/x86_64-linux-gnu/libgcc_s.so.1 /usr/lib/x86_64-linux-gnu/libgcc_s.so.1 /usr/lib64/libgcc_s.so.1)

for d in bin dev proc sys tmp etc root run var/run usr/bin usr/lib usr/sbin "$lib"; do
  mkdir -p "$root/$d"
done
ln -s usr/lib "$root/lib"
if [ "$layout" = debian ]; then
  mkdir -p "$root/lib64"
  ln -s /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$root/lib64/ld-linux-x86-64.so.2"
  echo 12.8 >"$root/etc/debian_version"
else
  ln -s usr/lib64 "$root/lib64"
  echo 'Red Hat Enterprise Linux release 9.4 (Plow)' >"$root/etc/redhat-release"
fi
cp "$loader" "$root/$lib/ld-linux-x86-64.so.2"
cp "$libc" "$root/$lib/libc.so.6"
cp "$libgcc" "$root/$lib/libgcc_s.so.1"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
echo "/$lib" >"$root/etc/ld.so.conf"
# The image's own cache, as its ldconfig would write it (-r: chroot into DIR).
ldconfig -X -r "$root" -C /etc/ld.so.cache -f /etc/ld.so.conf || die "ldconfig -r $root failed"
[ -f "$root/etc/ld.so.cache" ] || die "ldconfig wrote no $root/etc/ld.so.cache"
