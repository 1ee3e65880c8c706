#!/bin/bash
# A netns run leaves no network namespace, bridge, veth, mount or record
# behind: after a normal run, after a run that fails, after SIGINT, and
# after a SIGKILL of the harness followed by `herald harness clean`. Also:
# a netns-only fault is refused in loopback mode, naming netns.
#   netns_cleanup.sh HERALD SOURCE_DIR OUT
set -u
herald=$1 src=$2 out=$3
small=$src/tests/harness/netns-small.yaml
rm -rf "$out"; mkdir -p "$out"
failures=0
fail() { echo "netns_cleanup: FAIL: $*"; failures=$((failures + 1)); }

# Refused in loopback mode (no root needed for this one).
msg=$("$herald" harness run "$small" --mode loopback --seed 1 \
  --out "$out/refused" 2>&1)
if [ $? -eq 0 ] || ! grep -q "needs --mode netns" <<<"$msg"; then
  fail "a partition in loopback mode was not refused naming netns: $msg"
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "netns_cleanup: SKIPPED: the netns checks need root (network" \
    "namespaces, tmpfs mounts); run the tests as root to include them"
  [ $failures -eq 0 ] && exit 77 || exit 1
fi

# Everything a run whose id is $1 made is gone.
check_gone() {
  local id=$1 when=$2
  if [ -z "$id" ]; then
    fail "$when: the run printed no run id"
    return
  fi
  if ip netns list | grep -q "herald-$id-"; then
    fail "$when: namespaces left: $(ip netns list | grep "herald-$id-")"
  fi
  if ip -o link show | grep -Eq "hz[bvp]$id"; then
    fail "$when: links left: $(ip -o link show | grep -E "hz[bvp]$id")"
  fi
  if grep -q " $out/" /proc/mounts; then
    fail "$when: mounts left: $(grep " $out/" /proc/mounts)"
  fi
  if [ -e "/run/herald-harness/$id.record" ]; then
    fail "$when: record /run/herald-harness/$id.record left"
  fi
}
run_id() { sed -n 's/^mode netns: run id \([0-9a-f]*\)$/\1/p' "$1" | head -1; }

# 1. A normal run passes and leaves nothing.
"$herald" harness run "$small" --seed 1 --out "$out/normal" >"$out/normal.log" 2>&1
rc=$?
[ $rc -eq 0 ] || fail "the normal run failed ($rc); see $out/normal.log"
grep -q "applied: partition" "$out/normal.log" || fail "no partition applied"
grep -q "applied: filled the data disk of email" "$out/normal.log" \
  || fail "no disk filled"
check_gone "$(run_id "$out/normal.log")" "after a normal run"

# 2. A failing run (a consumer wrong on purpose) leaves nothing.
"$herald" harness run "$src/tests/harness/wrong-consumer.yaml" --mode netns \
  --seed 1 --out "$out/failing" >"$out/failing.log" 2>&1
rc=$?
[ $rc -ne 0 ] || fail "the wrong consumer's run passed in netns mode"
check_gone "$(run_id "$out/failing.log")" "after a failing run"

# Starts a run in the background and waits (bounded) until its nodes run.
start_bg() {
  "$herald" harness run "$small" --seed 1 --duration 20 --out "$out/$1" \
    >"$out/$1.log" 2>&1 &
  bg=$!
  for _ in $(seq 1 600); do
    grep -q "^started email" "$out/$1.log" 2>/dev/null && return 0
    kill -0 $bg 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# 3. SIGINT: the harness stops its nodes and removes what it made.
if start_bg sigint; then
  kill -INT $bg
  wait $bg
  check_gone "$(run_id "$out/sigint.log")" "after SIGINT"
else
  fail "the SIGINT run did not start; see $out/sigint.log"
  kill -KILL $bg 2>/dev/null; wait $bg 2>/dev/null
fi

# 4. SIGKILL: its namespaces stay until `herald harness clean`.
if start_bg sigkill; then
  id=$(run_id "$out/sigkill.log")
  kill -KILL $bg
  wait $bg 2>/dev/null
  ip netns list | grep -q "herald-$id-" \
    || fail "after SIGKILL no namespace was left: the test proves nothing"
  "$herald" harness clean "$out/sigkill" >"$out/clean.log" 2>&1 \
    || fail "clean failed; see $out/clean.log"
  grep -q "removed network namespace herald-$id-" "$out/clean.log" \
    || fail "clean did not say it removed the namespaces"
  check_gone "$id" "after SIGKILL and clean"
  sleep 0.5
  if pgrep -f "$out/sigkill/" >/dev/null; then
    fail "node processes of the killed run still run"
  fi
else
  fail "the SIGKILL run did not start; see $out/sigkill.log"
  kill -KILL $bg 2>/dev/null; wait $bg 2>/dev/null
fi

"$herald" harness clean "$out" >/dev/null 2>&1
if [ $failures -eq 0 ]; then
  echo "netns_cleanup: nothing left after a normal run, a failing run," \
    "SIGINT, and SIGKILL + clean"
  exit 0
fi
exit 1
