#!/usr/bin/env bash
# Installs the Debian packages the tests drive for real (openssl s_client, curl, redis-server, chromium for the web-page tests, pebble: a local ACME CA, haproxy: a real TCP balancer).
# Does nothing when they are already present; needs root (or sudo) only when something is missing.
set -eu
need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
{ command -v pebble && command -v pebble-challtestsrv; } >/dev/null 2>&1 || need+=(pebble)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing tools: ${need[*]} — install them with your package manager" >&2
    exit 1
fi
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${need[@]}"
