#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, docs/fuzzing.md) with clang and runs
# each on a copy of its seed corpus for a bounded time; any crash, leak,
# sanitizer report or timeout fails the script, leaving the input that
# caused it in BUILD_DIR/fuzz-artifacts/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   # default: 30 s, every target
#
# Environment: BUILD_DIR (default: build-fuzz), HERALD_WERROR (default OFF).
set -euo pipefail

cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
(( ${#targets[@]} )) || targets=(envelope heartbeat control catalog config)
build_dir=${BUILD_DIR:-build-fuzz}

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ "${launcher[@]}" \
  -DHERALD_WERROR="${HERALD_WERROR:-OFF}" -DHERALD_FUZZ=ON \
  -DHERALD_BUILD_TESTS=OFF -DHERALD_BUILD_EXAMPLES=OFF \
  -DHERALD_BUILD_BENCH=OFF >/dev/null
cmake --build "$build_dir" -j2 --target herald_fuzz

artifacts=$build_dir/fuzz-artifacts
mkdir -p "$artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
  # New inputs go to a scratch copy: the seed corpus in the tree stays as
  # it is.
  cp -r "fuzz/corpus/$t" "$work/$t"
  echo "fuzzing $t for ${seconds}s"
  if ! "$build_dir/fuzz/herald_fuzz_$t" -max_total_time="$seconds" \
      -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
      -artifact_prefix="$artifacts/$t-" "$work/$t" >"$work/$t.log" 2>&1; then
    tail -n 60 "$work/$t.log" >&2
    failed+=("$t")
  fi
  grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units)' "$work/$t.log" || true
done
if (( ${#failed[@]} )); then
  echo "fuzzing failed: ${failed[*]} (inputs in $artifacts)" >&2
  exit 1
fi
