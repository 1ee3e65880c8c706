#!/usr/bin/env bash
# Installs herald from BUILD_DIR into a temporary prefix, builds the
# downstream project against it with find_package(herald), and runs it.
set -euo pipefail
build_dir=$1
src_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
# The systemd unit template comes with it.
test -f "$work/prefix/lib/systemd/system/herald-service@.service" ||
  { echo "check_install.sh: no lib/systemd/system/herald-service@.service" \
      "installed" >&2; exit 1; }
cmake -S "$src_dir/tests/install/downstream" -B "$work/build" \
  -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log"
cmake --build "$work/build" -j2 > "$work/build.log"
timeout 60 "$work/build/downstream" "$src_dir/config/events.yaml"
