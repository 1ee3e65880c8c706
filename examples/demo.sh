#!/usr/bin/env bash
# The seed's services as seven processes on loopback, two of them consumer
# groups of two nodes each:
#
#   UserService --user.account.created--> EmailService: email-node-1, -2
#                                     \-> AnalyticsService: analytics-node-1, -2
#               --user.account.deleted--> DataCleanupService, BillingService
#
# UserService starts first and prints the endpoints it publishes and is
# controlled on; the consumers join the cluster through it: each config is
# the shipped one with its own `node` name (and so its own data directory)
# plus `cluster: {seeds: [its control endpoint]}`, and no peers. The nodes
# of one service form the consumer group named by the service: they share
# its events by partition of the user id, each event handled by one of
# them. UserService publishes once the six consumer nodes subscribed, at
# DEMO_RATE events per second, then stays up: it owns its stream's leases,
# offsets and the groups' dead letters.
#
# What it shows:
# 1. A member dies. Halfway through EmailService's events, one EmailService
#    node is killed with SIGKILL and not restarted: the other takes its
#    partitions over once their leases expire (6 s) and goes on from the
#    group's committed offsets (`herald group describe` shows it holding
#    them all). At the end each group handled every event:
#    the distinct event ids over a service's nodes are exactly those
#    published. The events the dead node handled after its last commit are
#    handled again by the other: printed as "handled twice around the kill".
# 2. The failure path. Both EmailService nodes start with
#    `--fail-user-email DEMO_FAIL_EMAIL`: that user's welcome email fails
#    every attempt ("SMTP 550 mailbox unavailable"). The node logs each
#    failed attempt and its backoff, stores the event as a dead letter at
#    UserService (the stream's owner, so it outlives the node that made it:
#    that node is the one killed), and the alert of config/email_service.yaml
#    (`alert: {dead_letters: 1, window: 1m}`) fires. `herald dlq list`
#    at UserService shows the letter, `herald dlq show` the node that made
#    it; the fix is deployed (the surviving EmailService node restarted
#    without the failing option); `herald dlq redrive` at UserService hands
#    the letter to the member holding its partition, and the welcome email
#    goes out.
#
# Each consumer prints one line per event it handles, ending with
# "(event <id>)"; node logs (stderr) are in NODE.err in the log folder.
#
# Usage: examples/demo.sh [BUILD_DIR]      (default: build)
# Environment: DEMO_CREATED (300), DEMO_DELETED (100), DEMO_USERS (300: one
#   signup per user), DEMO_RATE (25 events/s), DEMO_FAIL_EMAIL
#   (user42@example.com: user<i>@example.com for i below DEMO_USERS and
#   DEMO_CREATED), DEMO_KEEP_LOGS=1 keeps the log folder even on success.
# Exit status: 0 only if every group handled each event, the failed email
# was delivered by the redrive, and every service still running exited 0
# on SIGTERM. Every wait is bounded; every process is killed when the
# script exits.

set -uo pipefail

created=${DEMO_CREATED:-300}
deleted=${DEMO_DELETED:-100}
users=${DEMO_USERS:-300}
rate=${DEMO_RATE:-25}
fail_email=${DEMO_FAIL_EMAIL:-user42@example.com}
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
config_dir="$src_dir/config"
if ! build_dir=$(cd "${1:-build}" 2>/dev/null && pwd); then
  echo "demo: build folder '${1:-build}' not found; build first:" \
    "cmake -S . -B build && cmake --build build" >&2
  exit 1
fi
bin_dir="$build_dir/examples"
herald="$build_dir/tools/herald"

for exe in examples/user_service examples/email_service \
  examples/analytics_service examples/data_cleanup_service \
  examples/billing_service tools/herald; do
  if [[ ! -x "$build_dir/$exe" ]]; then
    echo "demo: $build_dir/$exe not found; build it first:" \
      "cmake --build $build_dir --target ${exe#*/}" >&2
    exit 1
  fi
done

