#!/usr/bin/env bash
# The shipped unit template config/systemd/herald-service@.service:
# systemd accepts it (systemd-analyze verify, when systemd is there), its
# ExecStart runs the binary the instance's environment file names with
# /etc/herald/INSTANCE.yaml and HERALD_ARGS, as the unit's main process
# (exec: SIGTERM reaches the service itself), and says what is missing
# when the file names no binary.
#   systemd_unit.sh SRC_DIR
set -uo pipefail
src_dir=$1
unit="$src_dir/config/systemd/herald-service@.service"
work=$(mktemp -d)
pid=
# The service started below, and its shell, never outlive the test.
trap '[[ -n $pid ]] && pkill -KILL -P "$pid" 2>/dev/null; [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null; rm -rf "$work"' EXIT
fail() {
  echo "systemd_unit.sh: $*" >&2
  exit 1
}

if command -v systemd-analyze >/dev/null; then
  cp "$unit" "$work/" || fail "cannot copy $unit"
  if ! out=$(cd "$work" && systemd-analyze verify ./herald-service@demo.service 2>&1) ||
    [[ -n $out ]]; then
    fail "systemd-analyze verify: ${out:-failed}"
  fi
else
  echo "systemd_unit.sh: no systemd-analyze; checking ExecStart only"
fi

grep -q '^Restart=on-failure$' "$unit" || fail "no Restart=on-failure"
grep -q '^KillSignal=SIGTERM$' "$unit" || fail "no KillSignal=SIGTERM"
grep -q '^TimeoutStopSec=' "$unit" || fail "no TimeoutStopSec"
grep -q '^EnvironmentFile=/etc/herald/%i.env$' "$unit" ||
  fail "no EnvironmentFile=/etc/herald/%i.env"

# ExecStart as systemd runs it for instance "demo": %i replaced, $$ a
# literal $, the single-quoted word one argument.
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[[ -n $exec_start ]] || fail "no ExecStart"
line=${exec_start//%i/demo}
line=${line//\$\$/\$}
[[ $line == "/bin/sh -c '"*"'" ]] || fail "ExecStart is not /bin/sh -c '...': $line"
script=${line#/bin/sh -c \'}
script=${script%\'}

# A service that records its pid and arguments, then waits for SIGTERM.
cat >"$work/service" <<SERVICE
#!/usr/bin/env bash
echo "\$\$ \$*" > "$work/args"
trap 'echo term > "$work/term"; exit 0' TERM
while :; do sleep 0.1; done
SERVICE
chmod +x "$work/service"

HERALD_SERVICE="$work/service" HERALD_ARGS="--log-level debug" \
  /bin/sh -c "$script" &
pid=$!
for _ in $(seq 100); do
  [[ -s $work/args ]] && break
  sleep 0.05
done
[[ -s $work/args ]] || fail "the service did not start within 5 s"
read -r got_pid got_args <"$work/args"
[[ $got_pid == "$pid" ]] ||
  fail "the service runs as pid $got_pid under the shell $pid: not exec'd"
[[ $got_args == "--config /etc/herald/demo.yaml --log-level debug" ]] ||
  fail "the service got '$got_args'"
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
[[ $rc == 0 && -f $work/term ]] || fail "SIGTERM did not reach the service (exit $rc)"

# No binary named: the shell says what to set, and fails.
if out=$(env -u HERALD_SERVICE /bin/sh -c "$script" 2>&1); then
  fail "it started without HERALD_SERVICE"
fi
[[ $out == *"set HERALD_SERVICE in /etc/herald/demo.env"* ]] ||
  fail "without HERALD_SERVICE it said: $out"
echo "systemd_unit.sh: OK"
