#!/usr/bin/env bash
# wssproxy side by side with nginx and HAProxy from Debian's packages, in one
# run on this machine: round trips, throughput, handshakes and idle tunnels,
# with each proxy's CPU per unit of work and RSS per idle tunnel.
#
#   bash examples/bench/compare.sh            # about 6 minutes
#   bash examples/bench/compare.sh -rounds 5 -idle 5000 -hold 20s
#
# It installs nginx and haproxy if they are missing (apt-get, as root),
# builds wssproxy, wsload and the echo backend, and runs examples/bench,
# which starts every process on 127.0.0.1 and stops each by its PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
export GOTOOLCHAIN="${GOTOOLCHAIN_WANT:-go1.27.3}" # go.mod says go 1.27.3; the go command fetches it from the module proxy

need=()
command -v nginx >/dev/null || need+=(nginx)
command -v haproxy >/dev/null || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  # Debian starts a freshly installed nginx on :80 where an init system runs;
  # a policy-rc.d that says no keeps the packages from starting anything.
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
echo "$(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(go version | cut -d' ' -f3), $(nproc) cores" >&2
"$bin/bench" -bin "$bin" "$@"
