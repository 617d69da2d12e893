#!/usr/bin/env bash
# Attribution cost, in one run: connection setup rate with attribution on vs off (TLS 1.3 full
# handshakes, then plain TCP accepts), the ratio, and the BPF run time per connection
# (bpf_enable_stats(BPF_STATS_RUN_TIME), run_time_ns/run_cnt from bpf_obj_get_info_by_fd).
# Target: <= 3% slower with attribution on (TLS). Needs root (loads BPF).
#   CONNECTIONS=2000 ROUNDS=6 BUILD_DIR=build tests/bench/attribution_bench.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build}
if [ "$(id -u)" -ne 0 ]; then
  echo "attribution_bench: needs root (loads and attaches the BPF program)" >&2
  exit 1
fi
cmake --build "$build" --target attribution_bench -j2 >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A throwaway P-256 certificate, like the one `kscribe init` makes for the proxy.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

echo "== TLS connection setup (TCP connect + TLS 1.3 handshake), attribution on vs off"
"$build/tests/attribution_bench" --connections "${CONNECTIONS:-2000}" --rounds "${ROUNDS:-6}" \
  --cert "$work/cert.pem" --key "$work/key.pem"
echo
echo "== plain TCP connect/accept (the worst case: nothing else to amortise the BPF cost)"
"$build/tests/attribution_bench" --connections "${CONNECTIONS:-2000}" --rounds "${ROUNDS:-6}"