# The failing user: user<i>@example.com, whose signups are events k with
# k % users == i.
fail_index=${fail_email#user}
fail_index=${fail_index%@example.com}
if [[ $fail_email != "user${fail_index}@example.com" ]] ||
  ! [[ $fail_index =~ ^[0-9]+$ ]] ||
  ((fail_index >= users || fail_index >= created)); then
  echo "demo: DEMO_FAIL_EMAIL '$fail_email' is none of the users who sign" \
    "up: use user<i>@example.com with i below DEMO_USERS ($users) and" \
    "DEMO_CREATED ($created)" >&2
  exit 2
fi
fail_key=$(printf '00000000-0000-4000-8000-%012x' "$fail_index")
fail_count=$(((created - 1 - fail_index) / users + 1))

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

# node, executable, service: the consumer nodes, in start order.
nodes=(
  "email-node-1 email_service EmailService"
  "email-node-2 email_service EmailService"
  "analytics-node-1 analytics_service AnalyticsService"
  "analytics-node-2 analytics_service AnalyticsService"
  "data-cleanup-node data_cleanup_service DataCleanupService"
  "billing-node billing_service BillingService"
)
# service, expected distinct events
services=(
  "EmailService $created"
  "AnalyticsService $created"
  "DataCleanupService $deleted"
  "BillingService $deleted"
)
declare -A exe_of nodes_of pid_of
for entry in "${nodes[@]}"; do
  read -r node exe service <<<"$entry"
  exe_of[$node]=$exe
  nodes_of[$service]+="$node "
done

# The event ids the nodes of service $1 reported handling, one per handling.
handlings() {
  local node
  for node in ${nodes_of[$1]}; do
    grep -o '(event [^)]*)$' "$node.log" 2>/dev/null
  done
}
# The distinct events service $1 handled so far, over all its nodes.
handled() { handlings "$1" | sort -u | wc -l; }
# The events service $1 handled more than once (twice on a node, or on two).
twice() { handlings "$1" | sort | uniq -d; }

# Sends SIGTERM to $1, waits at most 10 s for it to exit (then SIGKILL),
# and returns its exit status.
stop() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  # `timeout` leads its own process group: this kills the service too.
  kill -KILL -- "-$pid" 2>/dev/null
  wait "$pid"
}

# Starts consumer node $1 with the options $2...; appends to its logs.
# `timeout` bounds each service's life should this script be killed -9.
start() {
  local node=$1
  shift
  timeout -k 5 180 "$bin_dir/${exe_of[$node]}" --config "$node.yaml" "$@" \
    >>"$node.log" 2>>"$node.err" &
  pid_of[$node]=$!
  pids+=("$!")
}

# Waits at most $1 seconds until the command $2... succeeds; fails as soon
# as UserService is gone.
wait_until() {
  local tenths=$(($1 * 10))
  shift
  for _ in $(seq "$tenths"); do
    "$@" && return 0
    kill -0 "$user_pid" 2>/dev/null || return 1
    sleep 0.1
  done
  "$@"
}

section() { printf '\n== %s\n' "$*"; }
indent() { sed 's/^/  /'; }

