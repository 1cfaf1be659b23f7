#!/usr/bin/env bash
# A local Kafka (KRaft) on 127.0.0.1, run from the jars that fetch.sh puts in the cache. No Docker.
# One node by default; --brokers N starts N combined broker+controller nodes (a 3-voter quorum for
# N=3); --secure puts TLS + SASL/SCRAM + ACLs on every listener (see secure.sh).
#
#   deploy/kafka/kafka.sh start [--brokers N] [--secure] [--clean] | stop [--kill] | status | fetch
#   deploy/kafka/kafka.sh kill-broker I | start-broker I       (fault tests: SIGKILL / restart node I)
#   deploy/kafka/kafka.sh add-user NAME | acl USER [...] | client-env USER   (secure mode, secure.sh)
#
# Env: INFERSTREAM_KAFKA_PORT (19092), INFERSTREAM_KAFKA_CONTROLLER_PORT (port+1),
#      INFERSTREAM_RUN_DIR (<repo>/.run), INFERSTREAM_KAFKA_CLEAN=1 (same as --clean),
#      INFERSTREAM_KAFKA_BROKERS (same as --brokers), INFERSTREAM_KAFKA_SECURE=1 (same as --secure),
#      INFERSTREAM_KAFKA_USERS (SCRAM users made at format time in secure mode; "worker"),
#      INFERSTREAM_KAFKA_HEAP_OPTS ("-Xms256m -Xmx512m"), INFERSTREAM_KAFKA_JVM_OPTS (more broker
#      JVM options, e.g. "-XX:TieredStopAtLevel=1": C1 only, quicker starts on 2 cores),
#      INFERSTREAM_KAFKA_START_TIMEOUT (60 s),
#      INFERSTREAM_KAFKA_VERSION and INFERSTREAM_CACHE_DIR (see fetch.sh), JAVA_HOME (Java 17+).
# Node I listens on port+2(I-1) (clients) and controller_port+2(I-1) (KRaft controller): node 1
# is the single broker of the default layout. Everything of node I lives in
# $RUN_DIR/kafka-<its port>/: server.properties, kafka.pid, data/ (log.dirs, KRaft metadata
# included) and logs/ (server.log from log4j2, kafka.out = JVM stdout/stderr). Node 1's folder also
# holds cluster.env (the layout the data was formatted with) and, in secure mode, secure/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

PORT=${INFERSTREAM_KAFKA_PORT:-19092}
CONTROLLER_PORT=${INFERSTREAM_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
RUN_DIR=$(realpath -m "${INFERSTREAM_RUN_DIR:-$KAFKA_REPO_DIR/.run}")
CLUSTER_DIR=$RUN_DIR/kafka-$PORT
LAYOUT_FILE=$CLUSTER_DIR/cluster.env
SECRETS=$CLUSTER_DIR/secure
START_TIMEOUT=${INFERSTREAM_KAFKA_START_TIMEOUT:-60}
JAVA=${JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}/bin/java
[ -x "$JAVA" ] || JAVA=java
read -r -a HEAP_OPTS <<<"${INFERSTREAM_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
read -r -a JVM_OPTS <<<"${INFERSTREAM_KAFKA_JVM_OPTS:-}"
MAX_BROKERS=9
BROKERS=1 SECURE=0  # the layout in use; set by start() or load_layout()

log() { echo "[kafka] $*" >&2; }
die() { log "$*"; exit 1; }

# Not `ss ... | grep -q`: with pipefail, grep quitting early can fail the pipeline via SIGPIPE.
listening() { [ -n "$(ss -Hltn "sport = :$1")" ]; }

alive() {  # a process that exists and is not a zombie (an unreaped one may linger in containers)
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $state != Z* ]]
}

# --- nodes -----------------------------------------------------------------------------------
node_port() { echo $((PORT + 2 * ($1 - 1))); }
node_cport() { echo $((CONTROLLER_PORT + 2 * ($1 - 1))); }
node_dir() { echo "$RUN_DIR/kafka-$(node_port "$1")"; }
label() { [ "$BROKERS" = 1 ] || echo " node $1"; }  # " node I" in messages, nothing for 1 node
tag() { [ "$BROKERS" = 1 ] || echo "node $1, "; }    # "node I, " in (...), nothing for 1 node

