#!/usr/bin/env bash
# Installs the benchmark's optional tools from Debian: nginx (a TLS reverse proxy to compare
# against) and wrk (the load generator). bench/run.py works without them — it falls back to a
# Python load generator and skips nginx — so this script is never part of `make test`.
# Does nothing when both are present; needs root (or sudo) only when something is missing.
set -eu
need=()
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "bench-deps: missing ${need[*]}; install them with your package manager (optional)" >&2
    exit 1
fi
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
# nginx-light was folded into plain nginx in newer Debian releases; take whichever exists.
if [[ " ${need[*]} " == *" nginx-light "* ]] && ! apt-cache show nginx-light >/dev/null 2>&1; then
    need=("${need[@]/nginx-light/nginx}")
fi
# The benchmark starts its own nginx with its own config; keep the package from starting the
# system service (port 80) during installation.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
