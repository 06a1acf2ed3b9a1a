#!/bin/bash
# Whole-process benchmark: what mighook adds to a container start, against the
# same start without it, on a simulated 8 x A100 node (56 MIG devices, fake NVML).
#
#   scripts/bench-hook.sh [-n ROUNDS] [--cgroup v1|v2|both] [--no-build] [--keep] [--mighook BIN] [--against BIN_B]
#                         [--driver-files] [--cdi]
#
# Root only (runc, mknod). Uses target/release (built here unless --no-build).
# For each request (void, 1, 8 and 56 devices) a busybox bundle runs /bin/true:
#   base:  `runc run` of the bundle, no hook.
#   hook:  the same bundle with mighook as its prestart hook.
#   shim:  `mighook runtime` (low-level runtime runc) on the bundle, no hook.
# The variants of one request alternate within every round (ABBA order), so
# load from anything else on the machine hits both sides alike. Each start is
# timed by a small C helper (CLOCK_MONOTONIC around fork/exec/wait4) that also
# reports the child's CPU time and peak RSS (wait4's rusage). Then:
#   hook alone:  the hook's own wall time, CPU time and peak RSS in a real start: a
#                third bundle registers the timing helper as the prestart hook,
#                and it runs mighook (state on stdin passed through). It cannot be
#                run by hand on a `runc create`d container: by then the init has
#                pivoted into the rootfs, and the hook finds no rootfs path there.
#   NVML:        nvmlInit calls per start, from the fake NVML's FAKE_NVML_TRACE.
#   --against:   a second build (e.g. the one before a change) is timed as "hook
#                alone" too, in the same rounds, its turn alternating with BIN's,
#                so that load from elsewhere falls on both builds alike.
# cgroup v1 runs on the host as it is; v2 runs inside `unshare -m` with cgroup2
# mounted over /sys/fs/cgroup (as the e2e tests do), so runc and the hook use
# BPF device programs there.
#
# --driver-files: the driver's user space too. fake-node also writes a fake driver
# installation (`--driver-root`, Debian layout: libraries with SONAMEs, nvidia-smi,
# firmware, the persistenced socket, its own ld.so.cache), mighook runs with
# `--proc-root P --driver-root D` (NVML loaded through the root's cache), and the
# container is a plain glibc image (scripts/glibc-image.sh) that gets the files.
# Every start, timed or not, gets a fresh overlayfs over the image (as an engine
# gives each container a fresh layer), mounted and removed outside the timing,
# so each hook or shim run creates its mount points and links anew. Requests:
# void; `0:1` with NVIDIA_DRIVER_CAPABILITIES=utility,compute and with `all`
# (more files); 8 devices and all 56 with utility,compute. Adds a variant:
#   shim alone:  `mighook runtime run` with /bin/true as its low-level runtime,
#                so only mighook's own work (wall, CPU, peak RSS; exec keeps the
#                peak), in the same rounds.
# It first checks that `nvidia-smi -L` in the container shows exactly GPU 0 and
# MIG 0:1, through the hook and through the shim.
# --cdi: also times `mighook cdi generate` (the whole node, with --driver-files
# its driver files too) in the same rounds.
# --podman (with --driver-files; cgroup v1 half only): `podman run --rm` of the
# glibc image running /bin/true, with and without the CDI device for 0:1,
# interleaved (ABBA), -n rounds. Private podman storage (vfs) under the work dir;
# the spec goes to /var/run/cdi under a kind of its own (mighook-bench.invalid/gpu)
# so that no nvidia.com/gpu spec of anyone else's is shadowed or clashes. The
# container must first print exactly GPU 0 and MIG 0:1 with `nvidia-smi -L`.
#
# Prints a summary (medians, min-max, ratio of medians); raw samples are kept
# in the work dir with --keep; --mighook measures another build (before/after).
# docs/PERFORMANCE.md records results.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
LC_ALL=C
export LC_ALL

die() { echo "bench-hook.sh: error: $*" >&2; exit 1; }

# The v2 half re-enters this script inside a private mount namespace.
if [ "${1:-}" = __v2 ]; then
  shift
  umount -l /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup || die "cannot mount cgroup2 over /sys/fs/cgroup"
  mode=v2
  W=$1 ROUNDS=$2
  # shellcheck source=/dev/null
  . "$W/env.sh"