running_pid() {  # prints the pid if node $1's pid file names a live kafka.Kafka process
  local pid
  pid=$(cat "$(node_dir "$1")/kafka.pid" 2>/dev/null) && [ -n "$pid" ] && alive "$pid" \
    && grep -qa 'kafka\.Kafka' "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

bootstrap() {  # 127.0.0.1:p1,127.0.0.1:p2,... of the current layout
  local i out=""
  for ((i = 1; i <= BROKERS; i++)); do out+="${out:+,}127.0.0.1:$(node_port "$i")"; done
  echo "$out"
}

# The JVM with the cached jars and our log4j2 config, logging into node $1's logs/; a main class
# and its args follow. Sets the array JVM: the broker's, or with $2=tool a small one for a
# command that runs for seconds (C1 JIT only, serial GC: less CPU at start).
jvm_for() {
  local logs opts
  logs=$(node_dir "$1")/logs
  if [ "${2:-}" = tool ]; then
    opts=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1)
  else
    opts=("${HEAP_OPTS[@]}" "${JVM_OPTS[@]}" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20)
  fi
  JVM=("$JAVA" "${opts[@]}" -XX:+ExitOnOutOfMemoryError -XX:ErrorFile="$logs/hs_err_%p.log"
    -Djava.awt.headless=true -Dkafka.logs.dir="$logs"
    -Dlog4j2.configurationFile="$KAFKA_DEPLOY_DIR/log4j2.properties" -cp "$KAFKA_LIBS/*")
}

# Byte offsets of each node's two log files when this start began: only what this run wrote
# counts, both for "started" and for the tail shown on failure (the files are appended to).
declare -A LOG_OFF OUT_OFF
size() { stat -c %s "$1" 2>/dev/null || echo 0; }
# What file $1 got since it was $2 bytes long. log4j rolls server.log over at 50 MB (to
# server.log.1): when it is now shorter than that, the start's lines are in both files.
since_start() {
  if [ "$(size "$1")" -lt "$2" ]; then
    tail -c +"$(($2 + 1))" "$1.1" 2>/dev/null || true
    cat "$1" 2>/dev/null || true
  else
    tail -c +"$(($2 + 1))" "$1" 2>/dev/null || true
  fi
}

log_tail() {
  local logs
  logs=$(node_dir "$1")/logs
  echo "---- $logs/server.log (this run, last lines):" >&2
  since_start "$logs/server.log" "${LOG_OFF[$1]:-0}" | tail -n 20 >&2
  echo "---- $logs/kafka.out (this run, last lines):" >&2
  since_start "$logs/kafka.out" "${OUT_OFF[$1]:-0}" | tail -n 20 >&2
}

# --- layout (cluster.env): how node 1's data was formatted ------------------------------------
# Sets REC_BROKERS/REC_SECURE; empty when nothing is formatted. Data formatted by
# the single-node script of before (no cluster.env) counts as 1 plain node.
load_layout() {
  REC_BROKERS="" REC_SECURE=""
  if [ -f "$LAYOUT_FILE" ]; then
    REC_BROKERS=$(sed -n 's/^BROKERS=//p' "$LAYOUT_FILE")
    REC_SECURE=$(sed -n 's/^SECURE=//p' "$LAYOUT_FILE")
  elif [ -f "$CLUSTER_DIR/data/meta.properties" ]; then
    REC_BROKERS=1 REC_SECURE=0
  fi
}

use_recorded_layout() {  # for the commands that act on what `start` made
  load_layout
  BROKERS=${REC_BROKERS:-1} SECURE=${REC_SECURE:-0}
}

