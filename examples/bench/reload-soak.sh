#!/usr/bin/env bash
# Reloads under load, and many reloads, on loopback: what a SIGHUP costs.
#
#   bash examples/bench/reload-soak.sh        # about 75 seconds
#   TUNNELS=200 HUPS=20 SOAK=300 LOAD=20s bash examples/bench/reload-soak.sh
#   BIN=/tmp/old/wssproxy bash examples/bench/reload-soak.sh   # another build
#
# 1. wssproxy (a route to two echo backends with least_conn and active
#    checks, and a plain-HTTP route) carries $TUNNELS tunnels, each sending
#    32-byte messages and waiting for their echo without pause (wsload -mode
#    rtt), while it is sent $HUPS SIGHUPs, each after the previous one's
#    "configuration reloaded" line. Reported: tunnels dropped (wsload's
#    errors; tunnels the proxy ended before the clients closed), messages
#    lost (client-to-backend against backend-to-client, from the proxy's
#    byte counters), and the heap after GC (go_gc_heap_live_bytes) before
#    and after.
# 2. A fresh wssproxy with the same configuration is sent $SOAK SIGHUPs the
#    same way: RSS, heap after GC, goroutines and open files before and
#    after.
#
# Nothing forces a GC from outside, so "after GC" is read once two more GC
# cycles have run; when the proxy is idle, scraping /metrics (which
# allocates) brings them. Every process is started here, on 127.0.0.1, and
# stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
export GOTOOLCHAIN="${GOTOOLCHAIN_WANT:-go1.27.3}"
TUNNELS=${TUNNELS:-1000}
HUPS=${HUPS:-100}
SOAK=${SOAK:-2000}
LOAD=${LOAD:-60s} # how long wsload runs: long enough for the SIGHUPs
ulimit -n "$(ulimit -Hn)" # 2 files per tunnel in the proxy

dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
go build -o "$dir/wssproxy" ./cmd/wssproxy
go build -o "$dir/wsload" ./cmd/wsload
go build -o "$dir/echo" ./examples/echo
bin=${BIN:-$dir/wssproxy}

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
e1=127.0.0.1:$(freeport)
e2=127.0.0.1:$(freeport)
"$dir/echo" -listen "$e1" 2>/dev/null & pids+=($!)
"$dir/echo" -listen "$e2" 2>/dev/null & pids+=($!)
cat >"$dir/wssproxy.toml" <<EOF
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[[route]]
path = "/wss"
backends = ["ws://$e1", "ws://$e2"]
balance = "least_conn"
health_interval = "2s"
[[route]]
path = "/"
backend = "http://$e1"
EOF

# metric NAME: the sum of NAME's series on the admin endpoint; NAME may
# end in a label prefix, as in 'x_total{route="a"'.
metric() {
  curl -fsS "http://$admin/metrics" | awk -v n="$1" '
    $1 == n || index($1, n "{") == 1 || (n ~ /[{]/ && index($1, n) == 1) { s += $NF }
    END { printf "%.0f\n", s }'
}
# waitgc: until two more GC cycles have run.
waitgc() {
  local want=$(($(metric go_gc_duration_seconds_count) + 2)) until=$((SECONDS + 150))
  while [ "$(metric go_gc_duration_seconds_count)" -lt "$want" ]; do
    [ $SECONDS -lt $until ] || { echo "no GC cycle in 150 s" >&2; exit 1; }
  done
}
reloaded() { grep -c 'msg="configuration reloaded"' "$log" || true; }
# hup N: N SIGHUPs, each after the previous one's reload line.
hup() {
  local done=$(reloaded) i
  for ((i = 1; i <= $1; i++)); do
    kill -HUP "$proxy"
    local until=$((SECONDS + 10))
    while [ "$(reloaded)" -lt $((done + i)) ]; do
      [ $SECONDS -lt $until ] || { echo "reload $i: no 'configuration reloaded' line in 10 s" >&2; exit 1; }
      sleep 0.005
    done
  done
}
start() {
  log=$dir/$1.log
  "$bin" -config "$dir/wssproxy.toml" 2>"$log" & proxy=$!
  pids+=($proxy)
  local until=$((SECONDS + 10))
  until grep -q 'msg="admin listening"' "$log"; do
    [ $SECONDS -lt $until ] || { cat "$log" >&2; exit 1; }
    sleep 0.05
  done
  addr=$(grep -m1 'msg=listening' "$log" | sed 's/.*addr=\([^ ]*\).*/\1/')
  admin=$(grep -m1 'msg="admin listening"' "$log" | sed 's/.*addr=\([^ ]*\).*/\1/')
}
stop() { kill -TERM "$proxy"; wait "$proxy" || true; }
kib() { echo $(($1 / 1024)); }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
snapshot() { # label
  waitgc
  printf '%-28s heap after GC %6d KiB, heap in use %6d KiB, RSS %6d KiB, goroutines %5d, open files %5d\n' "$1" \
    "$(kib "$(metric go_gc_heap_live_bytes)")" "$(kib "$(metric go_memstats_heap_inuse_bytes)")" \
    "$(kib "$(metric process_resident_memory_bytes)")" "$(metric go_goroutines)" "$(metric process_open_fds)"
}

what=$bin
[ -n "${BIN:-}" ] || what="wssproxy at $(git rev-parse --short HEAD)$(git diff --quiet || echo ' with changes')"
echo "$what, $(go version | cut -d' ' -f3), $(nproc) cores"
echo "== $HUPS SIGHUPs under $TUNNELS busy tunnels"
start busy
"$dir/wsload" -mode rtt -url "wss://$addr/wss" -insecure -c "$TUNNELS" -size 32 -warmup 1s -d "$LOAD" >"$dir/wsload.json" 2>&1 & load=$!
pids+=($load)
until=$((SECONDS + 60))
while [ "$(metric wssproxy_tunnels_open)" -lt "$TUNNELS" ]; do
  [ $SECONDS -lt $until ] || { echo "tunnels did not open" >&2; exit 1; }
  sleep 0.1
done
snapshot "before, tunnels open:"
t0=$EPOCHREALTIME
hup "$HUPS"
echo "$HUPS reloads in $(elapsed "$t0") s; tunnels open $(metric wssproxy_tunnels_open), ended $(metric wssproxy_tunnels_ended_total), reloads $(metric 'wssproxy_config_reloads_total')"
snapshot "after $HUPS reloads:"
wait "$load" || { cat "$dir/wsload.json" >&2; exit 1; }
cat "$dir/wsload.json"
in=$(metric 'wssproxy_tunnel_bytes_total{direction="in"')
out=$(metric 'wssproxy_tunnel_bytes_total{direction="out"')
# 32-byte messages: 38 bytes masked from the client, 34 from the backend;
# each tunnel ends with the client's close (8 bytes) and the backend's (4).
echo "tunnels ended: $(curl -fsS "http://$admin/metrics" | grep '^wssproxy_tunnels_ended_total' | tr '\n' ' ')"
echo "messages client->backend $(((in - 8 * TUNNELS) / 38)) (remainder $(((in - 8 * TUNNELS) % 38))), backend->client $(((out - 4 * TUNNELS) / 34)) (remainder $(((out - 4 * TUNNELS) % 34)))"
stop

echo "== $SOAK SIGHUPs in a row"
start soak
hup 20 # past one-time work
snapshot "before:"
t0=$EPOCHREALTIME
hup "$SOAK"
echo "$SOAK reloads in $(elapsed "$t0") s"
snapshot "after $SOAK reloads:"
stop
