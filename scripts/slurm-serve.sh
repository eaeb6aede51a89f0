#!/usr/bin/env bash
# A teacher server as a Slurm job that lists itself in a servers file (generate.openai.base_urls_file) while it is up.
#
#   sbatch --gpus=1 --time=24:00:00 scripts/slurm-serve.sh SERVERS_FILE vllm serve MODEL --host 0.0.0.0 --port {port}
#
# The job starts the server command with a free port in place of {port}, waits until it answers GET /health,
# then adds http://HOST:PORT/v1 to SERVERS_FILE; when the server exits, or the job ends (scancel, its time
# limit, a preemption: Slurm sends SIGTERM first), it removes that line again and stops the server. tpt reads
# the file every few seconds, so a server is used within seconds of being listed, and one that leaves gets no
# new request (those in flight fail and are retried on another). A job killed without warning (SIGKILL, a
# node lost) cannot remove its line: tpt sets a server that does not answer aside and probes it now and then.
#
# SERVERS_FILE must be on a filesystem every node sees; every change is a whole new file renamed into place,
# under flock(1) on SERVERS_FILE.lock, so servers starting and stopping together never lose each other's lines.
# HOST is $TPT_SERVE_HOST, else this node's hostname. Needs bash, flock and python3 on the node.
#SBATCH --job-name=tpt-teacher
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 SERVERS_FILE COMMAND... (with {port} where the port goes)" >&2; exit 2; }
FILE=$1
shift
HEALTH_TIMEOUT=${TPT_SERVE_HEALTH_TIMEOUT:-1800}  # seconds a server may take to load its model

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
URL="http://${TPT_SERVE_HOST:-$(hostname)}:$PORT/v1"
COMMAND=()
for arg in "$@"; do COMMAND+=("${arg//\{port\}/$PORT}"); done

rewrite() {  # rewrite SERVERS_FILE whole, under its lock: `rewrite add` or `rewrite remove`
    (
        flock 9
        { [ -f "$FILE" ] && grep -vxF "$URL" "$FILE" || true; [ "$1" = add ] && echo "$URL"; } > "$FILE.tmp.$$"
        mv "$FILE.tmp.$$" "$FILE"
    ) 9>"$FILE.lock"
}

SERVER=
listed=
stop() {
    trap - EXIT TERM INT
    [ -n "$listed" ] && rewrite remove && echo "$(date +%T) removed $URL from $FILE"
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    exit "${1:-0}"
}
trap 'stop $?' EXIT
trap 'stop 143' TERM INT

echo "$(date +%T) starting on $URL: ${COMMAND[*]}"
"${COMMAND[@]}" &
SERVER=$!
deadline=$((SECONDS + HEALTH_TIMEOUT))
answers() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$1" 2>/dev/null; }
until answers "${URL%/v1}/health"; do
    kill -0 "$SERVER" 2>/dev/null || { echo "the server exited before it answered" >&2; SERVER=; stop 1; }
    [ $SECONDS -lt $deadline ] || { echo "no answer at ${URL%/v1}/health within ${HEALTH_TIMEOUT} s" >&2; stop 1; }
    sleep 1
done
rewrite add
listed=1
echo "$(date +%T) listed $URL in $FILE"
wait "$SERVER" || true  # until the server exits, or a signal runs the trap
SERVER=
stop 0
