#!/usr/bin/env python3
"""The two dashboards of ollama-tap, written from one list of panels (PANELS below):

    dashboards/grafana/ollama-tap.json            Grafana, importable as is
    integrations/Ollama/dashboards/ollama-tap.json   Nightingale's built-in integration format

    python3 scripts/boards.py           # writes both
    python3 scripts/boards.py --check   # exit 1 if a committed board is not what it would write

The PromQL is written once, for series as Prometheus stores them (host label `agent_hostname`,
windows `$__rate_interval` / `$__range`). Nightingale's copy goes through n9e_names.for_nightingale
(`agent_hostname` -> `ident`, which n9e's remote-write receiver renames it to) and gets fixed
windows, as n9e's own boards use. tests/docs_and_boards/boards.rs runs every expression of both boards against a
real Prometheus fed by agents in front of the fake Ollama, and checks the files' shape.
"""
import json
import sys
import uuid
from pathlib import Path

from n9e_names import for_nightingale

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "dashboards" / "grafana" / "ollama-tap.json"
N9E = ROOT / "integrations" / "Ollama" / "dashboards" / "ollama-tap.json"
N9E_UUID = 1764633800000000
# the windows n9e gets for Grafana's $__rate_interval and $__range
N9E_RATE = "2m"
N9E_RANGE = "1h"

HM = '{agent_hostname=~"$agent_hostname", model=~"$model"}'
H = '{agent_hostname=~"$agent_hostname"}'
RI = "[$__rate_interval]"
RANGE = "[$__range]"


def sel(text):
    """Expands the selector shorthands {HM} (host and model) and {H} (host) and [RI]."""
    return text.replace("{HM}", HM).replace("{H}", H).replace("[RI]", RI).replace("[RANGE]", RANGE)


def rate_by(by, name, s="{HM}"):
    return sel(f"sum by ({by}) (rate({name}{s}[RI]))")


def quantile(q, name, by="model", s="{HM}"):
    group = f"{by}, le" if by else "le"
    return sel(f"histogram_quantile({q}, sum by ({group}) (rate({name}_bucket{s}[RI])))")


def ratio(num, den, by="model", s="{HM}"):
    head = f"sum by ({by}) " if by else "sum"
    return sel(f"{head}(rate({num}{s}[RI])) / {head}(rate({den}{s}[RI]))")


def panel(kind, title, unit, targets, w=8, h=7, note="", only=None):
    """targets: [(expr, legend)]; only: "grafana" for a panel n9e cannot draw (the heatmap)."""
    return {"kind": kind, "title": title, "unit": unit, "targets": targets, "w": w, "h": h,
            "note": note, "only": only}


def row(title, *panels):
    return {"row": title, "panels": list(panels)}


REQ = "ollama_requests_total"
DUR = "ollama_request_duration_seconds"

