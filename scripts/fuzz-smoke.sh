#!/bin/sh
# Run every cargo-fuzz target of fuzz/ for a short while; exit non-zero if any fails.
#
# Usage: scripts/fuzz-smoke.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 15 (CI smoke); FUZZ_RUNS=N also stops a target after N executions.
#   TARGET...           default: every target `cargo fuzz list` shows.
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer=address, sancov); the
# stable toolchain accepts them with RUSTC_BOOTSTRAP=1. cargo-fuzz itself is
# installed from crates.io when missing. Targets run one at a time (libFuzzer
# uses one core each). New inputs go to a scratch corpus under fuzz/scratch/, so
# the seeds in fuzz/corpus/<target>/ stay as committed; a crash leaves its input
# in fuzz/artifacts/<target>/ and the script exits non-zero. The last lines are
# a table: target, executions, seconds, result.
set -eu
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1

SECONDS_PER_TARGET=${1:-15}
[ $# -gt 0 ] && shift
case $SECONDS_PER_TARGET in
  ''|*[!0-9]*) echo "fuzz-smoke.sh: SECONDS_PER_TARGET must be a number, got '$SECONDS_PER_TARGET'" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
  cargo install cargo-fuzz --locked
fi

cd fuzz
TARGETS=${*:-$(cargo fuzz list)}
[ -n "$TARGETS" ] || { echo "fuzz-smoke.sh: no fuzz targets found" >&2; exit 1; }

# One build for all targets first; the runs below start the built binaries, so
# they fuzz exactly this build even if the tree changes meanwhile.
cargo fuzz build
BIN=target/$(rustc -vV | sed -n 's/^host: //p')/release

RUNS_ARG=""
[ -n "${FUZZ_RUNS:-}" ] && RUNS_ARG="-runs=$FUZZ_RUNS"
LOGDIR=scratch/logs
mkdir -p "$LOGDIR"
summary=""
total=0
failed=""
for t in $TARGETS; do
  mkdir -p "scratch/$t" "artifacts/$t"
  log="$LOGDIR/$t.log"
  start=$(date +%s)
  # shellcheck disable=SC2086 # RUNS_ARG is one word or none.
  if "$BIN/$t" "scratch/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
      -max_total_time="$SECONDS_PER_TARGET" $RUNS_ARG -print_final_stats=1 -max_len=4096 >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    failed="$failed $t"
  fi
  secs=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  execs=${execs:-0}
  total=$((total + execs))
  summary="$summary$(printf '%-14s %12s %6ss  %s' "$t" "$execs" "$secs" "$result")
"
  if [ "$result" != ok ]; then
    echo "fuzz-smoke.sh: $t failed (a crash, a failed assertion or a missing binary); the tail of $PWD/$log:" >&2
    tail -n 40 "$log" >&2
  fi
done

printf '%-14s %12s %7s  %s\n' target executions time result
printf '%s' "$summary"
printf '%-14s %12s\n' total "$total"
if [ -n "$failed" ]; then
  echo "fuzz-smoke.sh: failed:$failed (crashing inputs are under $PWD/artifacts/)" >&2
  exit 1
fi