else
  mode=
fi

repo=$(cd "$(dirname "$0")/.." && pwd)

# ---------------------------------------------------------------------------
# Measurement, run once per cgroup mode.

# timeit STDIN STDERR CMD...  ->  "<wall_ns> <maxrss_kb> <status> <cpu_ns>"
timeit() { "$W/timeit" "$@"; }

# --driver-files: a fresh overlayfs over the glibc image at $W/live for the next
# start (the previous one unmounted first), outside the timing.
fresh_root() {
  [ "$DRIVER" = 1 ] || return 0
  if mountpoint -q "$W/live"; then umount "$W/live"; fi
  rm -rf "$W/ov"
  mkdir -p "$W/ov/upper" "$W/ov/work"
  mount -t overlay overlay -o "lowerdir=$W/image,upperdir=$W/ov/upper,workdir=$W/ov/work" "$W/live" \
    || die "cannot mount an overlay over $W/image"
}

# One start; records "<mode> <case> <variant> <round> <wall_ns> <maxrss_kb> <cpu_ns>" in samples.tsv.
start() {
  local case=$1 variant=$2 round=$3 id out ns rss status cpu
  id="mb-$case-$variant-$round-$$"
  fresh_root
  case $variant in
    base) out=$(timeit /dev/null "$W/err" runc --root "$W/state" run --bundle "$W/b-$case-base" "$id") ;;
    hook) out=$(timeit /dev/null "$W/err" runc --root "$W/state" run --bundle "$W/b-$case-hook" "$id") ;;
    shim)
      cp "$W/b-$case-base/config.pristine.json" "$W/b-$case-shim/config.json"
      out=$(timeit /dev/null "$W/err" "${MIGHOOK[@]}" runtime --root "$W/state" run --bundle "$W/b-$case-shim" "$id") ;;
    shimalone)
      # The shim's own work: /bin/true as the low-level runtime, so no container.
      cp "$W/b-$case-base/config.pristine.json" "$W/b-$case-shim/config.json"
      out=$(timeit /dev/null "$W/err" "${MIGHOOK_TRUE[@]}" runtime --root "$W/state" run --bundle "$W/b-$case-shim" "$id") ;;
    cdi) out=$(timeit /dev/null "$W/err" "${MIGHOOK[@]}" cdi generate --output "$W/cdi.json") ;;
  esac
  read -r ns rss status cpu <<<"$out"
  if [ "$status" != 0 ]; then
    cat "$W/err" >&2
    runc --root "$W/state" delete -f "$id" >/dev/null 2>&1 || true
    die "$mode $case $variant: exit status $status (stderr above)"
  fi
  echo "$mode $case $variant $round $ns $rss $cpu" >>"$W/samples.tsv"
}

# The hook alone: runc runs the timing helper as the hook, which runs mighook
# (variant alone) or the --against build (variant aloneB).
hook_alone() {
  local case=$1 round=$2 variant=${3:-alone} id ns rss status cpu
  id="mb-$variant-$case-$round-$$"
  rm -f "$W/alone.out"
  fresh_root
  runc --root "$W/state" run --bundle "$W/b-$case-$variant" "$id" </dev/null >/dev/null 2>"$W/err" \
    || { cat "$W/err" "$W/hook.err" >&2; die "$mode: timed hook run of $case ($variant) failed"; }
  read -r ns rss status cpu <"$W/alone.out"
  [ "$status" = 0 ] || { cat "$W/hook.err" >&2; die "$mode: mighook prestart on $case ($variant) failed"; }
  echo "$mode $case $variant $round $ns $rss $cpu" >>"$W/samples.tsv"
}