PANELS = [
    row("Requests",
        panel("stat", "Requests per second", "reqps", [(sel(f"sum(rate({REQ}{{HM}}[RI]))"), "")], w=4, h=4,
              note="Metered inference requests per second, every endpoint."),
        panel("stat", "Success rate", "percentunit", [(ratio("ollama_requests_success", REQ, by=None), "")], w=4, h=4,
              note="2xx answers that ended complete, over all requests."),
        panel("stat", "Error rate", "percentunit", [(ratio("ollama_requests_failed", REQ, by=None), "")], w=4, h=4,
              note="4xx/5xx, errors inside a stream, cut streams, backend unreachable or too slow, over all requests."),
        panel("stat", "In flight", "short", [(sel("sum(ollama_requests_in_flight{HM})"), "")], w=4, h=4,
              note="Requests being answered now."),
        panel("stat", "Backend up", "short", [(sel("min(ollama_up{H})"), "")], w=4, h=4,
              note="1 when every selected host's Ollama answered its last check."),
        panel("stat", "Requests in range", "short", [(sel(f"sum(increase({REQ}{{HM}}[RANGE]))"), "")], w=4, h=4,
              note="Requests over the dashboard's time range."),
        panel("timeseries", "Requests per model", "reqps", [(rate_by("model", REQ), "{{model}}")], w=12,
              note="Request rate per model."),
        panel("timeseries", "Error ratio per model", "percentunit",
              [(ratio("ollama_requests_failed", REQ), "{{model}}")], w=12,
              note="Failed over all requests, per model."),
        panel("timeseries", "Requests by endpoint and outcome", "reqps",
              [(rate_by("endpoint, outcome", "ollama_endpoint_requests_total"), "{{endpoint}} {{outcome}}")], w=24,
              note="outcome is the HTTP status, stream_error, client_aborted, backend_unreachable or timeout."),
        ),
    row("Tokens",
        panel("stat", "Generated tokens in range", "short",
              [(sel("sum(increase(ollama_tokens_generated_total{HM}[RANGE]))"), "")], w=6, h=4),
        panel("stat", "Prompt tokens in range", "short",
              [(sel("sum(increase(ollama_prompt_tokens_total{HM}[RANGE]))"), "")], w=6, h=4),
        panel("stat", "Cached prompt tokens in range", "short",
              [(sel("sum(increase(ollama_prompt_cached_tokens_total{HM}[RANGE]))"), "")], w=6, h=4,
              note="Prompt tokens served from cache, when the backend reports them."),
        panel("stat", "Generated tokens per second", "short",
              [(sel("sum(rate(ollama_tokens_generated_total{HM}[RI]))"), "")], w=6, h=4),
        panel("timeseries", "Generated tokens per second per model", "short",
              [(rate_by("model", "ollama_tokens_generated_total"), "{{model}}")], w=12),
        panel("timeseries", "Prompt vs generated tokens", "short",
              [(sel("sum(rate(ollama_prompt_tokens_total{HM}[RI]))"), "prompt"),
               (sel("sum(rate(ollama_tokens_generated_total{HM}[RI]))"), "generated"),
               (sel("sum(rate(ollama_prompt_cached_tokens_total{HM}[RI]))"), "cached")], w=12),
        ),
    row("Performance",
        panel("timeseries", "Request duration P95 per model", "s",
              [(quantile(0.95, DUR), "{{model}} P95"), (quantile(0.99, DUR), "{{model}} P99")], w=12,
              note="Arrival to last byte as the agent measures it, failures included (histogram)."),
        panel("timeseries", "Time to first token P95", "s",
              [(quantile(0.95, "ollama_time_to_first_token_seconds"), "{{model}}")], w=12,
              note="Arrival to the first chunk with content; successful streams."),
        panel("timeseries", "Time per output token P95", "s",
              [(quantile(0.95, "ollama_time_per_output_token_seconds"), "{{model}}")], w=8),
        panel("timeseries", "Generation speed (median tokens/s)", "short",
              [(quantile(0.5, "ollama_generation_tokens_per_second"), "{{model}}")], w=8,
              note="eval_count / eval_duration as Ollama reports it (native endpoints)."),
        panel("timeseries", "Model load time P95", "s",
              [(quantile(0.95, "ollama_load_duration_seconds"), "{{model}}")], w=8,
              note="Ollama's load_duration (native endpoints)."),
        panel("timeseries", "Prompt evaluation P95", "s",
              [(quantile(0.95, "ollama_prompt_eval_duration_seconds"), "{{model}}")], w=12),
        panel("heatmap", "Request duration heatmap", "s",
              [(sel(f"sum by (le) (increase({DUR}_bucket{{HM}}[RI]))"), "{{le}}")], w=12, only="grafana"),
        ),
    row("Saturation",
        panel("timeseries", "Queue wait P95 per model", "s",
              [(quantile(0.95, "ollama_queue_wait_seconds"), "{{model}}")], w=8,
              note="The wait inside Ollama for one of its OLLAMA_NUM_PARALLEL slots: total_duration "
                   "- load - prompt eval - eval (native generate and chat)."),
        panel("timeseries", "Requests that waited over 1 s for a slot", "percentunit",
              [(sel('1 - sum by (model) (rate(ollama_queue_wait_seconds_bucket{agent_hostname=~"$agent_hostname", '
                    'model=~"$model", le="1"}[RI])) / sum by (model) (rate(ollama_queue_wait_seconds_count{HM}[RI]))'),
                "{{model}}")], w=8),
        panel("timeseries", "Requests in flight per model", "short",
              [(sel("sum by (model) (ollama_requests_in_flight{HM})"), "{{model}}")], w=8),
        ),
    row("Model usage",
        panel("barGauge", "Requests per model in range", "short",
              [(sel(f"sum by (model) (increase({REQ}{{HM}}[RANGE]))"), "{{model}}")], w=8),
        panel("barGauge", "Average response time per model", "s",
              [(ratio(f"{DUR}_sum", f"{DUR}_count"), "{{model}}")], w=8),
        panel("barGauge", "Generated tokens per request", "short",
              [(ratio("ollama_tokens_generated_total", "ollama_requests_success"), "{{model}}")], w=8),
        panel("timeseries", "Loaded models: size and VRAM", "bytes",
              [(sel("sum by (model) (ollama_loaded_model_size_bytes{HM})"), "{{model}} size"),
               (sel("sum by (model) (ollama_loaded_model_vram_bytes{HM})"), "{{model}} VRAM")], w=12,
              note="From Ollama's /api/ps at every check."),
        panel("timeseries", "Finish reasons", "reqps",
              [(rate_by("reason", "ollama_finish_reason_total"), "{{reason}}")], w=12,
              note="length means the answer was truncated."),
        ),
    row("Clients",
        panel("barGauge", "Top clients by GPU time in range", "s",
              [(sel("topk(10, sum by (client) (increase(ollama_client_request_duration_seconds_total{HM}[RANGE])))"),
                "{{client}}")], w=8,
              note="Summed request time per client (client attribution: client_headers, client_from_body or "
                   "client_from_api_key on the instance)."),
        panel("timeseries", "Share of GPU time per client", "percentunit",
              [(sel("sum by (client) (rate(ollama_client_request_duration_seconds_total{HM}[RI])) / scalar("
                    "sum(rate(ollama_client_request_duration_seconds_total{HM}[RI])))"), "{{client}}")], w=8),
        panel("timeseries", "Generated tokens per second per client", "short",
              [(rate_by("client", "ollama_client_generated_tokens_total"), "{{client}}")], w=8),
        ),
    row("Fleet",
        panel("timeseries", "Requests per host", "reqps",
              [(rate_by("agent_hostname", REQ), "{{agent_hostname}}")], w=8),
        panel("timeseries", "Fleet-wide request duration P95", "s",
              [(quantile(0.95, DUR, by=None), "all hosts"), (quantile(0.95, DUR, by="model"), "{{model}}")], w=8,
              note="One quantile over the summed histograms of every selected host."),
        panel("timeseries", "Request duration P95 per host", "s",
              [(quantile(0.95, DUR, by="agent_hostname"), "{{agent_hostname}}")], w=8),
        panel("timeseries", "Backend up per host", "short",
              [(sel("ollama_up{H}"), "{{agent_hostname}}")], w=12),
        panel("timeseries", "Ollama version per host", "short",
              [(sel("ollama_backend_info{H}"), "{{agent_hostname}} {{version}}")], w=12),
        ),
    row("Agent health",
        panel("timeseries", "Seconds since the last accepted push", "s",
              [(sel("max by (agent_hostname, url) (ollama_tap_remote_write_seconds_since_last_success{H})"),
                "{{agent_hostname}} {{url}}")], w=8,
              note="Grows by the interval while a receiver refuses or is unreachable."),
        panel("timeseries", "Push queue", "short",
              [(sel("sum by (agent_hostname, url) (ollama_tap_remote_write_queue_samples{H})"),
                "{{agent_hostname}} {{url}}")], w=8),
        panel("timeseries", "Samples sent, failed, retries", "short",
              [(rate_by("agent_hostname", "ollama_tap_remote_write_samples_sent_total", "{H}"), "{{agent_hostname}} sent"),
               (rate_by("agent_hostname", "ollama_tap_remote_write_samples_failed_total", "{H}"), "{{agent_hostname}} failed"),
               (rate_by("agent_hostname", "ollama_tap_remote_write_retries_total", "{H}"), "{{agent_hostname}} retries")], w=8),
        panel("timeseries", "Samples dropped by reason", "short",
              [(rate_by("agent_hostname, reason", "ollama_tap_remote_write_samples_dropped_total", "{H}"),
                "{{agent_hostname}} {{reason}}")], w=12,
              note="queue_full: the memory queue overflowed; disk_full, too_old, corrupt, write_error: the disk queue (queue_dir)."),
        panel("timeseries", "Disk queue size", "bytes",
              [(sel("sum by (agent_hostname, url) (ollama_tap_remote_write_queue_bytes{H})"),
                "{{agent_hostname}} {{url}}")], w=12,
              note="Only writers with a queue_dir; bounded by queue_max_mb per writer."),
        panel("timeseries", "Push request duration P95", "s",
              [(quantile(0.95, "ollama_tap_remote_write_request_duration_seconds", by="agent_hostname, url", s="{H}"),
                "{{agent_hostname}} {{url}}")], w=12),
        panel("timeseries", "Proxy overhead P99", "s",
              [(quantile(0.99, "ollama_tap_proxy_overhead_seconds", by="agent_hostname", s="{H}"),
                "{{agent_hostname}}")], w=12,
              note="The agent's own work before forwarding a request."),
        ),
]


