#!/usr/bin/env bash
# The seed's services as five processes on loopback:
#
#   UserService --user.account.created--> EmailService, AnalyticsService
#               --user.account.deleted--> DataCleanupService, BillingService
#
# UserService starts first and writes its endpoint to a file; the consumers
# connect to it with --peer; UserService publishes only once the four
# consumers subscribed (--wait-subscribers 4: each consumer node sends one
# subscription). Each consumer exits after handling its expected count.
#
# Usage: examples/demo.sh [BUILD_DIR]      (default: build)
# Environment: DEMO_CREATED (300), DEMO_DELETED (100), DEMO_USERS (100),
#   DEMO_KEEP_LOGS=1 keeps the log folder even on success.
# Exit status: 0 only if every service exited 0 with the expected count.
# Every wait is bounded; every process is killed when the script exits.

set -uo pipefail

build_dir=${1:-build}
created=${DEMO_CREATED:-300}
deleted=${DEMO_DELETED:-100}
users=${DEMO_USERS:-100}
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin_dir="$build_dir/examples"
config_dir="$src_dir/config"

for exe in user_service email_service analytics_service data_cleanup_service \
  billing_service; do
  if [[ ! -x "$bin_dir/$exe" ]]; then
    echo "demo: $bin_dir/$exe not found; build the examples first:" \
      "cmake --build $build_dir --target $exe" >&2
    exit 1
  fi
done

log_dir=$(mktemp -d "${TMPDIR:-/tmp}/herald-demo.XXXXXX")
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

echo "demo: logs in $log_dir"
endpoint_file="$log_dir/user_service.endpoint"
timeout -k 5 90 "$bin_dir/user_service" \
  --config "$config_dir/user_service.yaml" \
  --created "$created" --deleted "$deleted" --users "$users" \
  --wait-subscribers ${#consumers[@]} --wait-timeout 30 --linger-ms 80000 \
  --endpoint-file "$endpoint_file" --data-dir "$log_dir/data/UserService" \
  >"$log_dir/UserService.log" 2>"$log_dir/UserService.err" &
user_pid=$!
pids+=("$user_pid")

# Bounded wait for the producer's endpoint (10 s).
for _ in $(seq 100); do
  [[ -s $endpoint_file ]] && break
  if ! kill -0 "$user_pid" 2>/dev/null; then break; fi
  sleep 0.1
done
if [[ ! -s $endpoint_file ]]; then
  echo "demo: UserService wrote no endpoint to $endpoint_file within 10s:" >&2
  tail -n 5 "$log_dir/UserService.err" >&2
  exit 1
fi
endpoint=$(<"$endpoint_file")
echo "demo: UserService publishes on $endpoint"

declare -A consumer_pid
for entry in "${consumers[@]}"; do
  read -r name exe expect <<<"$entry"
  timeout -k 5 90 "$bin_dir/$exe" --config "$config_dir/$exe.yaml" \
    --peer "$endpoint" --expect "$expect" --timeout 60 \
    --data-dir "$log_dir/data/$name" \
    >"$log_dir/$name.log" 2>"$log_dir/$name.err" &
  consumer_pid[$name]=$!
  pids+=("$!")
done

failed=0
# UserService stays up (--linger-ms) to serve replays to consumers that
# catch up from its log; it is stopped once they are done.
user_rc=
while :; do
  alive=0
  for entry in "${consumers[@]}"; do
    read -r name _ _ <<<"$entry"
    kill -0 "${consumer_pid[$name]}" 2>/dev/null && alive=1
  done
  (( alive )) || break
  if [[ -z $user_rc ]] && ! kill -0 "$user_pid" 2>/dev/null; then
    wait "$user_pid"
    user_rc=$?
    if [[ $user_rc != 0 ]]; then
      # Nothing more will come: stop the consumers instead of awaiting
      # their timeouts.
      for entry in "${consumers[@]}"; do
        read -r name _ _ <<<"$entry"
        kill "${consumer_pid[$name]}" 2>/dev/null
      done
      break
    fi
  fi
  sleep 0.1
done

declare -A consumer_rc
for entry in "${consumers[@]}"; do
  read -r name _ _ <<<"$entry"
  wait "${consumer_pid[$name]}"
  consumer_rc[$name]=$?
done
if [[ -z $user_rc ]]; then
  kill -TERM "$user_pid" 2>/dev/null
  wait "$user_pid"
  user_rc=$?
fi
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
  last=$(tail -n 1 "$log_dir/$name.log")
  echo "  ${last:-$name: no output}"
  want="$name: handled $expect events"
  rc=${consumer_rc[$name]}
  if [[ $rc != 0 || $last != "$want" ]]; then
    echo "demo: $name exited $rc; expected '$want':" >&2
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