echo "demo: logs in $log_dir"
section "Starting UserService and six consumer nodes"
timeout -k 5 180 "$bin_dir/user_service" \
  --config "$config_dir/user_service.yaml" \
  --created "$created" --deleted "$deleted" --users "$users" --rate "$rate" \
  --wait-subscribers ${#nodes[@]} --wait-timeout 30 --linger-ms 150000 \
  >"UserService.log" 2>"UserService.err" &
user_pid=$!
pids+=("$user_pid")

# Bounded wait for the producer's endpoints (10 s).
endpoint= control=
for _ in $(seq 100); do
  endpoint=$(sed -n 's/^UserService: publishing on //p' UserService.log)
  control=$(sed -n 's/^UserService: control on //p' UserService.log)
  [[ -n $endpoint && -n $control ]] && break
  kill -0 "$user_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z $endpoint || -z $control ]]; then
  echo "demo: UserService printed no endpoints within 10s:" >&2
  tail -n 5 UserService.err >&2
  exit 1
fi
echo "  UserService publishes on $endpoint, is controlled on $control"
user_node=$(sed -n 's/^node: //p' "$config_dir/user_service.yaml")

# Each consumer node's config: the shipped one with the node's name (its
# data directory follows), its catalog found from here, and UserService as
# the seed to join the cluster through.
for entry in "${nodes[@]}"; do
  read -r node exe service <<<"$entry"
  sed -e "s|^catalog: events.yaml$|catalog: $config_dir/events.yaml|" \
    -e "s|^node: .*|node: $node|" "$config_dir/$exe.yaml" >"$node.yaml"
  printf 'cluster:\n  seeds: [%s]\n' "$control" >>"$node.yaml"
  if [[ $service == EmailService ]]; then
    start "$node" --fail-user-email "$fail_email"
  else
    start "$node"
  fi
  echo "  $service on $node"
done
echo "  EmailService's nodes run with --fail-user-email $fail_email"

# Is every consumer node still running? Says which is not.
consumers_alive() {
  local node
  for node in "${!pid_of[@]}"; do
    [[ $node == "${killed:-}" ]] && continue
    if ! kill -0 "${pid_of[$node]}" 2>/dev/null; then
      echo "demo: $node exited early:" >&2
      tail -n 5 "$node.err" >&2
      return 1
    fi
  done
}

failed=0
section "Publishing $created signups and $deleted deletions at $rate/s;" \
  "a member dies halfway"
# Halfway through EmailService's events, kill the EmailService node that
# stored the dead letter (email-node-2 if none did yet): the letter is not
# on it.
halfway() { consumers_alive && (($(handled EmailService) >= created / 2)); }
killed=
if wait_until 60 halfway; then
  killed=$(grep -l "stored as a dead letter.* key=$fail_key " \
    email-node-*.err 2>/dev/null | head -n 1)
  killed=${killed%.err}
  killed=${killed:-email-node-2}
  kill -KILL -- "-${pid_of[$killed]}"
  wait "${pid_of[$killed]}" 2>/dev/null
  survivor=email-node-1
  [[ $killed == email-node-1 ]] && survivor=email-node-2
  echo "  EmailService had handled $(handled EmailService) of $created" \
    "events: kill -9 $killed (not restarted)"
  echo "  $survivor takes $killed's partitions over once their leases" \
    "expire, from the group's committed offsets"
else
  echo "demo: EmailService did not reach $((created / 2)) events within" \
    "60s" >&2
  failed=1
fi

# Every consumer has its count, the failing user's events excepted (they
# are dead letters), and UserService published everything.
settled() {
  consumers_alive || return 1
  grep -q "^UserService: published" UserService.log || return 1
  local entry name expect
  for entry in "${services[@]}"; do
    read -r name expect <<<"$entry"
    [[ $name == EmailService ]] && expect=$((expect - fail_count))
    (($(handled "$name") >= expect)) || return 1
  done
  local stored
  stored=$(cat email-node-*.err |
    grep -c "stored as a dead letter.* key=$fail_key ")
  ((stored >= fail_count))
}
if ((!failed)) && ! wait_until 60 settled; then
  echo "demo: the consumers did not settle within 60s" >&2
  failed=1
fi
if ((!failed)); then
  grep "^UserService: published" UserService.log | indent
  for entry in "${services[@]}"; do
    read -r name _ <<<"$entry"
    line="  $name: $(handled "$name") distinct events so far"
    [[ $name == EmailService ]] && line+=" ($fail_email's is a dead letter)"
    echo "$line"
  done
  # The group as UserService, its stream's owner, keeps it: the members,
  # and who holds the partitions of UserService's stream now.
  described=$("$herald" group describe EmailService --control "$control" \
    --json 2>/dev/null)
  members=$(sed -n 's/.*"members":\[\([^]]*\)\].*/\1/p' <<<"$described" |
    sed -E 's/\{"name":"([^"]*)","status":"([^"]*)"\}/\1 (\2)/g; s/,/, /g')
  at_user=$(sed 's/{"dead_letters"/\n&/g' <<<"$described" |
    grep "\"owner\":\"$user_node\"")
  partitions=$(grep -oE '"partitions":[0-9]+' <<<"$at_user" | grep -oE '[0-9]+')
  held=$(grep -oE '"holder":"[^"]*"' <<<"$at_user" |
    sed -E 's/.*"([^"]*)"$/\1/' | sort | uniq -c |
    awk '{printf "%s%s holds %s", (NR > 1 ? ", " : ""), $2, $1}')
  echo "  herald group describe EmailService: members ${members:-?};" \
    "of the ${partitions:-?} partitions of UserService's stream, ${held:-?}"
  dups=$(twice EmailService)
  if [[ -n $dups ]]; then
    echo "  EmailService events handled twice around the kill (by):"
    while read -r id; do
      by=$(grep -l -- "$id" email-node-*.log | sed 's/\.log$//' | paste -sd, -)
      grep -h -- "$id" email-node-*.log | head -n 1 |
        sed "s/^EmailService: /    /; s/\$/ ($by)/"
    done <<<"$dups" | head -n 5
    n=$(wc -l <<<"$dups")
    ((n > 5)) && echo "    ... and $((n - 5)) more"
  fi
fi

# The failure path, step by step.
# A log line of the failing user's, shortened to what a reader needs.
brief() {
  sed -E 's/^[0-9-]+T([0-9:]+\.[0-9]{3})[0-9]* [a-z]+ node=([^ ]+) /\1 \2: /;
    s/ consumer=[^ ]+ event_id=[^ ]+ type=[^ ]+ key=[^ ]+ stream=[^ ]+ / /;
    s/ error="[^"]*"( next=)/\1/'
}
dlq_list() {
  "$herald" dlq list --consumer EmailService --control "$control" "$@"
}
if ((!failed)); then
  section "The failure path: the welcome email to $fail_email"
  echo "  1. Every attempt fails; the node retries with backoff (its log):"
  grep -h "handler failed.* key=$fail_key " email-node-*.err | head -n 1 |
    sed -E 's/.* error="([^"]*)".*/     error: \1/'
  grep -h "handler failed.* key=$fail_key " email-node-*.err | sort | brief |
    sed 's/^/     /'
  echo "  2. The retries spent, the event is a dead letter, stored at" \
    "UserService (stored_at: its stream):"
  grep -h "stored as a dead letter.* key=$fail_key " email-node-*.err | sort |
    brief | sed -E 's/ error="[^"]*"//; s/^/     /'
  echo "  3. The alert fires (a critical log line, and a herald.alert.raised" \
    "event):"
  grep -h " ALERT consumer=EmailService" ./*.err | sort | brief |
    sed 's/^/     /'
  echo "  4. herald dlq list --consumer EmailService --control $control"
  listed=$(dlq_list 2>&1)
  sed 's/^/     /' <<<"$listed"
  if ! grep -q "$fail_key" <<<"$listed"; then
    echo "demo: herald dlq list does not show $fail_email's dead letter" >&2
    failed=1
  fi
fi
if ((!failed)); then
  # The letter names the node that made it; it is kept at UserService, the
  # stream's owner, so that node's death did not lose it.
  id=$(dlq_list --json 2>/dev/null | grep -o '"id":[0-9]*' | head -n 1)
  id=${id#\"id\":}
  echo "     herald dlq show ${id:-?} --control $control (its node, first" \
    "failure):"
  shown=$("$herald" dlq show "${id:-0}" --control "$control" 2>&1)
  grep -E '^(node|first failure):' <<<"$shown" | sed 's/^/     /'
  if [[ $(sed -n 's/^node: *//p' <<<"$shown") == "$killed" ]]; then
    echo "     $killed, which made it, is gone (killed above); the letter" \
      "is not: UserService keeps it"
  else
    echo "     UserService keeps it: no EmailService node's death loses it"
  fi
