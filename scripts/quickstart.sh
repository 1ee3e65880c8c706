#!/usr/bin/env bash
# herald quick start: installs what the build needs (Debian 12 packages),
# builds, then runs the demo or every test.
#
#   scripts/quickstart.sh demo   # install, build, run the multi-node demo
#   scripts/quickstart.sh test   # install, build, run every test, then
#                                # each fuzz target for 20 s (scripts/fuzz.sh)
#
# Environment: BUILD_DIR (default: build), HERALD_WERROR (ON|OFF, default OFF).
set -euo pipefail

usage() { echo "usage: $0 demo|test" >&2; exit 2; }
[[ $# -eq 1 ]] || usage
mode=$1
[[ $mode == demo || $mode == test ]] || usage

cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}

# What the build needs. The tests also need promtool, to check the metrics
# text; Debian ships it only in `prometheus`, whose server service the
# install enables too. The demo needs neither.
packages=(build-essential cmake pkg-config libzmq3-dev cppzmq-dev
  libmsgpack-cxx-dev libcaf-dev libspdlog-dev libfmt-dev catch2
  librocksdb-dev libyaml-cpp-dev libcli11-dev libcpp-httplib-dev
  nlohmann-json3-dev libbenchmark-dev)
if [[ $mode == test ]]; then
  # The harness' netns mode, partitions and clock faults (tests run as
  # root): ip, nft and libfaketime.
  packages+=(prometheus iproute2 nftables faketime)
  # The fuzz targets (docs/fuzzing.md): clang 14 and its libFuzzer and
  # sanitizer runtimes.
  packages+=(clang libclang-rt-14-dev)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if (( ${#missing[@]} )); then
  echo "installing: ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}"
fi

cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DHERALD_WERROR="${HERALD_WERROR:-OFF}"
cmake --build "$build_dir" -j2

case $mode in
  demo) bash examples/demo.sh "$build_dir" ;;
  test)
    ctest --test-dir "$build_dir" --output-on-failure -j2
    # Its own build dir: the fuzz build is clang's, instrumented.
    BUILD_DIR="$build_dir-fuzz" scripts/fuzz.sh 20
    ;;
esac