write_config() {  # node $1's server.properties, from the layout in BROKERS/SECURE
  local i=$1 dir voters="" j rf isr
  dir=$(node_dir "$i")
  for ((j = 1; j <= BROKERS; j++)); do voters+="${voters:+,}$j@127.0.0.1:$(node_cport "$j")"; done
  rf=$((BROKERS < 3 ? BROKERS : 3))
  isr=$((BROKERS < 3 ? 1 : 2))
  # secure: it holds the brokers' SCRAM password, so owner-only before anything is written
  [ "$SECURE" = 0 ] || install -m 600 /dev/null "$dir/server.properties"
  {
    cat <<EOF
# Generated by deploy/kafka/kafka.sh on each start; edit the script, not this file.
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
EOF
    if [ "$SECURE" = 1 ]; then
      secure_listeners "$(node_port "$i")" "$(node_cport "$i")"
    else
      cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$(node_port "$i"),CONTROLLER://127.0.0.1:$(node_cport "$i")
advertised.listeners=PLAINTEXT://127.0.0.1:$(node_port "$i")
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
EOF
    fi
    echo "log.dirs=$dir/data"
    echo
    if [ "$BROKERS" = 1 ]; then
      echo "# One node: every internal topic has a single replica."
    else
      cat <<EOF
# $BROKERS nodes: internal topics (and topics created without an explicit factor) get $rf
# replicas; acks=all needs $isr in sync, so one node can be down without refusing writes.
EOF
    fi
    cat <<EOF
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr

num.partitions=1
auto.create.topics.enable=true
# Tests join consumer groups constantly; don't wait 3 s for more members.
group.initial.rebalance.delay.ms=0

# A dev broker: keep a day of data, in 64 MB segments so retention can drop old data early.
log.retention.hours=24
log.segment.bytes=67108864
log.retention.check.interval.ms=300000
EOF
    if [ "$BROKERS" -gt 1 ]; then
      cat <<EOF

# Fault tests kill nodes: fence a silent broker (and move its leaderships, shrink its ISRs)
# after 6 s instead of 9 s.
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1500
# The group and transaction coordinators' topics: 8 partitions, not 50 (x $rf replicas each), so
# that the first consumer group or transaction does not wait for 150 replicas to be created.
offsets.topic.num.partitions=8
transaction.state.log.num.partitions=8
EOF
    fi
  } >"$dir/server.properties"
}

source "$KAFKA_DEPLOY_DIR/secure.sh"

new_cluster_id() {
  # Same shape as `kafka-storage.sh random-uuid` (16 random bytes, base64url, unpadded) without
  # a JVM start; a leading '-' would be parsed as an option, so draw again.
  local id=-
  while [[ $id == -* ]]; do id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22); done
  echo "$id"
}

format_nodes() {  # every node of the layout, one cluster id, in parallel (a JVM each)
  local cluster_id i pids=() scram=() failed=0
  cluster_id=$(new_cluster_id)
  [ "$SECURE" = 0 ] || read -r -a scram <<<"$(scram_format_args)"
  for ((i = 1; i <= BROKERS; i++)); do
    jvm_for "$i" tool
    # The tool prints the bootstrap records, SCRAM salts and keys included: not into the log.
    (
      "${JVM[@]}" kafka.tools.StorageTool format -t "$cluster_id" \
        -c "$(node_dir "$i")/server.properties" "${scram[@]}" 2>&1 \
        | sed '/^Bootstrap metadata:/d' >>"$(node_dir "$i")/logs/kafka.out"
    ) &
    pids+=($!)
  done
  for ((i = 1; i <= BROKERS; i++)); do
    wait "${pids[$((i - 1))]}" || { log "storage format of node $i failed"; log_tail "$i"; failed=1; }
  done
  [ "$failed" = 0 ] || exit 1
  printf 'BROKERS=%s\nSECURE=%s\nCLUSTER_ID=%s\n' "$BROKERS" "$SECURE" "$cluster_id" >"$LAYOUT_FILE"
  if [ "$BROKERS" = 1 ]; then
    log "formatted $CLUSTER_DIR/data (cluster id $cluster_id)"
  else
    log "formatted $BROKERS nodes (cluster id $cluster_id)"
  fi
}

