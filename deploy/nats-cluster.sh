#!/usr/bin/env bash
# A 3-node nats-server JetStream cluster on this machine, loopback only, for trying berth by hand
# against several nodes (DESIGN.md "Several nodes"). The test suites have their own harness
# (test/support/nats-cluster.ts) on free ports and temp dirs; this one is for people.
#
#   deploy/nats-cluster.sh start  [DIR]   start the nodes not yet running; print the URL list
#   deploy/nats-cluster.sh stop   [DIR]   stop them, by the pids in their pid files
#   deploy/nats-cluster.sh status [DIR]   each node's pid, and whether it answers
#
# DIR defaults to /var/lib/berth-cluster; node nX keeps its config, pid file, log and store under
# DIR/nX. Ports: client ports 4231,4232,4233 (BERTH_CLUSTER_PORTS="a,b,c" to change them), route
# port client+1000, monitoring port client+2000. The ports a cluster was started with are kept in
# DIR/ports, so stop and status need no environment.
#
# No auth unless BERTH_CLUSTER_AUTH names a users file (deploy/nats-users.mjs: one daemon user per
# node, client users, an auditor). Everything listens on 127.0.0.1 only.
#
# Environment: BERTH_CLUSTER_PORTS, BERTH_NATS_SERVER (the binary; else the one deploy/setup.sh
# installs, found as src/runtime/nats-server.ts does).
set -euo pipefail

NODES=(n1 n2 n3)
CLUSTER_NAME=berth
READY_TIMEOUT_SEC=${BERTH_CLUSTER_TIMEOUT:-30}

say() { printf '[nats-cluster] %s\n' "$*" >&2; }
die() { printf '[nats-cluster] FAILED: %s\n' "$*" >&2; exit 1; }
usage() { printf 'usage: %s start|stop|status [DIR]\n' "$0" >&2; exit 2; }

(($# >= 1 && $# <= 2)) || usage
CMD=$1
DIR=${2:-/var/lib/berth-cluster}
case $CMD in start | stop | status) ;; *) usage ;; esac
if [[ $CMD == start ]]; then mkdir -p "$DIR"; fi
[[ -d $DIR ]] || die "$DIR does not exist (nothing was started there)"
# Absolute: the configs, pid files and the /proc cmdlines compared with them name it.
DIR=$(cd "$DIR" && pwd)

nats_binary() {
  if [[ -n ${BERTH_NATS_SERVER:-} ]]; then printf '%s' "$BERTH_NATS_SERVER"; return; fi
  local p
  for p in /usr/bin/nats-server /usr/sbin/nats-server /usr/local/bin/nats-server; do
    [[ -x $p ]] && { printf '%s' "$p"; return; }
  done
  command -v nats-server || die "no nats-server binary: run deploy/setup.sh, or set BERTH_NATS_SERVER"
}

