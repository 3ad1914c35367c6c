#!/usr/bin/env python3
"""Nightingale's alert rules from the Prometheus ones: alerts/ollama-tap.rules.yml is the one
source of truth, integrations/Ollama/alerts/ollama-tap.json is generated from it.

    python3 scripts/n9e_alerts.py           # writes the JSON
    python3 scripts/n9e_alerts.py --check   # exit 1 if the committed JSON is not what it would write

The format is n9e's built-in integration one (a JSON array; see ccfos/nightingale
integrations/*/alerts/*.json): cate "prometheus", prod "metric", the PromQL in
rule_config.queries[0].prom_ql with the threshold in it, severity 1 critical / 2 warning / 3 info.
The host label is `ident` there (n9e_names.for_nightingale): n9e renames agent_hostname on receipt.
Needs PyYAML.
"""
import json
import re
import sys
from pathlib import Path

import yaml

from n9e_names import for_nightingale

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "alerts" / "ollama-tap.rules.yml"
OUT = ROOT / "integrations" / "Ollama" / "alerts" / "ollama-tap.json"
SEVERITY = {"critical": 1, "warning": 2, "info": 3}
EVAL_SECONDS = 15
# n9e fills in a uuid when it is 0; fixed ones keep re-imports idempotent.
UUID_BASE = 1764633600000000


def seconds(duration):
    """'2m', '90s', '1h' (Prometheus durations as the rules use them) -> seconds."""
    if not duration:
        return 0
    total = 0
    for value, unit in re.findall(r"(\d+)([smh])", duration):
        total += int(value) * {"s": 1, "m": 60, "h": 3600}[unit]
    return total


def n9e_rules(rules_text):
    groups = yaml.safe_load(rules_text)["groups"]
    out = []
    for group in groups:
        for i, rule in enumerate(group["rules"]):
            annotations = {k: for_nightingale(v) for k, v in rule.get("annotations", {}).items()}
            out.append({
                "cate": "prometheus",
                "prod": "metric",
                "name": rule["alert"],
                "note": annotations.get("summary", ""),
                "delay": 0,
                "prom_for_duration": seconds(rule.get("for")),
                "prom_eval_interval": EVAL_SECONDS,
                "rule_config": {
                    "queries": [{
                        "prom_ql": for_nightingale(rule["expr"].strip()),
                        "severity": SEVERITY[rule["labels"]["severity"]],
                        "ref": "A",
                        "unit": "none",
                        "query": "",
                    }],
                    "version": "v1",
                },
                "event_relabel_config": None,
                "enable_in_bg": 0,
                "notify_recovered": 1,
                "notify_repeat_step": 60,
                "notify_max_number": 0,
                "recover_duration": 0,
                "callbacks": [],
                "append_tags": ["service=ollama"],
                "annotations": annotations,
                "uuid": UUID_BASE + len(out) + 1,
                "cur_event_count": 0,
                "cron_pattern": f"@every {EVAL_SECONDS}s",
                "notify_rule_ids": [],
                "pipeline_configs": None,
                "notify_version": 0,
            })
    return out


def main():
    text = json.dumps(n9e_rules(RULES.read_text()), ensure_ascii=False, indent=4) + "\n"
    if sys.argv[1:] == ["--check"]:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is not generated from {RULES.relative_to(ROOT)}: "
                  "run python3 scripts/n9e_alerts.py", file=sys.stderr)
            sys.exit(1)
        return
    OUT.write_text(text)


if __name__ == "__main__":
    main()
