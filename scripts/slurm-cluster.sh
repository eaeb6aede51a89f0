#!/usr/bin/env bash
# A live two-node Slurm cluster on this one machine, for the tests and CI (and for trying tpt on Slurm).
#
#   scripts/slurm-cluster.sh start    install slurm-wlm and munge if missing, start munged, slurmctld and the
#                                     slurmd of each node that is not running; wait until every node is idle
#   scripts/slurm-cluster.sh stop     cancel the cluster's jobs, then stop the daemons this script started
#   scripts/slurm-cluster.sh status   exit 0 when the controller answers; print its nodes
#   scripts/slurm-cluster.sh env      the line that points Slurm's commands at this cluster:
#                                     eval "$(scripts/slurm-cluster.sh env)"; sinfo
#   scripts/slurm-cluster.sh kill-node NODE
#                                     a node lost: SIGKILL its slurmd and every process of the jobs running on it
#                                     (`start` brings it back)
#
# Everything the cluster writes (its slurm.conf, state, spool folders, pid files and daemon logs) is under
# $TPT_SLURM_DIR (default /tmp/tpt-slurm); /etc/slurm is left alone, so Slurm's commands need
# SLURM_CONF=$TPT_SLURM_DIR/slurm.conf (what `env` prints). Each node is one slurmd with its own name, port and
# spool folder (n1, n2, ...: $TPT_SLURM_NODES of them, $TPT_SLURM_CPUS CPUs each, half the machine's memory
# between them). Nodes are declared DOWN after $TPT_SLURM_NODE_TIMEOUT seconds without an answer (a real
# cluster's default is 300), and a batch job on a node that died is requeued. Runs as root (or with sudo).
set -euo pipefail

DIR=${TPT_SLURM_DIR:-/tmp/tpt-slurm}
NODES=${TPT_SLURM_NODES:-2}
CPUS=${TPT_SLURM_CPUS:-1}
NODE_TIMEOUT=${TPT_SLURM_NODE_TIMEOUT:-10}
REQUEUE_DELAY=${TPT_SLURM_REQUEUE_DELAY:-10}
CTLD_PORT=${TPT_SLURM_PORT:-6817}  # slurmd ports follow: 17001, 17002, ...
START_TIMEOUT=60
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF
SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)

say() { echo "slurm-cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }
node_names() { seq -f "n%g" 1 "$NODES"; }
running() { [ -r "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat")" != Z ]; }  # a zombie is not running
alive() { [ -f "$1" ] && running "$(cat "$1")"; }

install() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return
    say "installing slurm-wlm and munge (apt-get)"
    $SUDO apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
}

write_conf() {
    local host memory port=17000 node
    host=$(hostname -s)
    memory=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 / 2 / NODES ))  # MB per node
    mkdir -p "$DIR/ctld" "$DIR/log" "$DIR/run"
    {
        echo "# Written by scripts/slurm-cluster.sh: a $NODES-node cluster on $host"
        echo "ClusterName=tpt"
        echo "SlurmctldHost=$host"
        echo "SlurmctldPort=$CTLD_PORT"
        echo "AuthType=auth/munge"
        echo "AuthInfo=cred_expire=$REQUEUE_DELAY"  # also how long a requeued job waits (default 120 s)
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "MpiDefault=none"
        echo "ReturnToService=2"
        echo "SlurmdTimeout=$NODE_TIMEOUT"
        echo "KillWait=5"
        echo "SlurmUser=root"
        echo "SlurmctldPidFile=$DIR/run/slurmctld.pid"
        echo "SlurmdPidFile=$DIR/run/slurmd-%n.pid"
        echo "SlurmdSpoolDir=$DIR/spool/%n"
        echo "StateSaveLocation=$DIR/ctld"
        echo "SlurmctldLogFile=$DIR/log/slurmctld.log"
        echo "SlurmdLogFile=$DIR/log/slurmd-%n.log"
        echo "SchedulerType=sched/backfill"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_Core_Memory"
        for node in $(node_names); do
            port=$((port + 1))
            echo "NodeName=$node NodeHostname=$host Port=$port CPUs=$CPUS RealMemory=$memory State=UNKNOWN"
        done
        echo "PartitionName=debug Nodes=$(node_names | paste -sd,) Default=YES MaxTime=INFINITE State=UP"
    } > "$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
}

