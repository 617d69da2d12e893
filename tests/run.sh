#!/usr/bin/env bash
# The test command (README, and .ci/run): installs what is missing, builds, checks formatting,
# runs every test (root-only ones too when run as root; they skip with a message otherwise), then
# builds with ASan+UBSan and runs the unit tests under it.
#   KSCRIBE_SKIP_ASAN=1  skip the sanitizer build (quicker local runs)
#   KSCRIBE_TEST_REGEX=X run only tests matching X (ctest -R)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=${KSCRIBE_JOBS:-2}
start=$(date +%s)
step() { printf '\n==> %s (%ss)\n' "$*" "$(($(date +%s) - start))"; }

step "install dependencies"
bash deploy/install-deps.sh

step "check formatting"
mapfile -t sources < <(git ls-files '*.cc' '*.h' '*.c' | grep -v -e 'vmlinux\.h$' -e '\.skel\.h$')
if [ ${#sources[@]} -gt 0 ]; then
  clang-format --dry-run -Werror "${sources[@]}"
fi

step "build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"

step "test"
ctest_args=(--test-dir build --output-on-failure --timeout 900)
[ -n "${KSCRIBE_TEST_REGEX:-}" ] && ctest_args+=(-R "$KSCRIBE_TEST_REGEX")
if [ "$(id -u)" -ne 0 ]; then
  echo "note: not root: tests labelled 'root' (BPF, cgroups, network namespaces) will skip"
fi
ctest "${ctest_args[@]}"

if [ -z "${KSCRIBE_SKIP_ASAN:-}" ]; then
  step "unit tests under ASan+UBSan"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKSCRIBE_SANITIZE=ON >/dev/null
  mapfile -t unit_targets < <(cmake --build build-asan --target help | sed -n 's/^\.\.\. \([a-z]*_plain_tests\)$/\1/p')
  cmake --build build-asan -j"$jobs" --target kscribe "${unit_targets[@]}"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -L unit
fi
step "done in $(($(date +%s) - start))s"
