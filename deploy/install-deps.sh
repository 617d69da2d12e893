#!/usr/bin/env bash
# Installs everything kscribe needs to build, run its demo and run its tests, from Debian's
# package archive only. Idempotent: packages already present are skipped without a network call.
set -euo pipefail

packages=(
  # build
  g++ cmake make pkg-config git ca-certificates
  clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev
  libssl-dev openssl libboost-dev nlohmann-json3-dev libyaml-cpp-dev libyajl-dev libsimdjson-dev libcli11-dev
  libgtest-dev libgmock-dev clang-format libclang-rt-14-dev
  # tests
  python3 python3-pytest python3-jsonschema python3-yaml iproute2 procps
  chromium  # renders the HTML session report in tests (headless)
  # shipping tests: a real single-node OpenStack Swift with s3api, checked with the AWS CLI
  swift swift-proxy swift-object swift-container swift-account awscli
  # benchmarks
  nginx wrk valgrind
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