start() {
    install
    mkdir -p "$DIR"
    [ -f "$CONF" ] && alive "$DIR/run/slurmctld.pid" || write_conf
    if ! munge -n </dev/null >/dev/null 2>&1; then  # one munged per machine serves every cluster on it
        $SUDO mkdir -p /run/munge /var/lib/munge
        [ -f /etc/munge/munge.key ] || $SUDO mungekey --create >/dev/null
        $SUDO munged --force --log-file="$DIR/log/munged.log"
        touch "$DIR/run/started-munged"
    fi
    alive "$DIR/run/slurmctld.pid" || $SUDO slurmctld -f "$CONF"
    local node
    for node in $(node_names); do
        mkdir -p "$DIR/spool/$node"
        alive "$DIR/run/slurmd-$node.pid" || $SUDO slurmd -f "$CONF" -N "$node"
    done
    local deadline=$((SECONDS + START_TIMEOUT)) states
    until states=$(sinfo -h -N -o "%N %t" 2>/dev/null) && [ "$(grep -cE ' (idle|mix|alloc)$' <<<"$states")" -eq "$NODES" ]; do
        [ $SECONDS -lt $deadline ] || die "nodes not up within ${START_TIMEOUT} s: ${states:-no answer from slurmctld} (logs: $DIR/log/)"
        sleep 0.5
    done
    say "up: $NODES nodes ($(paste -sd' ' <<<"$states")); $(env_line)"
}

stop() {
    if alive "$DIR/run/slurmctld.pid"; then  # the cluster's jobs first: their processes outlive slurmd
        scancel --full --quiet --partition=debug 2>/dev/null || true
        local deadline=$((SECONDS + 30))
        while [ -n "$(squeue -h -o %i 2>/dev/null)" ] && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
    fi
    local pidfile pid
    for pidfile in "$DIR"/run/slurmd-*.pid "$DIR/run/slurmctld.pid"; do
        alive "$pidfile" || continue
        pid=$(cat "$pidfile")
        $SUDO kill "$pid"
        local deadline=$((SECONDS + 15))
        while running "$pid"; do
            [ $SECONDS -lt $deadline ] || { $SUDO kill -9 "$pid" 2>/dev/null || true; break; }
            sleep 0.2
        done
        rm -f "$pidfile"
    done
    if [ -f "$DIR/run/started-munged" ] && [ -f /run/munge/munged.pid ]; then
        $SUDO kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
        rm -f "$DIR/run/started-munged"
    fi
    say "stopped"
}

kill_node() {
    local node=$1 jobs job step pids=()
    alive "$DIR/run/slurmd-$node.pid" || die "node $node is not running"
    jobs=$(squeue -h -w "$node" -t RUNNING,COMPLETING -o %A)
    pids+=("$(cat "$DIR/run/slurmd-$node.pid")")
    for job in $jobs; do  # each step's slurmstepd and what it started
        for step in $(pgrep -f "^slurmstepd: \[$job\."); do pids+=($(tree "$step")); done
    done
    $SUDO kill -9 "${pids[@]}" 2>/dev/null || true
    rm -f "$DIR/run/slurmd-$node.pid"
    say "killed node $node (slurmd and ${#pids[@]} processes of jobs: ${jobs//$'\n'/ })"
}

tree() { local child; echo "$1"; for child in $(pgrep -P "$1"); do tree "$child"; done; }

status() {
    alive "$DIR/run/slurmctld.pid" && sinfo -N -o "%N %t %C %m" 2>/dev/null
}

env_line() { echo "export SLURM_CONF=$CONF"; }

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) env_line ;;
    kill-node) kill_node "${2:?which node}" ;;
    *) echo "usage: $0 start|stop|status|env|kill-node NODE" >&2; exit 2 ;;
esac