# nvmlInit calls during one start of each case (and the total of NVML calls).
nvml_sessions() {
  local case variant id
  for case in $CASES; do
    for variant in hook $SHIM; do
      id="mb-trace-$case-$variant-$$"
      : >"$W/trace"
      fresh_root
      if [ "$variant" = hook ]; then
        runc --root "$W/state" run --bundle "$W/b-$case-trace" "$id" </dev/null >/dev/null 2>"$W/err" \
          || { cat "$W/err" >&2; die "$mode: traced hook run of $case failed"; }
      else
        cp "$W/b-$case-base/config.pristine.json" "$W/b-$case-shim/config.json"
        FAKE_NVML_TRACE="$W/trace" "${MIGHOOK[@]}" runtime --root "$W/state" run --bundle "$W/b-$case-shim" "$id" \
          </dev/null >/dev/null 2>"$W/err" || { cat "$W/err" >&2; die "$mode: traced shim run of $case failed"; }
      fi
      echo "$mode $case $variant $(grep -c '^nvmlInit' "$W/trace" || true) $(wc -l <"$W/trace")" >>"$W/nvml.tsv"
    done
  done
}

measure() {
  local round case order v
  echo "[$mode] warming up" >&2
  for case in $CASES; do for v in $VARIANTS; do start "$case" "$v" 0; done; done
  if [ "$CDI" = 1 ]; then start node cdi 0; fi
  sed -i "/^$mode /d" "$W/samples.tsv"
  for round in $(seq 1 "$ROUNDS"); do
    [ $((round % 10)) = 0 ] && echo "[$mode] round $round/$ROUNDS" >&2
    for case in $CASES; do
      # ABBA: the order flips every round, so drift and warm caches favour neither side.
      if [ $((round % 2)) = 1 ]; then order=$VARIANTS; else order=$(printf '%s\n' $VARIANTS | tac); fi
      for v in $order; do start "$case" "$v" "$round"; done
      if [ -z "$BIN_B" ]; then
        hook_alone "$case" "$round"
      elif [ $((round % 2)) = 1 ]; then
        hook_alone "$case" "$round" alone; hook_alone "$case" "$round" aloneB
      else
        hook_alone "$case" "$round" aloneB; hook_alone "$case" "$round" alone
      fi
    done
    if [ "$CDI" = 1 ]; then start node cdi "$round"; fi
  done
  nvml_sessions
}

if [ "$mode" = v2 ]; then
  measure
  exit 0
fi

# ---------------------------------------------------------------------------
# Setup (host side).

ROUNDS=40 CGROUPS=both BUILD=1 KEEP=0 BIN= BIN_B= DRIVER=0 CDI=0 PODMAN=0
while [ $# -gt 0 ]; do
  case $1 in
    -n) ROUNDS=$2; shift 2 ;;
    --cgroup) CGROUPS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    --mighook) BIN=$(realpath "$2"); shift 2 ;;  # e.g. a saved older build, for before/after
    --against) BIN_B=$(realpath "$2"); shift 2 ;;  # a second build, timed as "hook alone" in the same rounds
    --driver-files) DRIVER=1; shift ;;
    --cdi) CDI=1; shift ;;
    --podman) PODMAN=1; shift ;;
    -h|--help) sed -n '2,54p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
case $CGROUPS in v1|v2|both) ;; *) die "--cgroup must be v1, v2 or both" ;; esac
[ "$PODMAN" = 0 ] || [ "$DRIVER" = 1 ] || die "--podman needs --driver-files"
[ "$PODMAN" = 0 ] || [ "$CGROUPS" != v2 ] || die "--podman runs in the cgroup v1 half"
[ "$(id -u)" = 0 ] || die "must run as root (runc, mknod)"
for t in runc gcc jq unshare busybox; do command -v "$t" >/dev/null || die "$t not found: run scripts/install-deps.sh"; done

cd "$repo"
if [ "$BUILD" = 1 ]; then
  echo "building: cargo build --release --workspace" >&2
  cargo build --release --workspace --quiet
fi
R=$repo/target/release
for f in mighook fake-node libfake_nvml.so; do [ -e "$R/$f" ] || die "$R/$f missing (drop --no-build)"; done
BIN=${BIN:-$R/mighook}

