#!/usr/bin/env bash
# wssproxy side by side with nginx, HAProxy and Caddy from Debian's packages,
# in one run on this machine: round trips, throughput, handshakes and idle
# tunnels, with each proxy's CPU per unit of work and RSS per idle tunnel,
# and how CPU per message and RSS per tunnel grow with the connections.
#
#   bash examples/bench/compare.sh            # about 10 minutes on 2 cores
#   bash examples/bench/compare.sh -rounds 5 -hold 20s -out /tmp/bench
#   bash examples/bench/compare.sh -growth=false -peers=false
#
# It installs nginx, haproxy, caddy and gnuplot-nox if they are missing
# (apt-get, as root; nothing is started by the packages), builds wssproxy,
# wsload and the echo backend, and runs examples/bench, which starts every
# process on 127.0.0.1, stops each by its PID (also on Ctrl-C), prints the
# table and the targets, and writes the table, raw results and a PNG plot of
# the growth runs to -out (default ./bench-out, from where you ran this).
set -euo pipefail
here=$PWD
cd "$(dirname "$0")/../.."
export GOTOOLCHAIN="${GOTOOLCHAIN_WANT:-go1.27.3}" # go.mod says go 1.27.3; the go command fetches it from the module proxy

need=()
command -v nginx >/dev/null || need+=(nginx)
command -v haproxy >/dev/null || need+=(haproxy)
command -v caddy >/dev/null || need+=(caddy)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  # Debian starts a freshly installed nginx on :80 (and caddy on :80 and
  # :2019) where an init system runs; a policy-rc.d that says no keeps the
  # packages from starting anything.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ -z "$policy" ] || rm -f "$policy"
fi

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/wssproxy" ./cmd/wssproxy
go build -o "$bin/wsload" ./cmd/wsload
go build -o "$bin/echo" ./examples/echo
go build -o "$bin/bench" ./examples/bench
cd "$here" # so that -out is where the caller expects it
"$bin/bench" -bin "$bin" "$@"
