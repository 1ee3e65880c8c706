#!/bin/bash
# Runs a harness scenario as a test, then removes its nodes' data
# directories (histories and result.json stay for a failed test's reader).
#   run.sh HERALD SCENARIO OUT            passes when the run passes
#   run.sh HERALD SCENARIO OUT --lost     passes when the run fails with
#                                         lost > 0 (the harness caught it)
#   run.sh HERALD SCENARIO OUT --root     needs root (network namespaces,
#                                         tmpfs mounts): skipped (exit 77)
#                                         otherwise
set -u
herald=$1 scenario=$2 out=$3 expect=${4:-}
if [ "$expect" = "--root" ] && [ "$(id -u)" -ne 0 ]; then
  echo "run.sh: SKIPPED: $(basename "$scenario") needs root (network" \
    "namespaces, tmpfs mounts); run the tests as root to include it"
  exit 77
fi
"$herald" harness run "$scenario" --seed 1 --out "$out"
rc=$?
"$herald" harness clean "$out" >/dev/null
if [ "$expect" != "--lost" ]; then
  exit $rc
fi
if [ "$rc" -eq 0 ]; then
  echo "run.sh: the run passed; the deliberately wrong consumer went unnoticed"
  exit 1
fi
if ! grep -Eq '"lost": [1-9]' "$out/result.json"; then
  echo "run.sh: the run failed (exit $rc) but result.json counts no lost event"
  exit 1
fi
echo "run.sh: the run failed as it must, with lost > 0"