W=$(mktemp -d /tmp/mighook-bench.XXXXXX)
cleanup() {
  local id
  for id in $(runc --root "$W/state" list -q 2>/dev/null); do runc --root "$W/state" delete -f "$id" >/dev/null 2>&1 || true; done
  if mountpoint -q "$W/live" 2>/dev/null; then umount "$W/live" || true; fi
  if [ "$PODMAN" = 1 ]; then
    rm -f "$CDI_SPEC"
    podman_cmd rm -af >/dev/null 2>&1 || true
    podman_cmd rmi -af >/dev/null 2>&1 || true
    # podman's cgroup parent and its conmon child, in every hierarchy.
    find /sys/fs/cgroup -maxdepth 3 -type d -name "mighook-bench-$$" 2>/dev/null | while read -r d; do
      find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  fi
  if [ "$KEEP" = 1 ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT

# The timing helper: wall time on CLOCK_MONOTONIC and wait4's peak RSS of one child.
cat >"$W/timeit.c" <<'EOF'
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  /* -o FILE: the result goes to FILE (a hook's stdout goes nowhere). */
  const char *result = NULL;
  if (argc > 2 && !strcmp(argv[1], "-o")) { result = argv[2]; argv += 2; argc -= 2; }
  if (argc < 4) { fprintf(stderr, "usage: timeit [-o RESULT] STDIN STDERR CMD...\n"); return 2; }
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  pid_t pid = fork();
  if (pid < 0) { perror("fork"); return 2; }
  if (pid == 0) {
    int in = open(argv[1], O_RDONLY), err = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int out = open("/dev/null", O_WRONLY);
    if (in < 0 || err < 0 || out < 0) _exit(126);
    dup2(in, 0); dup2(out, 1); dup2(err, 2);
    execvp(argv[3], argv + 3);
    _exit(127);
  }
  int status; struct rusage ru;
  if (wait4(pid, &status, 0, &ru) < 0) { perror("wait4"); return 2; }
  clock_gettime(CLOCK_MONOTONIC, &b);
  long long ns = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  FILE *out = result ? fopen(result, "w") : stdout;
  if (!out) { perror(result); return 2; }
  long long cpu_us = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000LL + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
  fprintf(out, "%lld %ld %d %lld\n", ns, ru.ru_maxrss, code, cpu_us * 1000);
  /* As a hook, pass the hook's failure on to the runtime. */
  return result ? code : 0;
}
EOF
gcc -O2 -Wall -o "$W/timeit" "$W/timeit.c"

# mighook-true.toml: /bin/true as the low-level runtime, for "shim alone".
for f in mighook mighook-true; do
  if [ $f = mighook ]; then llr=$(command -v runc); else llr=/bin/true; fi
  printf 'dev-root = "%s"\nlow-level-runtime = "%s"\n' "$W/node/dev" "$llr" >"$W/$f.toml"
done
declare -A DEVICES CAPS
if [ "$DRIVER" = 1 ]; then
  "$R/fake-node" tests/topologies/a100x8-all-1g.json "$W/node" --lib "$R/libfake_nvml.so" --mknod \
    --driver-root "$W/driver" --layout debian >/dev/null
  # NVML comes from the driver root's ld.so.cache, as on a real node.
  NODE_ARGS=(--proc-root "$W/node/proc" --driver-root "$W/driver")
  # A plain glibc image; each start gets a fresh overlay of it at $W/live (fresh_root).
  "$repo/scripts/glibc-image.sh" "$W/image" debian
  mkdir -p "$W/live"
  rootfs=$W/live
  # Requests: MIG devices asked for; 1all: the same device with every capability.
  DEVICES=([void]="" [1]="0:1" [1all]="0:1" [8]="0:0,0:1,0:2,0:3,0:4,0:5,0:6,1:0" [56]="all")
  CAPS=([1]=utility,compute [1all]=all [8]=utility,compute [56]=utility,compute)
  CASES="void 1 1all 8 56"
else
  "$R/fake-node" tests/topologies/a100x8-all-1g.json "$W/node" --lib "$R/libfake_nvml.so" --mknod >/dev/null
  NODE_ARGS=(--nvml-lib "$W/node/libnvidia-ml.so.1" --proc-root "$W/node/proc")
  # A read-only busybox image that only has to run /bin/true.
  rootfs=$W/rootfs
  mkdir -p "$W/rootfs"/{bin,dev,proc,sys,tmp,etc,root,run,var}
  cp "$(command -v busybox)" "$W/rootfs/bin/busybox"
  ln -s busybox "$W/rootfs/bin/true"
  # Requests: the case name is the number of MIG devices asked for.
  DEVICES=([void]="" [1]="0:0" [8]="0:0,0:1,0:2,0:3,0:4,0:5,0:6,1:0" [56]="all")
  CASES="void 1 8 56"
fi
MIGHOOK=("$BIN" --config "$W/mighook.toml" "${NODE_ARGS[@]}")
MIGHOOK_TRUE=("$BIN" --config "$W/mighook-true.toml" "${NODE_ARGS[@]}")
# Lists go to jq as newline-separated strings: jq 1.6 would take `--config` for its own option.
lines() { if [ $# -gt 0 ]; then printf '%s\n' "$@"; fi; }
hook_json=$(jq -n --arg p "$BIN" --arg a "$(lines "${MIGHOOK[@]:1}")" \
  '[{path: $p, args: (["mighook"] + ($a | split("\n")) + ["prestart"]), env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], timeout: 30}]')
for case in $CASES; do
  b=$W/b-$case-base
  mkdir -p "$b"
  (cd "$b" && runc spec)
  env_add=
  [ -n "${DEVICES[$case]}" ] && env_add="NVIDIA_VISIBLE_DEVICES=${DEVICES[$case]}"
  [ -n "${CAPS[$case]:-}" ] && env_add="$env_add"$'\n'"NVIDIA_DRIVER_CAPABILITIES=${CAPS[$case]}"
  jq --arg root "$rootfs" --arg e "$env_add" \
    '.root.path = $root | .root.readonly = true | .process.terminal = false | .process.args = ["/bin/true"]
     | .process.env += ($e | split("\n") | map(select(. != "")))' \
    "$b/config.json" >"$b/config.pristine.json"
  cp "$b/config.pristine.json" "$b/config.json"
  for v in hook trace shim alone aloneB; do mkdir -p "$W/b-$case-$v"; done
  jq --argjson h "$hook_json" '.hooks.prestart = $h' "$b/config.json" >"$W/b-$case-hook/config.json"
  jq --argjson h "$hook_json" --arg t "$W/timeit" --arg o "$W/alone.out" --arg e "$W/hook.err" \
    '.hooks.prestart = $h | .hooks.prestart[0].args = [$t, "-o", $o, "/dev/stdin", $e, .hooks.prestart[0].path] + .hooks.prestart[0].args[1:] | .hooks.prestart[0].path = $t' \
    "$b/config.json" >"$W/b-$case-alone/config.json"
  # The same timed hook, running the --against build (argument 5 is the binary the helper runs).
  if [ -n "$BIN_B" ]; then
    jq --arg bb "$BIN_B" '.hooks.prestart[0].args[5] = $bb' "$W/b-$case-alone/config.json" >"$W/b-$case-aloneB/config.json"
  fi
  jq --argjson h "$hook_json" --arg t "FAKE_NVML_TRACE=$W/trace" '.hooks.prestart = $h | .hooks.prestart[0].env += [$t]' \
    "$b/config.json" >"$W/b-$case-trace/config.json"
done

# The shim is measured only once it exists in this build.
SHIM=
mkdir -p "$W/state"
fresh_root
if cp "$W/b-1-base/config.pristine.json" "$W/b-1-shim/config.json" &&
  "${MIGHOOK[@]}" runtime --root "$W/state" run --bundle "$W/b-1-shim" "mb-probe-$$" </dev/null >/dev/null 2>"$W/err"; then
  SHIM=shim
else
  echo "NOTE: shim path not measured: \`mighook runtime\` failed here: $(head -c 300 "$W/err")" >&2
fi
VARIANTS="base hook${SHIM:+ shim shimalone}"

# --driver-files: the container really gets the driver. `nvidia-smi -L` inside it must
# show exactly GPU 0 and MIG 0:1 (as its device 0), through the hook and the shim.
if [ "$DRIVER" = 1 ]; then
  for v in hook $SHIM; do
    b=$W/b-smi-$v
    mkdir -p "$b"
    from=$W/b-1-base/config.pristine.json
    [ "$v" = hook ] && from=$W/b-1-hook/config.json
    jq '.process.args = ["/bin/sh", "-c", "nvidia-smi -L"]' "$from" >"$b/config.pristine.json"
    cp "$b/config.pristine.json" "$b/config.json"
    fresh_root
    if [ "$v" = hook ]; then
      runc --root "$W/state" run --bundle "$b" "mb-smi-$$" </dev/null >"$W/smi.out" 2>"$W/err" || { cat "$W/err" >&2; die "nvidia-smi through the hook failed"; }
    else
      "${MIGHOOK[@]}" runtime --root "$W/state" run --bundle "$b" "mb-smi-$$" </dev/null >"$W/smi.out" 2>"$W/err" || { cat "$W/err" >&2; die "nvidia-smi through the shim failed"; }
    fi
    if [ "$(wc -l <"$W/smi.out")" != 2 ] || ! head -1 "$W/smi.out" | grep -q '^GPU 0: ' || ! sed -n 2p "$W/smi.out" | grep -q 'MIG .* Device  0: (UUID: MIG-'; then
      cat "$W/smi.out" >&2
      die "nvidia-smi -L through the $v did not show exactly GPU 0 and one MIG device"
    fi
    echo "nvidia-smi -L in the container, through the $v:" >&2
    sed 's/^/  /' "$W/smi.out" >&2
  done
fi
: >"$W/samples.tsv"
: >"$W/nvml.tsv"
declare -p DEVICES CAPS >"$W/env.sh"
printf 'CASES=%q\nSHIM=%q\nVARIANTS=%q\nBIN_B=%q\nDRIVER=%q\nCDI=%q\nMIGHOOK=(%s)\nMIGHOOK_TRUE=(%s)\n' \
  "$CASES" "$SHIM" "$VARIANTS" "$BIN_B" "$DRIVER" "$CDI" "$(printf '%q ' "${MIGHOOK[@]}")" "$(printf '%q ' "${MIGHOOK_TRUE[@]}")" >>"$W/env.sh"

# podman with private storage (vfs), runc, cgroupfs under a parent of its own.
CDI_SPEC=/var/run/cdi/mighook-bench-$$.json
PODMAN_CMD=(env "CONTAINERS_CONF=$W/podman/containers.conf" podman --root "$W/podman/root" --runroot "$W/podman/run"
  --tmpdir "$W/podman/tmp" --storage-driver vfs)
PODMAN_RUN=("${PODMAN_CMD[@]}" run --rm --network none --hooks-dir "$W/podman/no-hooks" --cgroup-parent "/mighook-bench-$$")
podman_cmd() { "${PODMAN_CMD[@]}" "$@"; }
podman_run() { "${PODMAN_RUN[@]}" "$@"; }
podman_bench() {
  local round v order out ns rss status cpu dev
  echo "[podman] setting up" >&2
  mkdir -p "$W/podman/no-hooks" /var/run/cdi
  printf '%s\n' '[containers]' 'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]' \
    '[engine]' 'runtime = "runc"' 'events_logger = "file"' 'cgroup_manager = "cgroupfs"' >"$W/podman/containers.conf"
  tar -C "$W/image" -cf "$W/podman/image.tar" .
  podman_cmd import -q "$W/podman/image.tar" localhost/mighook-bench:glibc >/dev/null || die "podman import failed"
  "${MIGHOOK[@]}" cdi generate --output "$W/podman/spec.json" >/dev/null 2>"$W/err" || { cat "$W/err" >&2; die "cdi generate failed"; }
  jq '.kind = "mighook-bench.invalid/gpu"' "$W/podman/spec.json" >"$CDI_SPEC"
  dev=mighook-bench.invalid/gpu=0:1
  podman_run --device "$dev" localhost/mighook-bench:glibc nvidia-smi -L >"$W/smi.out" 2>"$W/err" || { cat "$W/err" >&2; die "podman --device $dev failed"; }
  if [ "$(wc -l <"$W/smi.out")" != 2 ] || ! head -1 "$W/smi.out" | grep -q '^GPU 0: '; then
    cat "$W/smi.out" >&2; die "nvidia-smi -L through CDI did not show exactly GPU 0 and one MIG device"
  fi
  echo "nvidia-smi -L in a podman container, CDI device $dev:" >&2
  sed 's/^/  /' "$W/smi.out" >&2
  for round in $(seq 0 "$ROUNDS"); do
    [ $((round % 10)) = 0 ] && echo "[podman] round $round/$ROUNDS" >&2
    if [ $((round % 2)) = 1 ]; then order="pbase pcdi"; else order="pcdi pbase"; fi
    for v in $order; do
      if [ "$v" = pcdi ]; then
        out=$(timeit /dev/null "$W/err" "${PODMAN_RUN[@]}" --device "$dev" localhost/mighook-bench:glibc /bin/true)
      else
        out=$(timeit /dev/null "$W/err" "${PODMAN_RUN[@]}" localhost/mighook-bench:glibc /bin/true)
      fi
      read -r ns rss status cpu <<<"$out"
      [ "$status" = 0 ] || { cat "$W/err" >&2; die "podman run ($v) failed"; }
      # Round 0 warms up.
      [ "$round" = 0 ] || echo "podman 1 $v $round $ns $rss $cpu" >>"$W/samples.tsv"
    done
  done
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$CGROUPS" != v2 ]; then
  [ -d /sys/fs/cgroup/devices ] || die "no cgroup v1 devices hierarchy here; use --cgroup v2"
  mode=v1
  measure
  if [ "$PODMAN" = 1 ]; then podman_bench; fi
fi
if [ "$CGROUPS" != v1 ]; then
  unshare -m -- bash "$0" __v2 "$W" "$ROUNDS"
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------
# Summary.

ms() { awk '{ printf "%.2f", $1 / 1e6 }' <<<"$1"; }
# ms of A - B, and A / B
diffms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (a - b) / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
# stats MODE CASE VARIANT [COLUMN] -> "median min max" in ns (column 5: wall, 7: CPU)
stats() {
  awk -v m="$1" -v c="$2" -v v="$3" -v k="${4:-5}" '$1 == m && $2 == c && $3 == v { print $k }' "$W/samples.tsv" | sort -n |
    awk '{ a[NR] = $1 } END { if (NR == 0) exit; med = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; print med, a[1], a[NR] }'
}
maxrss() { awk -v m="$1" -v c="$2" -v v="$3" '$1 == m && $2 == c && $3 == v && $6 > x { x = $6 } END { printf "%.1f", x / 1024 }' "$W/samples.tsv"; }

echo
echo "## mighook bench-hook: $(date -u +%Y-%m-%dT%H:%MZ), $ROUNDS rounds"
echo "machine: $(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), $(runc --version | head -1)"
echo "mighook: $BIN (sha256 $(sha256sum "$BIN" | cut -c1-12)), tree $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$repo" diff --quiet 2>/dev/null || echo '+dirty')"
[ "$DRIVER" = 1 ] && echo "mode: --driver-files (fake driver root, Debian layout; glibc image on a fresh overlay per start)"
echo "load average before/after: $load_before / $load_after"
if grep -q '^podman ' "$W/samples.tsv"; then
  read -r bm bl bh <<<"$(stats podman 1 pbase)"
  read -r cm cl ch <<<"$(stats podman 1 pcdi)"
  echo
  echo "podman run --rm of the glibc image (/bin/true), cgroup v1: without a device $(ms "$bm") [$(ms "$bl")-$(ms "$bh")] ms, with the CDI device 0:1 $(ms "$cm") [$(ms "$cl")-$(ms "$ch")] ms: ratio $(ratio "$cm" "$bm"), adds $(diffms "$cm" "$bm") ms"
fi
for m in v1 v2; do
  grep -q "^$m " "$W/samples.tsv" || continue
  echo
  echo "### cgroup $m (ms: median [min-max])"
  echo
  echo "| request | runc alone | with hook | hook ratio | hook adds | with shim | shim ratio | shim adds | hook alone (wall) | hook alone (CPU) | hook peak RSS |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  for case in $CASES; do
    read -r bm bl bh <<<"$(stats $m "$case" base)"
    read -r hm hl hh <<<"$(stats $m "$case" hook)"
    read -r am al ah <<<"$(stats $m "$case" alone)"
    read -r cm cl ch <<<"$(stats $m "$case" alone 7)"
    shim_cols="n/a | n/a | n/a"
    if [ -n "$SHIM" ]; then
      read -r sm sl sh <<<"$(stats $m "$case" shim)"
      shim_cols="$(ms "$sm") [$(ms "$sl")-$(ms "$sh")] | $(ratio "$sm" "$bm") | $(diffms "$sm" "$bm")"
    fi
    label=$case
    [ "$case" = void ] && label="void (hook registered, nothing asked)" || label="$case device(s): ${DEVICES[$case]}"
    [ -n "${CAPS[$case]:-}" ] && label="$label, caps ${CAPS[$case]}"
    echo "| $label | $(ms "$bm") [$(ms "$bl")-$(ms "$bh")] | $(ms "$hm") [$(ms "$hl")-$(ms "$hh")] | $(ratio "$hm" "$bm") | $(diffms "$hm" "$bm") | $shim_cols | $(ms "$am") [$(ms "$al")-$(ms "$ah")] | $(ms "$cm") [$(ms "$cl")-$(ms "$ch")] | $(maxrss $m "$case" alone) MiB |"
  done
  if [ -n "$BIN_B" ]; then
    echo
    echo "Hook alone, this build against $BIN_B (sha256 $(sha256sum "$BIN_B" | cut -c1-12)), same rounds (ms: median [min-max]):"
    echo
    echo "| request | wall, against | wall, this | CPU, against | CPU, this | CPU change |"
    echo "|---|---|---|---|---|---|"
    for case in $CASES; do
      read -r am al ah <<<"$(stats $m "$case" alone)"
      read -r cm cl ch <<<"$(stats $m "$case" alone 7)"
      read -r bam bal bah <<<"$(stats $m "$case" aloneB)"
      read -r bcm bcl bch <<<"$(stats $m "$case" aloneB 7)"
      echo "| $case | $(ms "$bam") [$(ms "$bal")-$(ms "$bah")] | $(ms "$am") [$(ms "$al")-$(ms "$ah")] | $(ms "$bcm") [$(ms "$bcl")-$(ms "$bch")] | $(ms "$cm") [$(ms "$cl")-$(ms "$ch")] | $(diffms "$cm" "$bcm") |"
    done
  fi
  if [ -n "$SHIM" ]; then
    echo
    echo "mighook alone (ms: median [min-max]; peak RSS: the largest of the run). Shim alone: \`mighook runtime run\` with /bin/true as the low-level runtime."
    echo
    echo "| request | hook alone (wall) | hook alone (CPU) | hook peak RSS | shim alone (wall) | shim alone (CPU) | shim peak RSS |"
    echo "|---|---|---|---|---|---|---|"
    for case in $CASES; do
      read -r am al ah <<<"$(stats $m "$case" alone)"
      read -r cm cl ch <<<"$(stats $m "$case" alone 7)"
      read -r sm sl sh <<<"$(stats $m "$case" shimalone)"
      read -r tm tl th <<<"$(stats $m "$case" shimalone 7)"
      label=$case
      [ -n "${CAPS[$case]:-}" ] && label="$case (${DEVICES[$case]}, ${CAPS[$case]})"
      echo "| $label | $(ms "$am") [$(ms "$al")-$(ms "$ah")] | $(ms "$cm") [$(ms "$cl")-$(ms "$ch")] | $(maxrss $m "$case" alone) MiB | $(ms "$sm") [$(ms "$sl")-$(ms "$sh")] | $(ms "$tm") [$(ms "$tl")-$(ms "$th")] | $(maxrss $m "$case" shimalone) MiB |"
    done
  fi
  if [ "$CDI" = 1 ]; then
    read -r am al ah <<<"$(stats $m node cdi)"
    read -r cm cl ch <<<"$(stats $m node cdi 7)"
    echo
    echo "\`mighook cdi generate --output FILE\` (whole node, $(jq '.devices | length' "$W/cdi.json") devices, $(jq '[.containerEdits.mounts // [] | length] | add' "$W/cdi.json") spec-wide mounts): wall $(ms "$am") [$(ms "$al")-$(ms "$ah")] ms, CPU $(ms "$cm") [$(ms "$cl")-$(ms "$ch")] ms, peak RSS $(maxrss $m node cdi) MiB"
  fi
  echo
  echo "NVML per start (nvmlInit calls / all NVML calls):"
  awk -v m="$m" '$1 == m { printf "  %-5s %-4s %s / %s\n", $2, $3, $4, $5 }' "$W/nvml.tsv"
done
