# Sourced by scripts/bench-gateway.sh, replicas.sh and soak.sh: the
# processes they start on loopback, and how they stop them. Expects $OUT
# (where each process NAME logs to $OUT/NAME.log).

say() { printf '== %s\n' "$*" >&2; }

# stop PID...: SIGTERM, half a second's grace, then SIGKILL.
stop() {
    local pid
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT NAME PID: until 127.0.0.1:PORT accepts (20 s at most).
wait_port() {
    local port=$1 name=$2 pid=$3 i
    for ((i = 0; i < 80; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { echo "$name exited:" >&2; tail -n 20 "$OUT/$name.log" >&2; exit 1; }
        sleep 0.25
    done
    echo "$name did not listen on $port within 20 s" >&2
    exit 1
}
