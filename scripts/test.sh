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

# Python's protobuf + cramjam decode the agent's remote-write bodies independently.
python3 -c 'import google.protobuf, cramjam' 2>/dev/null || python3 -m pip install --quiet protobuf cramjam
# The real `ollama` and `openai` Python clients call through the agent in tests/python_clients.rs.
python3 -c 'import ollama, openai' 2>/dev/null || python3 -m pip install --quiet ollama openai

cargo test --locked "$@"
