#!/usr/bin/env bash
# Builds the R-free C++ core (src/core) with its GoogleTest suite (tests/cpp)
# and runs it twice: a plain build, then under AddressSanitizer +
# UndefinedBehaviorSanitizer. Exits non-zero on any failure; the last line is
# "N passed, N failed" (GoogleTest tests, summed over both runs).
#
#   tools/run-cpp-tests.sh
#
# Environment: MULTIHEAD_PORTABLE=1 builds without the AVX2 kernels
# (-DMH_NO_AVX2_KERNELS, as ./configure does; by default they are compiled
# and chosen at run time, src/core/cpu_dispatch.h; MULTIHEAD_SIMD=portable
# forces the portable path at run time);
# MULTIHEAD_CORE_DIR=<dir> tests the core sources in <dir> instead of src/core;
# JOBS=<n> build jobs (default: number of cores).
#
# On a machine without cmake, make, g++ or libgtest-dev (Debian), installs
# them with apt-get (needs root). Eigen comes from the installed RcppEigen R
# package, else from libeigen3-dev.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
src="$root/tests/cpp"
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
start=$(date +%s)

say() { printf '[run-cpp-tests] %s\n' "$*"; }

# --- Tools -----------------------------------------------------------------
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
if command -v dpkg-query >/dev/null 2>&1; then
  dpkg-query -W -f='${Status}' libgtest-dev 2>/dev/null | grep -q 'install ok installed' ||
    missing+=(libgtest-dev)
elif [ ! -f /usr/include/gtest/gtest.h ]; then
  missing+=(libgtest-dev)
fi
if [ ${#missing[@]} -gt 0 ]; then
  say "missing: ${missing[*]}"
  . "$(dirname "$0")/apt-install.sh"
  apt_install "${missing[@]}"
  rc=$?
  if [ $rc -ne 0 ]; then
    if [ $rc -eq 2 ]; then
      say "install them (Debian: apt-get install -y ${missing[*]}) and run again"
    else
      say "apt-get install failed"
    fi
    echo "0 passed, 1 failed"
    exit 1
  fi
fi

simd=""
if [ "${MULTIHEAD_PORTABLE:-0}" = 1 ]; then
  simd="-DMH_NO_AVX2_KERNELS"
fi
core_dir=${MULTIHEAD_CORE_DIR:-$root/src/core}

passed=0
failed=0

# run <name> <sanitize ON|OFF>: configure, build, ctest; adds to the counts.
run() {
  local name=$1 sanitize=$2 dir="$src/build-$1" t0 log
  t0=$(date +%s)
  log="$dir/run.log"
  say "$name: configure and build in ${dir#$root/} (SIMD flags: ${simd:-none})"
  mkdir -p "$dir"
  if ! cmake -S "$src" -B "$dir" -DMULTIHEAD_SANITIZE="$sanitize" \
         -DMULTIHEAD_SIMD_FLAGS="$simd" -DMULTIHEAD_CORE_DIR="$core_dir" >"$dir/configure.log" 2>&1; then
    cat "$dir/configure.log"
    say "$name: configure FAILED"
    failed=$((failed + 1))
    return
  fi
  if ! cmake --build "$dir" -j "$jobs" >"$dir/build.log" 2>&1; then
    grep -E 'error|Error' -A3 "$dir/build.log" | head -60
    say "$name: build FAILED (full log: ${dir#$root/}/build.log)"
    failed=$((failed + 1))
    return
  fi
  grep -E 'warning:' "$dir/build.log" | sort -u | head -20
  say "$name: built in $(( $(date +%s) - t0 ))s; running ctest"
  (cd "$dir" && ctest -j "$jobs" --output-on-failure --timeout 300) >"$log" 2>&1
  grep -vE '^ +Start |Test +#[0-9]+: .* Passed' "$log"
  local summary total nfail
  summary=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
  if [ -z "$summary" ]; then
    say "$name: no test summary from ctest"
    failed=$((failed + 1))
    return
  fi
  nfail=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$summary")
  total=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$summary")
  if [ "$total" -eq 0 ]; then nfail=1; fi
  passed=$((passed + total - nfail))
  failed=$((failed + nfail))
  say "$name: $((total - nfail)) passed, $nfail failed ($(( $(date +%s) - t0 ))s)"
}

run plain OFF
# Leaks are checked at exit; a UBSan report aborts the test (the build uses
# -fno-sanitize-recover=all) and prints a stack trace.
export ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
run sanitize ON

say "total time $(( $(date +%s) - start ))s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