# --- ports ------------------------------------------------------------------------------------
PORTS=()
load_ports() {
  local want=${BERTH_CLUSTER_PORTS:-} have=
  [[ -f $DIR/ports ]] && have=$(<"$DIR/ports")
  if [[ $CMD != start ]]; then
    [[ -n $have ]] || die "$DIR/ports is missing: no cluster was started in $DIR"
    want=$have
  elif [[ -z $want ]]; then
    want=${have:-4231,4232,4233}
  elif [[ -n $have && $have != "$want" ]] && any_running; then
    # Different ports would mean new configs under nodes still serving the old ones.
    die "the cluster in $DIR runs on ports $have; stop it first to change them to $want"
  fi
  IFS=, read -r -a PORTS <<<"$want"
  ((${#PORTS[@]} == ${#NODES[@]})) || die "BERTH_CLUSTER_PORTS needs ${#NODES[@]} ports, got '$want'"
  local p
  for p in "${PORTS[@]}"; do
    [[ $p =~ ^[0-9]+$ ]] && ((p >= 1 && p + 2000 <= 65535)) || die "bad port '$p' in '$want'"
  done
}

client_port() { printf '%s' "${PORTS[$1]}"; }
route_port() { printf '%s' "$((PORTS[$1] + 1000))"; }
http_port() { printf '%s' "$((PORTS[$1] + 2000))"; }
urls() {
  local i out=
  for i in "${!NODES[@]}"; do out+="${out:+,}nats://127.0.0.1:$(client_port "$i")"; done
  printf '%s\n' "$out"
}

# --- processes --------------------------------------------------------------------------------
conf_of() { printf '%s' "$DIR/${NODES[$1]}/nats.conf"; }
pidfile_of() { printf '%s' "$DIR/${NODES[$1]}/nats-server.pid"; }

# The pid in node i's pid file, if that process is alive and is a nats-server run with node i's
# config (a stale pid file may name a pid reused by something else).
node_pid() {
  local pf pid
  pf=$(pidfile_of "$1")
  [[ -f $pf ]] || return 1
  pid=$(tr -dc '0-9' <"$pf")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(conf_of "$1")" || return 1
  printf '%s' "$pid"
}

any_running() {
  local i
  [[ -f $DIR/ports ]] || return 1
  IFS=, read -r -a PORTS <"$DIR/ports"
  for i in "${!NODES[@]}"; do node_pid "$i" >/dev/null && return 0; done
  return 1
}

# --- monitoring -------------------------------------------------------------------------------
http_get() {
  if command -v curl >/dev/null; then
    curl -fsS --max-time 2 "$1" 2>/dev/null
  else
    node -e '
      fetch(process.argv[1], { signal: AbortSignal.timeout(2000) })
        .then(async (r) => { if (!r.ok) process.exit(1); process.stdout.write(await r.text()); })
        .catch(() => process.exit(1));
    ' "$1"
  fi
}

now_ms() { local t=${EPOCHREALTIME/./}; printf '%s' "$((t / 1000))"; }

# "LEADER SIZE MEMBERS" from node i's /jsz meta_cluster: the meta leader it sees, the cluster
# size, and (only the leader lists its replicas) name:current:ms-since-heard of each replica,
# comma-separated ("-" for none), e.g. "n1 3 n2:1:120,n3:1:80".
jsz_view() {
  local body leader size reps members
  body=$(http_get "http://127.0.0.1:$(http_port "$1")/jsz" | tr -d ' \n\t') || return 1
  # /jsz without accounts has one "leader", "cluster_size" and "replicas", all in meta_cluster.
  leader=$(grep -o '"leader":"[^"]*"' <<<"$body" | head -n1 | cut -d'"' -f4) || true
  size=$(grep -o '"cluster_size":[0-9]*' <<<"$body" | head -n1 | cut -d: -f2) || true
  reps=$(sed -n 's/.*"replicas":\[\([^]]*\)\].*/\1/p' <<<"$body")
  members=$(sed 's/},{/}\n{/g' <<<"$reps" | while IFS= read -r o; do
    n=$(grep -o '"name":"[^"]*"' <<<"$o" | cut -d'"' -f4) || continue
    a=$(grep -o '"active":[0-9]*' <<<"$o" | cut -d: -f2) || a=0
    if grep -q '"current":true' <<<"$o"; then c=1; else c=0; fi
    printf '%s:%s:%s\n' "$n" "$c" "$((${a:-0} / 1000000))"
  done | paste -sd, -) || true
  printf '%s %s %s\n' "${leader:--}" "${size:-0}" "${members:--}"
}

# One look at every node. Sets ANY_LEADER (1 if any node has a meta leader), LEADER (the node that
# says it leads, unless another names a different one; else empty), READY and MUTE (indexes of the
# nodes that leader has not heard from since this script started them, or ever).
#
# Ready: every node sees the same meta leader, and the leader has a current replica on each other
# node that it has heard from since that node started (right after a kill -9 it still shows the
# dead one current). Its cluster_size is not checked: after a cure (below) it may stay at 2 with
# all three members, for good; the quorum is 2 either way.
#
# Mute: nats-server 2.10.27 now and then starts with raft messages that never leave it: it follows
# the leaders (their appends arrive) but its answers, votes and catch-up requests are sent on no
# route, while its other traffic is. After a cold start (about one in ten here) the meta group
# settles one node short; after a restart the node's stream replicas never catch up. A restart of
# that server cures it. The same fault on two nodes at a cold start leaves no one to elect a
# leader: then all of them are restarted. Ready here is not yet "a stream of 3 replicas can be
# placed": the leader may lack a peer's stats for a second more (the test harness waits for that).
STARTED_MS=(0 0 0)
look() {
  local i l s m leader= members= ok=1 now entry cur ago views=()
  LEADER= READY=0 MUTE=() ANY_LEADER=0
  for i in "${!NODES[@]}"; do
    read -r l s m < <(jsz_view "$i") || l=- s=0 m=-
    views[i]="$l $s"
    [[ $l == - ]] || ANY_LEADER=1
    # The leader as far as can be told: a node that says it leads.
    if [[ ${NODES[$i]} == "$l" ]]; then leader=$l members=",$m,"; fi
  done
  [[ -n $leader ]] || return 0
  # Nobody may name another; a node that names none may be the one at fault (so not ready yet).
  for i in "${!NODES[@]}"; do
    read -r l s <<<"${views[i]}"
    [[ $l == - || $l == "$leader" ]] || return 0
    [[ $l == "$leader" ]] || ok=0
  done
  LEADER=$leader
  now=$(now_ms)
  for i in "${!NODES[@]}"; do
    [[ ${NODES[$i]} != "$leader" ]] || continue
    entry=$(grep -o ",${NODES[$i]}:[01]:[0-9]*," <<<"$members") || entry=
    IFS=: read -r _ cur ago <<<"${entry//,/}"
    if [[ -z $entry ]] || ((ago >= now - STARTED_MS[i])); then
      MUTE+=("$i")
      ok=0
    elif ((cur != 1)); then
      ok=0
    fi
  done
  READY=$ok
}

# BERTH_CLUSTER_AUTH: a users file (deploy/nats-users.mjs) every server includes; else no auth.
AUTH_NOTE=
AUTH_INCLUDE=
if [[ -n ${BERTH_CLUSTER_AUTH:-} ]]; then
  [[ -f $BERTH_CLUSTER_AUTH ]] || die "BERTH_CLUSTER_AUTH=$BERTH_CLUSTER_AUTH is not a file"
  # nats-server resolves an include relative to the config's dir only: each node gets a copy.
  AUTH_INCLUDE='include "users.conf"'
  AUTH_NOTE=$'\n# Users: one per node, client and auditor (BERTH_CLUSTER_AUTH).'
else
  AUTH_NOTE=$'\n# No auth (set BERTH_CLUSTER_AUTH to a deploy/nats-users.mjs users.conf for users per node).'
fi

write_conf() {
  local i=$1 name=${NODES[$1]} routes= j
  for j in "${!NODES[@]}"; do routes+="${routes:+, }\"nats-route://127.0.0.1:$(route_port "$j")\""; done
  mkdir -p "$DIR/$name/store"
  cat >"$DIR/$name/nats.conf.tmp" <<EOF
# Written by berth deploy/nats-cluster.sh. Loopback only.${AUTH_NOTE}
server_name: "$name"
listen: "127.0.0.1:$(client_port "$i")"
http: "127.0.0.1:$(http_port "$i")"
pid_file: "$(pidfile_of "$i")"
log_file: "$DIR/$name/nats-server.log"
max_payload: 1048576
jetstream {
  store_dir: "$DIR/$name/store"
}
cluster {
  name: "$CLUSTER_NAME"
  listen: "127.0.0.1:$(route_port "$i")"
  # The full list, itself included (a server skips the route to itself): any node can start first.
  routes: [ $routes ]
}
${AUTH_INCLUDE}
EOF
  if [[ -n ${BERTH_CLUSTER_AUTH:-} ]]; then install -m 0600 "$BERTH_CLUSTER_AUTH" "$DIR/$name/users.conf"; fi
  mv "$DIR/$name/nats.conf.tmp" "$(conf_of "$i")"
}

log_tails() {
  local i name view
  for i in "${!NODES[@]}"; do
    view=$(jsz_view "$i" 2>/dev/null) || view="no answer"
    printf '%s /jsz: %s (leader size replica:current:ms-since-heard)\n' "${NODES[$i]}" "$view" >&2
  done
  for i in "${!NODES[@]}"; do
    name=${NODES[$i]}
    printf -- '--- %s (%s) ---\n' "$name" "$DIR/$name/nats-server.log" >&2
    tail -n 15 "$DIR/$name/nats-server.log" >&2 2>/dev/null || true
    [[ -s $DIR/$name/nats-server.out ]] && tail -n 5 "$DIR/$name/nats-server.out" >&2
  done
  return 0
}

# --- commands ---------------------------------------------------------------------------------
start_node() {
  local i=$1
  write_conf "$i"
  rm -f "$(pidfile_of "$i")"
  STARTED_MS[i]=$(now_ms)
  # Its own session, so that it outlives this shell and a Ctrl-C in the terminal; the config's
  # log_file gets everything once it has read the config, nats-server.out what came before.
  # 9>&-: the lock stays with this script, not with the servers.
  setsid "$NATS_BIN" -c "$(conf_of "$i")" </dev/null >>"$DIR/${NODES[$i]}/nats-server.out" 2>&1 9>&- &
}

# SIGTERM, then SIGKILL after 15 s: a JetStream server takes a moment to shut down.
stop_pids() {
  local pid end=$((SECONDS + 15))
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS >= end)); then
        say "pid $pid still running after SIGTERM; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
        break
      fi
      sleep 0.1
    done
  done
}

cmd_start() {
  exec 9>"$DIR/.lock"
  flock -n 9 || die "another nats-cluster.sh is working on $DIR"
  load_ports
  local i pid started=()
  NATS_BIN=$(nats_binary)
  printf '%s\n' "$(IFS=,; echo "${PORTS[*]}")" >"$DIR/ports"
  for i in "${!NODES[@]}"; do
    if pid=$(node_pid "$i"); then
      say "${NODES[$i]}: running (pid $pid)"
      continue
    fi
    start_node "$i"
    started+=("${NODES[$i]}")
  done
  if ((${#started[@]})); then say "started ${started[*]}"; fi
  local end=$((SECONDS + READY_TIMEOUT_SEC)) key mute_key= mute_since=0 heals=0 pids
  local cold=0 leaderless_since
  ((${#started[@]} == ${#NODES[@]})) && cold=1
  leaderless_since=$(now_ms)
  for (( ; ; )); do
    look
    ((READY)) && break
    if ((SECONDS >= end)); then
      log_tails
      die "no agreed meta leader in a cluster of ${#NODES[@]} after ${READY_TIMEOUT_SEC}s (logs above; '$0 stop $DIR' stops what did start)"
    fi
    # 4 s of the same mute nodes before acting: a node just started needs a moment to be heard.
    key=${MUTE[*]:-}
    if [[ $key != "$mute_key" ]]; then mute_key=$key mute_since=$(now_ms); fi
    if [[ -n $key ]] && (($(now_ms) - mute_since >= 4000 && heals < 3)); then
      pids=()
      for i in "${MUTE[@]}"; do
        say "${NODES[$i]} is not heard by meta leader $LEADER; restarting it"
        if pid=$(node_pid "$i"); then pids+=("$pid"); fi
      done
      if ((${#pids[@]})); then stop_pids "${pids[@]}"; fi
      for i in "${MUTE[@]}"; do start_node "$i"; done
      mute_key= heals=$((heals + 1))
    fi
    # At a cold start only: a leader lost later takes up to ~9 s to replace by itself.
    ((ANY_LEADER)) && leaderless_since=$(now_ms)
    if ((cold && $(now_ms) - leaderless_since >= 10000 && heals < 3)); then
      say "no meta leader 10 s after a cold start; restarting all"
      pids=()
      for i in "${!NODES[@]}"; do
        if pid=$(node_pid "$i"); then pids+=("$pid"); fi
      done
      if ((${#pids[@]})); then stop_pids "${pids[@]}"; fi
      for i in "${!NODES[@]}"; do start_node "$i"; done
      leaderless_since=$(now_ms) heals=$((heals + 1))
    fi
    sleep 0.2
  done
  say "ready: meta leader $LEADER"
  urls
}

cmd_stop() {
  load_ports
  local i pid pids=()
  for i in "${!NODES[@]}"; do
    if pid=$(node_pid "$i"); then
      pids+=("$pid")
      say "${NODES[$i]}: stopping (pid $pid)"
    else
      say "${NODES[$i]}: not running"
    fi
  done
  ((${#pids[@]} == 0)) || stop_pids "${pids[@]}"
  for i in "${!NODES[@]}"; do
    if pid=$(node_pid "$i"); then die "${NODES[$i]} (pid $pid) did not stop"; fi
    rm -f "$(pidfile_of "$i")"
  done
  say "stopped"
}

cmd_status() {
  load_ports
  local i pid l s health up=0
  for i in "${!NODES[@]}"; do
    if pid=$(node_pid "$i"); then
      health=$(http_get "http://127.0.0.1:$(http_port "$i")/healthz" | tr -d '\n ' || true)
      if read -r l s _ < <(jsz_view "$i"); then
        printf '%s pid %s nats://127.0.0.1:%s answers: healthz %s, meta leader %s, cluster of %s\n' \
          "${NODES[$i]}" "$pid" "$(client_port "$i")" "${health:-failing}" "$l" "$s"
        up=$((up + 1))
      else
        printf '%s pid %s nats://127.0.0.1:%s does not answer on :%s\n' \
          "${NODES[$i]}" "$pid" "$(client_port "$i")" "$(http_port "$i")"
      fi
    else
      printf '%s not running\n' "${NODES[$i]}"
    fi
  done
  printf 'urls %s\n' "$(urls)"
  ((up == ${#NODES[@]}))
}

"cmd_$CMD"