fi
if ((!failed)); then
  echo "  5. The fix is deployed: $survivor restarts without" \
    "--fail-user-email"
  stop "${pid_of[$survivor]}"
  rc=$?
  if [[ $rc != 0 ]]; then
    echo "demo: $survivor exited $rc on SIGTERM:" >&2
    tail -n 5 "$survivor.err" >&2
    failed=1
  fi
  joins=$(grep -c " joined cluster " "$survivor.err")
  start "$survivor"
  # Bounded wait (15 s) until it is back in the cluster.
  rejoined() {
    consumers_alive &&
      (($(grep -c " joined cluster " "$survivor.err") > joins))
  }
  if ! wait_until 15 rejoined; then
    echo "demo: $survivor did not rejoin the cluster within 15s:" >&2
    tail -n 5 "$survivor.err" >&2
    failed=1
  fi
fi
if ((!failed)); then
  echo "  6. herald dlq redrive --consumer EmailService --control $control"
  # It asks every member; those that keep no letter of the group say so
  # (left out here).
  "$herald" dlq redrive --consumer EmailService --control "$control" \
    --by demo 2>&1 | grep -v ': no dead letters match; none redriven$' |
    sed 's/^/     /'
  # Bounded wait (30 s): the welcome email goes out, the letter is gone.
  delivered() {
    consumers_alive &&
      (($(grep -c "welcome email to $fail_email " "$survivor.log") >=
        fail_count)) &&
      ! dlq_list --json 2>/dev/null | grep -q "$fail_key"
  }
  if wait_until 30 delivered; then
    grep -h "welcome email to $fail_email " "$survivor.log" |
      sed "s/^/     $survivor: /"
    echo "     herald dlq list: $(dlq_list 2>&1 | grep -c "$fail_key")" \
      "dead letters of $fail_email left"
  else
    echo "demo: the redrive did not deliver $fail_email's welcome email" \
      "within 30s" >&2
    dlq_list >&2
    tail -n 5 "$survivor.err" >&2
    failed=1
  fi
