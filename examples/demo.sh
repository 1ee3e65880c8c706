#!/usr/bin/env bash
# The seed's services as five processes on loopback:
#
#   UserService --user.account.created--> EmailService, AnalyticsService
#               --user.account.deleted--> DataCleanupService, BillingService
#
# UserService starts first and prints the endpoints it publishes and is
# controlled on; the consumers join the cluster through it: their configs
# are the shipped ones plus `cluster: {seeds: [its control endpoint]}`,
# and no peers: each consumer connects to UserService once membership
# shows it as the producer of the types it selects. UserService publishes
# only once the four consumers subscribed (--wait-subscribers 4: each
# consumer node sends one subscription), then stays up to serve replays to
# consumers that catch up from its log.
#
# Each consumer prints one line per event it handles, ending with
# "(event <id>)". Delivery is at least once, so an event may be handled
# twice: the demo counts the distinct ids in each consumer's output until
# every consumer has its expected count, then stops the five services with
# SIGTERM, as an operator would.
#
# Usage: examples/demo.sh [BUILD_DIR]      (default: build)
# Environment: DEMO_CREATED (300), DEMO_DELETED (100), DEMO_USERS (100),
#   DEMO_KEEP_LOGS=1 keeps the log folder even on success.
# Exit status: 0 only if every consumer handled its expected count and every
# service exited 0 on SIGTERM.
# Every wait is bounded; every process is killed when the script exits.

set -uo pipefail

created=${DEMO_CREATED:-300}
deleted=${DEMO_DELETED:-100}
users=${DEMO_USERS:-100}
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
config_dir="$src_dir/config"
if ! build_dir=$(cd "${1:-build}" 2>/dev/null && pwd); then
  echo "demo: build folder '${1:-build}' not found; build first:" \
    "cmake -S . -B build && cmake --build build" >&2
  exit 1
fi
bin_dir="$build_dir/examples"

for exe in user_service email_service analytics_service data_cleanup_service \
  billing_service; do
  if [[ ! -x "$bin_dir/$exe" ]]; then
    echo "demo: $bin_dir/$exe not found; build the examples first:" \
      "cmake --build $build_dir --target $exe" >&2
    exit 1
  fi
done

log_dir=$(mktemp -d "${TMPDIR:-/tmp}/herald-demo.XXXXXX")
# The services run here: their data directories (the configs' default,
# data/<node>) land next to the logs.
cd "$log_dir" || exit 1
pids=()
ok=0

cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  if [[ $ok == 1 && -z ${DEMO_KEEP_LOGS:-} ]]; then
    rm -rf "$log_dir"
  else
    echo "logs: $log_dir"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# service name, executable, expected count
consumers=(
  "EmailService email_service $created"
  "AnalyticsService analytics_service $created"
  "DataCleanupService data_cleanup_service $deleted"
  "BillingService billing_service $deleted"
)

# The distinct events the consumer $1 reported handling so far.
handled() {
  grep -o '(event [^)]*)$' "$log_dir/$1.log" 2>/dev/null | sort -u | wc -l
}

# Sends SIGTERM to $1, waits at most 10 s for it to exit (then SIGKILL),
# and returns its exit status.
stop() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid"
}

echo "demo: logs in $log_dir"
# `timeout` bounds each service's life should this script be killed -9.
timeout -k 5 180 "$bin_dir/user_service" \
  --config "$config_dir/user_service.yaml" \
  --created "$created" --deleted "$deleted" --users "$users" \
  --wait-subscribers ${#consumers[@]} --wait-timeout 30 --linger-ms 150000 \
  >"$log_dir/UserService.log" 2>"$log_dir/UserService.err" &
user_pid=$!
pids+=("$user_pid")

# Bounded wait for the producer's endpoints (10 s).
endpoint= control=
for _ in $(seq 100); do
  endpoint=$(sed -n 's/^UserService: publishing on //p' \
    "$log_dir/UserService.log")
  control=$(sed -n 's/^UserService: control on //p' "$log_dir/UserService.log")
  [[ -n $endpoint && -n $control ]] && break
  kill -0 "$user_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z $endpoint || -z $control ]]; then
  echo "demo: UserService printed no endpoints within 10s:" >&2
  tail -n 5 "$log_dir/UserService.err" >&2
  exit 1
fi
echo "demo: UserService publishes on $endpoint"
echo "demo: the consumers join through UserService's control endpoint $control"

# Each consumer's config: the shipped one (its catalog found from here),
# with UserService as the seed to join the cluster through.
seeded_config() {
  sed "s|^catalog: events.yaml$|catalog: $config_dir/events.yaml|" \
    "$config_dir/$1.yaml"
  printf 'cluster:\n  seeds: [%s]\n' "$control"
}

declare -A consumer_pid
for entry in "${consumers[@]}"; do
  read -r name exe _ <<<"$entry"
  seeded_config "$exe" >"$log_dir/$exe.yaml"
  timeout -k 5 180 "$bin_dir/$exe" --config "$log_dir/$exe.yaml" \
    >"$log_dir/$name.log" 2>"$log_dir/$name.err" &
  consumer_pid[$name]=$!
  pids+=("$!")
done

# Bounded wait (90 s) until every consumer handled its expected count, a
# consumer died, or the producer failed.
failed=0
for _ in $(seq 900); do
  done_all=1
  for entry in "${consumers[@]}"; do
    read -r name _ expect <<<"$entry"
    if ! kill -0 "${consumer_pid[$name]}" 2>/dev/null; then
      echo "demo: $name exited early" >&2
      failed=1
    fi
    (($(handled "$name") >= expect)) || done_all=0
  done
  ((done_all || failed)) && break
  if ! kill -0 "$user_pid" 2>/dev/null; then
    echo "demo: UserService exited early" >&2
    failed=1
    break
  fi
  sleep 0.1
done

# Stop the consumers, then the producer that served them.
declare -A consumer_rc
for entry in "${consumers[@]}"; do
  read -r name _ _ <<<"$entry"
  stop "${consumer_pid[$name]}"
  consumer_rc[$name]=$?
done
stop "$user_pid"
user_rc=$?
if [[ $user_rc != 0 ]]; then
  echo "demo: UserService exited $user_rc:" >&2
  tail -n 5 "$log_dir/UserService.err" >&2
  failed=1
fi

echo
echo "== What the consumers did (first lines of each log)"
for entry in "${consumers[@]}"; do
  read -r name _ _ <<<"$entry"
  head -n 3 "$log_dir/$name.log" | sed 's/^/  /'
done

echo
echo "== Summary"
grep "UserService: published" "$log_dir/UserService.log" | sed 's/^/  /'
for entry in "${consumers[@]}"; do
  read -r name _ expect <<<"$entry"
  n=$(handled "$name")
  calls=$(grep -c '(event [^)]*)$' "$log_dir/$name.log")
  line="$name: handled $n events"
  ((calls > n)) && line+=" ($((calls - n)) redelivered)"
  echo "  $line"
  rc=${consumer_rc[$name]}
  if [[ $rc != 0 || $n != "$expect" ]]; then
    echo "demo: $name exited $rc after handling $n events; expected" \
      "$expect:" >&2
    tail -n 5 "$log_dir/$name.err" >&2
    failed=1
  fi
done

if [[ $failed != 0 ]]; then
  echo "demo: FAILED" >&2
  exit 1
fi
ok=1
echo "demo: OK"