def layout(panels):
    """Places the rows and panels on a 24-wide grid: yields (item, x, y, w, h)."""
    y = 0
    for group in panels:
        yield group, 0, y, 24, 1
        y += 1
        x, tallest = 0, 0
        for p in group["panels"]:
            if x + p["w"] > 24:
                y, x, tallest = y + tallest, 0, 0
            yield p, x, y, p["w"], p["h"]
            x += p["w"]
            tallest = max(tallest, p["h"])
        y += tallest


# ------------------------------------------------------------------------------------------------
# Grafana

def grafana():
    ds = {"type": "prometheus", "uid": "${datasource}"}
    panels = []
    for n, (item, x, y, w, h) in enumerate(layout(PANELS), start=1):
        pos = {"h": h, "w": w, "x": x, "y": y}
        if "row" in item:
            panels.append({"type": "row", "id": n, "title": item["row"], "collapsed": False,
                           "gridPos": pos, "panels": []})
            continue
        kind = {"barGauge": "bargauge"}.get(item["kind"], item["kind"])
        instant = "$__range" in item["targets"][0][0] or kind == "bargauge"
        targets = []
        for ref, (expr, legend) in zip("ABCDEFGH", item["targets"]):
            t = {"datasource": ds, "expr": expr, "legendFormat": legend, "refId": ref}
            if kind == "heatmap":
                t["format"] = "heatmap"
            if instant:
                t["instant"] = True
                t["range"] = False
            else:
                t["range"] = True
            targets.append(t)
        p = {"type": kind, "id": n, "title": item["title"], "description": item["note"],
             "datasource": ds, "gridPos": pos, "targets": targets,
             "fieldConfig": {"defaults": {"unit": item["unit"]}, "overrides": []}, "options": {}}
        if kind == "stat":
            p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                            "colorMode": "value", "graphMode": "area"}
        elif kind == "bargauge":
            p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                            "orientation": "horizontal", "displayMode": "gradient"}
        elif kind == "heatmap":
            p["options"] = {"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1}
        elif kind == "timeseries":
            p["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                            "tooltip": {"mode": "multi", "sort": "desc"}}
        panels.append(p)

    def query_var(name, label, query):
        return {"name": name, "label": label, "type": "query", "datasource": ds,
                "definition": query, "query": {"query": query, "refId": f"{name}-var"},
                "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "sort": 1, "regex": "", "hide": 0, "options": []}

    return {
        "uid": "ollama-tap",
        "title": "Ollama (ollama-tap)",
        "description": "Every request through ollama-tap: requests, tokens, latency from the histograms, "
                       "model usage, the fleet and the agent's own health.",
        "tags": ["ollama", "llm", "ollama-tap"],
        "timezone": "",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "links": [],
        "annotations": {"list": []},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
            query_var("agent_hostname", "Host", "label_values(ollama_up, agent_hostname)"),
            query_var("model", "Model",
                      'label_values(ollama_requests_total{agent_hostname=~"$agent_hostname"}, model)'),
            {"name": "filters", "label": "Instance labels", "type": "adhoc", "datasource": ds, "filters": [],
             "hide": 0, "description": "Any instance label ([instances.labels] or [global.labels]), "
                                       "for example service or env."},
        ]},
        "panels": panels,
    }


# ------------------------------------------------------------------------------------------------
# Nightingale

N9E_UNITS = {"reqps": "none", "short": "none", "percentunit": "percentUnit", "s": "seconds",
             "bytes": "bytesIEC"}


def n9e_expr(expr):
    return for_nightingale(expr).replace("$__rate_interval", N9E_RATE).replace("$__range", N9E_RANGE)


def n9e():
    panels = []
    for item, x, y, w, h in layout(PANELS):
        title = item.get("row") or item["title"]
        pid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"ollama-tap/{title}"))
        pos = {"h": h, "w": w, "x": x, "y": y, "i": pid}
        if "row" in item:
            panels.append({"type": "row", "id": pid, "name": title, "collapsed": True, "layout": pos,
                           "panels": []})
            continue
        if item["only"] == "grafana":
            continue
        p = {"type": item["kind"], "id": pid, "layout": pos, "version": "3.4.0",
             "datasourceCate": "prometheus", "datasourceValue": "${datasource}",
             "name": title, "description": item["note"], "links": [], "maxPerRow": 4,
             "targets": [{"expr": n9e_expr(e), "legend": for_nightingale(legend), "refId": ref}
                         for ref, (e, legend) in zip("ABCDEFGH", item["targets"])],
             "options": {"standardOptions": {"unit": N9E_UNITS[item["unit"]], "decimals": 2},
                         "thresholds": {"steps": [{"color": "#634CD9", "value": None, "type": "base"}]}}}
        if item["kind"] == "stat":
            p["custom"] = {"textMode": "value", "graphMode": "area", "colorMode": "value", "calc": "lastNotNull",
                           "valueField": "Value", "colSpan": 0, "textSize": {}, "orientation": "auto"}
        elif item["kind"] == "barGauge":
            p["custom"] = {"calc": "lastNotNull", "valueField": "Value", "sortOrder": "desc",
                           "displayMode": "basic", "valueMode": "color", "otherPosition": "none"}
        else:
            p["custom"] = {"drawStyle": "lines", "lineInterpolation": "smooth", "spanNulls": False,
                           "lineWidth": 2, "fillOpacity": 0.1, "gradientMode": "none", "stack": "off",
                           "scaleDistribution": {"type": "linear"}, "showPoints": "none", "pointSize": 5}
            p["options"]["legend"] = {"displayMode": "table", "placement": "bottom", "behaviour": "showItem",
                                      "selectMode": "single"}
            p["options"]["tooltip"] = {"mode": "all", "sort": "desc"}
        panels.append(p)

    def query_var(name, query):
        return {"name": name, "type": "query", "definition": query,
                "datasource": {"cate": "prometheus", "value": "${datasource}"},
                "multi": True, "allOption": True, "allValue": ".*", "hide": False, "reg": "",
                "initialized": True}

    return {
        "name": "Ollama by ollama-tap",
        "tags": "ollama llm ollama-tap",
        "ident": "ollama-tap",
        "uuid": N9E_UUID,
        "note": "Every request through ollama-tap: requests, tokens, latency from the histograms, "
                "model usage, the fleet and the agent's own health.",
        "configs": {
            "graphTooltip": "sharedCrosshair",
            "graphZoom": "default",
            "links": [],
            "panels": panels,
            "var": [
                {"name": "datasource", "type": "datasource", "definition": "prometheus", "hide": False},
                query_var("ident", "label_values(ollama_up, ident)"),
                query_var("model", 'label_values(ollama_requests_total{ident=~"$ident"}, model)'),
            ],
            "version": "3.0.0",
        },
    }


def main():
    outputs = {GRAFANA: grafana(), N9E: n9e()}
    stale = []
    for path, board in outputs.items():
        text = json.dumps(board, ensure_ascii=False, indent=2) + "\n"
        if sys.argv[1:] == ["--check"]:
            if not path.exists() or path.read_text() != text:
                stale.append(path.relative_to(ROOT))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"{', '.join(map(str, stale))} not generated from scripts/boards.py: "
              "run python3 scripts/boards.py", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