fi

# Stop the consumer nodes, then the producer that served them.
declare -A node_rc
for entry in "${nodes[@]}"; do
  read -r node _ _ <<<"$entry"
  [[ $node == "$killed" ]] && continue
  stop "${pid_of[$node]}"
  node_rc[$node]=$?
done
stop "$user_pid"
user_rc=$?
if [[ $user_rc != 0 ]]; then
  echo "demo: UserService exited $user_rc:" >&2
  tail -n 5 UserService.err >&2
  failed=1
fi
for node in "${!node_rc[@]}"; do
  if [[ ${node_rc[$node]} != 0 ]]; then
    echo "demo: $node exited ${node_rc[$node]} on SIGTERM:" >&2
    tail -n 5 "$node.err" >&2
    failed=1
  fi
done

section "What each service did (its first line)"
for entry in "${services[@]}"; do
  read -r name _ <<<"$entry"
  for node in ${nodes_of[$name]}; do
    head -n 1 "$node.log"
  done | head -n 1 | indent
done

section "Summary: each event handled once per group"
grep "^UserService: published" UserService.log | indent
for entry in "${services[@]}"; do
  read -r name expect <<<"$entry"
  n=$(handled "$name")
  d=$(twice "$name" | grep -c .)
  line="$name: handled $n events"
  if [[ $name == EmailService && -n $killed ]]; then
    line+=" ($d handled twice around the kill of $killed)"
  elif ((d > 0)); then
    line+=" ($d handled twice)"
  fi
  echo "  $line"
  if [[ $n != "$expect" ]]; then
    echo "demo: $name handled $n distinct events; expected $expect" >&2
    failed=1
  fi
done

if [[ $failed != 0 ]]; then
  echo "demo: FAILED" >&2
  exit 1
fi
ok=1
echo "demo: OK"