launch() {  # node $1, in the background; its readiness is wait_ready's job
  local i=$1 dir
  dir=$(node_dir "$i")
  mkdir -p "$dir/data" "$dir/logs"
  rm -f "$dir/kafka.pid"
  LOG_OFF[$i]=$(size "$dir/logs/server.log") OUT_OFF[$i]=$(size "$dir/logs/kafka.out")
  write_config "$i"
  jvm_for "$i"
  # setsid: own session, so the broker outlives this shell and its terminal; the child writes
  # its own pid before exec'ing java, so the pid file is right even if setsid had to fork.
  setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$dir/kafka.pid" \
    "${JVM[@]}" kafka.Kafka "$dir/server.properties" >>"$dir/logs/kafka.out" 2>&1 </dev/null &
}

wait_ready() {  # the nodes given as args; on a failure stops them all and exits
  local t0=$SECONDS pending=("$@") left i pid dir
  while ((${#pending[@]})); do
    sleep 0.5
    left=()
    for i in "${pending[@]}"; do
      dir=$(node_dir "$i")
      pid=$(cat "$dir/kafka.pid" 2>/dev/null || true)
      if [ -n "$pid" ] && ! alive "$pid"; then
        log "broker$(label "$i") exited during startup"; log_tail "$i"; rm -f "$dir/kafka.pid"
        stop_nodes "$@" >/dev/null 2>&1 || true
        exit 1
      fi
      # Ready = the broker port accepts connections AND this run logged "Kafka Server started".
      # (`grep >/dev/null`, not -q: see listening().)
      if listening "$(node_port "$i")" && since_start "$dir/logs/server.log" "${LOG_OFF[$i]}" \
          | grep -F 'Kafka Server started' >/dev/null; then
        log "started in $((SECONDS - t0)) s ($(tag "$i")pid $pid, logs in $dir/logs)"
      else
        left+=("$i")
      fi
    done
    pending=("${left[@]}")
    if ((${#pending[@]})) && ((SECONDS - t0 >= START_TIMEOUT)); then
      log "not ready after ${START_TIMEOUT} s: node(s) ${pending[*]}; stopping"
      for i in "${pending[@]}"; do log_tail "$i"; done
      stop_nodes "$@" >/dev/null 2>&1 || true
      exit 1
    fi
  done
}

ready_line() {
  if [ "$SECURE" = 1 ]; then
    echo "kafka ready on $(bootstrap) (SASL_SSL; client settings: $0 client-env USER)"
  else
    echo "kafka ready on $(bootstrap)"
  fi
}

start() {
  local clean=${INFERSTREAM_KAFKA_CLEAN:-0} want_brokers=${INFERSTREAM_KAFKA_BROKERS:-}
  local want_secure=${INFERSTREAM_KAFKA_SECURE:-} i n p pid todo=()
  while (($#)); do
    case $1 in
      --clean) clean=1 ;;
      --secure) want_secure=1 ;;
      --brokers) [ $# -ge 2 ] || die "--brokers needs a number"; want_brokers=$2; shift ;;
      --brokers=*) want_brokers=${1#--brokers=} ;;
      *) die "start: unknown option $1" ;;
    esac
    shift
  done
  [[ -z $want_brokers || ($want_brokers =~ ^[1-9]$ && $want_brokers -le $MAX_BROKERS) ]] \
    || die "--brokers must be 1..$MAX_BROKERS"
  [[ -z $want_secure || $want_secure =~ ^[01]$ ]] || die "INFERSTREAM_KAFKA_SECURE must be 0 or 1"

  load_layout
  if [ "$clean" = 1 ]; then
    BROKERS=${want_brokers:-1} SECURE=${want_secure:-0}
  else
    BROKERS=${want_brokers:-${REC_BROKERS:-1}} SECURE=${want_secure:-${REC_SECURE:-0}}
    if [ -n "$REC_BROKERS" ] && [ "$BROKERS/$SECURE" != "$REC_BROKERS/$REC_SECURE" ]; then
      die "the data in $CLUSTER_DIR was formatted for $REC_BROKERS node(s), secure=$REC_SECURE; \
start with --clean to wipe it for $BROKERS node(s), secure=$SECURE"
    fi
  fi
  check_ports

  n=$((BROKERS > ${REC_BROKERS:-1} ? BROKERS : ${REC_BROKERS:-1}))
  for ((i = 1; i <= n; i++)); do
    if pid=$(running_pid "$i"); then
      [ "$clean" = 1 ] && die "running ($(tag "$i")pid $pid): stop it before --clean"
    elif ((i <= BROKERS)); then
      todo+=("$i")
    fi
  done
  if ((${#todo[@]} == 0)); then
    if [ "$BROKERS" = 1 ]; then
      echo "kafka already running on 127.0.0.1:$PORT (pid $(running_pid 1))"
    else
      echo "kafka already running on $(bootstrap)"
    fi
    exit 0
  fi
  for i in "${todo[@]}"; do
    for p in "$(node_port "$i")" "$(node_cport "$i")"; do
      listening "$p" && die "port $p is already in use by another process (not this broker)"
    done
  done

  bash "$KAFKA_DEPLOY_DIR/fetch.sh"
  if [ "$clean" = 1 ]; then
    for ((i = 1; i <= n; i++)); do
      [ ! -d "$(node_dir "$i")/data" ] || { log "wiping $(node_dir "$i")/data"; rm -rf "$(node_dir "$i")/data"; }
    done
    rm -rf "$SECRETS" "$LAYOUT_FILE"
    load_layout
  fi
  for ((i = 1; i <= BROKERS; i++)); do mkdir -p "$(node_dir "$i")/data" "$(node_dir "$i")/logs"; done
  [ "$SECURE" = 0 ] || ensure_secrets

  if [ -z "$REC_BROKERS" ]; then  # nothing formatted yet: format every node, once
    for ((i = 1; i <= BROKERS; i++)); do
      [ ! -f "$(node_dir "$i")/data/meta.properties" ] \
        || die "$(node_dir "$i")/data belongs to another cluster; start with --clean"
      write_config "$i"
      LOG_OFF[$i]=$(size "$(node_dir "$i")/logs/server.log")
      OUT_OFF[$i]=$(size "$(node_dir "$i")/logs/kafka.out")
    done
    format_nodes
  fi
  for i in "${todo[@]}"; do
    [ -f "$(node_dir "$i")/data/meta.properties" ] \
      || die "node $i has no data while the others do (a voter must keep its log): use --clean"
  done
  for i in "${todo[@]}"; do launch "$i"; done
  wait_ready "${todo[@]}"
  ready_line
}

check_ports() {  # every port of the layout distinct (a moved controller port could overlap)
  local i seen=" " p
  for ((i = 1; i <= BROKERS; i++)); do
    for p in "$(node_port "$i")" "$(node_cport "$i")"; do
      [[ $seen == *" $p "* ]] && die "port $p would serve two listeners: move INFERSTREAM_KAFKA_CONTROLLER_PORT"
      seen+="$p "
    done
  done
}

# SIGTERM the given nodes together (SIGKILL after a grace; at once with STOP_SIGNAL=KILL); returns
# 1 if a port stays busy.
STOP_SIGNAL=TERM
stop_nodes() {
  local i pid pids=() nodes=() k
  for i in "$@"; do
    if pid=$(running_pid "$i"); then
      kill "-$STOP_SIGNAL" "$pid"; pids+=("$pid"); nodes+=("$i")
    else
      rm -f "$(node_dir "$i")/kafka.pid"
      log "not running on 127.0.0.1:$(node_port "$i")"
    fi
  done
  for ((k = 0; k < 40; k++)); do  # ~20 s grace for all of them
    any_alive "${pids[@]}" || break
    sleep 0.5
  done
  for pid in "${pids[@]}"; do
    if alive "$pid"; then
      log "pid $pid ignored SIGTERM for 20 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  local rc=0 verb=stopped
  [ "$STOP_SIGNAL" = TERM ] || verb=killed
  for k in "${!pids[@]}"; do
    if wait_gone "${nodes[$k]}" "${pids[$k]}"; then
      log "$verb$(label "${nodes[$k]}") (pid ${pids[$k]})"
    else
      rc=1
    fi
  done
  return $rc
}

any_alive() {
  local pid
  for pid in "$@"; do alive "$pid" && return 0; done
  return 1
}

wait_gone() {  # node $1 whose process was pid $2: wait for the process and its ports to go
  local i=$1 pid=$2 port cport k
  port=$(node_port "$i") cport=$(node_cport "$i")
  for ((k = 0; k < 20; k++)); do alive "$pid" || break; sleep 0.25; done
  for ((k = 0; k < 20; k++)); do  # the sockets can outlive the process by a moment
    listening "$port" || listening "$cport" || break
    sleep 0.25
  done
  if alive "$pid" || listening "$port" || listening "$cport"; then
    log "pid $pid or ports $port/$cport still in use after stop"
    return 1
  fi
  rm -f "$(node_dir "$i")/kafka.pid"
}

stop() {  # [--kill]: SIGKILL, no controlled shutdown (a throwaway test cluster)
  local i nodes=()
  case ${1:-} in
    "") ;;
    --kill) STOP_SIGNAL=KILL ;;
    *) die "stop: unknown option $1" ;;
  esac
  use_recorded_layout
  for ((i = 1; i <= BROKERS; i++)); do nodes+=("$i"); done
  stop_nodes "${nodes[@]}" || exit 1
}

status() {
  local i pid rc=0 what=""
  use_recorded_layout
  [ "$SECURE" = 0 ] || what=", SASL_SSL"
  for ((i = 1; i <= BROKERS; i++)); do
    local where="127.0.0.1:$(node_port "$i")" node=""
    [ "$BROKERS" = 1 ] || node="node $i of $BROKERS, "
    if pid=$(running_pid "$i"); then
      if [ "$BROKERS/$SECURE" = 1/0 ]; then
        echo "kafka running on $where (pid $pid)"
      else
        echo "kafka running on $where (${node}pid $pid$what)"
      fi
    else
      echo "kafka not running on $where${node:+ ($node}${node:+down)}"
      rc=1
    fi
  done
  return $rc
}

node_arg() {  # validates a node number against the recorded layout
  use_recorded_layout
  [[ ${1:-} =~ ^[1-9]$ ]] && (($1 <= BROKERS)) || die "node must be 1..$BROKERS"
}

kill_broker() {  # a crash: SIGKILL, no controlled shutdown
  local i=$1 pid
  pid=$(running_pid "$i") || { log "node $i is not running"; return 0; }
  kill -KILL "$pid"
  wait_gone "$i" "$pid" || exit 1
  log "killed node $i (pid $pid)"
}

start_broker() {
  local i=$1 pid
  if pid=$(running_pid "$i"); then echo "node $i already running (pid $pid)"; return 0; fi
  [ -f "$(node_dir "$i")/data/meta.properties" ] || die "node $i has no data: use start --clean"
  for p in "$(node_port "$i")" "$(node_cport "$i")"; do
    listening "$p" && die "port $p is already in use by another process (not this broker)"
  done
  launch "$i"
  wait_ready "$i"
  echo "kafka node $i ready on 127.0.0.1:$(node_port "$i")"
}

usage() {
  echo "usage: $0 start [--brokers N] [--secure] [--clean] | stop [--kill] | status | fetch" >&2
  echo "       $0 kill-broker I | start-broker I" >&2
  echo "       $0 add-user NAME | client-env USER | acl USER [--topic T] [--topic-prefix P]" \
    "[--group G] [--group-prefix P] [--txn-prefix P] [--allow-create]" >&2
  exit 2
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  status) status ;;
  fetch) exec bash "$KAFKA_DEPLOY_DIR/fetch.sh" ;;
  kill-broker) node_arg "${2:-}"; kill_broker "$2" ;;
  start-broker) node_arg "${2:-}"; start_broker "$2" ;;
  add-user) shift; use_recorded_layout; add_user "$@" ;;
  acl) shift; use_recorded_layout; add_acls "$@" ;;
  client-env) shift; use_recorded_layout; client_env "$@" ;;
  *) usage ;;
esac
