#!/bin/sh
# Install what mighook's test suite needs on a fresh Debian 12 (bookworm) machine, as root.
#
# Idempotent and non-interactive: when every package is already installed it
# touches nothing (no apt-get at all), so local re-runs are instant. Otherwise it
# runs `apt-get update` once and installs the missing packages.
# `--force` goes through apt even when everything is present (upgrades in place).
#
# Why each package:
#   runc crun          the OCI runtimes the e2e tests drive (cgroup v1 and v2)
#   busybox-static     the container rootfs
#   gcc libc6-dev      `gcc -static` of the in-container probe (tests/e2e/openprobe.c)
#   podman containerd docker.io   engine-level tests (docker.io pulls iptables and tini)
#   bpftool            inspecting the cgroup v2 BPF device programs
#   jq                 scripts that edit config.json
#   protobuf-compiler  protoc for the k8s-cri dev-dependency (tests/e2e_cri.rs): its build script
#                      generates the CRI v1 client from the .proto with tonic-prost-build
#   rpm                `rpm -qlp` of the .rpm scripts/package.sh builds (tests/packages.rs)
# Not listed on purpose: uidmap (rootless podman only; the tests run as root),
# iptables (a dependency of docker.io), util-linux/mount (unshare, nsenter, mount:
# essential in Debian).
set -eu
# runc, dockerd and friends live in sbin, which a non-login root shell may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

PKGS="runc crun busybox-static podman containerd docker.io bpftool jq gcc libc6-dev protobuf-compiler rpm"

die() { echo "install-deps.sh: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages with apt-get)"
command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
  || die "needs a Debian-based system with dpkg-query and apt-get"

force=0
case "${1:-}" in
  "") ;;
  --force) force=1 ;;
  *) die "usage: install-deps.sh [--force]" ;;
esac

missing=""
for p in $PKGS; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing="$missing $p"
done

check_commands() {
  for c in runc crun busybox podman containerd ctr dockerd bpftool jq gcc protoc rpm unshare nsenter mount umount mountpoint timeout; do
    command -v "$c" >/dev/null 2>&1 || die "command '$c' not found (PATH=$PATH)"
  done
}

[ "$force" = 0 ] || missing=" $PKGS"
# CDI's spec dir: the engine tests mount a private one over it, so it must exist (and
# then no test creates or removes anything in the host's /etc).
mkdir -p /etc/cdi
if [ -z "$missing" ]; then
  check_commands
  echo "install-deps.sh: all present:$(printf ' %s' $PKGS)"
  exit 0
fi

echo "install-deps.sh: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# Other jobs on a shared machine may hold the dpkg lock: wait for it instead of failing.
apt-get -o DPkg::Lock::Timeout=900 update -q \
  || die "apt-get update failed"
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends $missing \
  || die "apt-get install failed for:$missing"

# Check that apt really delivered, and that the commands the tests call exist.
for p in $missing; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || die "package $p is still not installed after apt-get install"
done
check_commands
echo "install-deps.sh: done"
