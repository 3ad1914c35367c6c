"""What Nightingale's copies of the PromQL change: n9e's remote-write receiver renames the
`agent_hostname` label to `ident` (when the series has no `ident` of its own), so every query,
legend and annotation written for Prometheus names the host `ident` in n9e. Used by
n9e_alerts.py, n9e_metrics.py and boards.py.
"""
import re

HOST = re.compile(r"\bagent_hostname\b")


def for_nightingale(text):
    """The same PromQL (or template) as n9e stores the series: agent_hostname -> ident."""
    return HOST.sub("ident", text)
