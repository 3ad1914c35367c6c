#!/usr/bin/env python3
"""Turns bench/run.sh's raw results into the markdown table (medians over rounds, tap / nginx).

    table.py RESULTS [--check]

--check (the smoke): exit 1 unless every figure is a finite number and no run saw a connect
error or a non-2xx answer. No timing is asserted.
"""

import math
import statistics
import sys


def parse(path):
    runs, rss, meta, load, syscalls = [], {}, {}, {}, []
    for line in open(path):
        kind, _, rest = line.strip().partition(" ")
        fields = dict(f.split("=", 1) for f in rest.split() if "=" in f)
        if kind == "RESULT":
            runs.append(fields)
        elif kind == "RSS":
            rss.update(fields)
        elif kind == "META":
            meta = fields
        elif kind == "LOAD":
            load = fields
        elif kind == "SYSCALL":
            syscalls.append(fields)
    return runs, rss, meta, load, syscalls


def main():
    path = sys.argv[1]
    check = "--check" in sys.argv[2:]
    runs, rss, meta, load, syscalls = parse(path)
    clk = float(meta["clk_tck"])
    ncpu = int(meta["nproc"])
    c_lines, d_lines = int(meta["c_lines"]), int(meta["d_lines"])
    problems = []

    def value(run, what):
        """One figure of one run."""
        reqs = float(run.get("requests", "nan"))
        secs = float(run.get("duration_us", "nan")) / 1e6
        cpu_us = float(run.get("proxy_ticks", "nan")) / clk * 1e6
        lines = {"C": c_lines, "D": d_lines}.get(run["case"], 1)
        blines = float(run.get("backend_lines", "nan"))
        return {
            "rps": reqs / secs if secs else math.nan,
            "lines_s": reqs * lines / secs if secs else math.nan,
            "p50_us": float(run.get("p50_us", "nan")),
            "p99_ms": float(run.get("p99_us", "nan")) / 1e3,
            "cpu_req_us": cpu_us / reqs if reqs else math.nan,
            "cpu_line_us": cpu_us / (reqs * lines) if reqs else math.nan,
            # lines the backend sent in the window: counts the answers cut by its end too
            "cpu_bline_us": cpu_us / blines if blines else math.nan,
            "blines_s": blines / secs if secs else math.nan,
            "ttfb_ms": float(run.get("p50_us", "nan")) / 1e3,
            "push_ms": float(run.get("median_ms", "nan")),
        }[what]

    def med(case, target, what):
        vals = [value(r, what) for r in runs if r["case"] == case and r["target"] == target]
        return statistics.median(vals) if vals else math.nan

    for r in runs:
        if r["case"] in ("A", "B", "C", "D"):
            if int(r["requests"]) == 0:
                problems.append(f"case {r['case']} {r['target']} round {r['round']}: no request completed")
            for e in ("err_connect", "err_status", "err_read", "err_write", "err_timeout"):
                if int(r.get(e, 0)):
                    problems.append(f"case {r['case']} {r['target']} round {r['round']}: {e}={r[e]}")

    figures = []  # every number shown, for --check

    def num(x, fmt):
        figures.append(x)
        return "n/a" if not math.isfinite(x) else format(x, fmt)

    def ratio(t, n):
        return num(t / n if n else math.nan, ".2f") + "×"

    rows = []
    a, cc, dc = meta["a_conn"], meta["c_conn"], meta["d_conn"]
    d = {w: med("A", t, "rps") for t, w in [("direct", "d"), ("nginx", "n"), ("tap", "t")]}
    rows.append((f"A. non-stream `/api/generate`, {a} connections: req/s",
                 num(d["d"], ",.0f"), num(d["n"], ",.0f"), num(d["t"], ",.0f"), ratio(d["t"], d["n"])))
    d = {t: med("A", t, "p99_ms") for t in ("direct", "nginx", "tap")}
    rows.append(("A. p99", num(d["direct"], ".2f") + " ms", num(d["nginx"], ".2f") + " ms",
                 num(d["tap"], ".2f") + " ms", ratio(d["tap"], d["nginx"])))
    d = {t: med("A", t, "cpu_req_us") for t in ("nginx", "tap")}
    rows.append(("A. proxy CPU per request", "—", num(d["nginx"], ".1f") + " µs",
                 num(d["tap"], ".1f") + " µs", ratio(d["tap"], d["nginx"])))
    d = {t: med("B", t, "p50_us") for t in ("direct", "nginx", "tap")}
    add_n, add_t = d["nginx"] - d["direct"], d["tap"] - d["direct"]
    rows.append(("B. one connection, p50", num(d["direct"], ".0f") + " µs",
                 f"{num(d['nginx'], '.0f')} µs (adds {num(add_n, '.0f')})",
                 f"{num(d['tap'], '.0f')} µs (adds {num(add_t, '.0f')})",
                 ratio(add_t, add_n) + " the added latency"))
    d = {t: med("C", t, "lines_s") for t in ("direct", "nginx", "tap")}
    rows.append((f"C. saturated streams: {cc} connections × {c_lines} NDJSON lines, no delay: lines/s",
                 num(d["direct"], ",.0f"), num(d["nginx"], ",.0f"), num(d["tap"], ",.0f"),
                 ratio(d["tap"], d["nginx"])))
    d = {t: med("C", t, "cpu_line_us") for t in ("nginx", "tap")}
    rows.append(("C. proxy CPU per line", "—", num(d["nginx"], ".2f") + " µs",
                 num(d["tap"], ".2f") + " µs", ratio(d["tap"], d["nginx"])))
    d = {t: med("D", t, "cpu_bline_us") for t in ("nginx", "tap")}
    rows.append((f"D. realistic streams: {dc} connections × {d_lines} lines, {meta['d_delay']} ms apart: "
                 "proxy CPU per line", "—", num(d["nginx"], ".2f") + " µs",
                 num(d["tap"], ".2f") + " µs", ratio(d["tap"], d["nginx"])))
    d = {t: med("D", t, "blines_s") for t in ("direct", "nginx", "tap")}
    rows.append(("D. lines/s (the same offered load for all three)", num(d["direct"], ",.0f"),
                 num(d["nginx"], ",.0f"), num(d["tap"], ",.0f"), ratio(d["tap"], d["nginx"])))
    d_answers = {t: med("D", t, "cpu_line_us") for t in ("nginx", "tap")}
    d = {t: med("E", t, "ttfb_ms") for t in ("direct", "nginx", "tap")}
    rows.append(("E. time to first streamed line added (p50)",
                 f"{num(d['direct'], '.3f')} ms (itself)",
                 num(d["nginx"] - d["direct"], ".3f") + " ms",
                 num(d["tap"] - d["direct"], ".3f") + " ms", "—"))
    mb = lambda k: float(rss.get(k, "nan")) / 1024
    rows.append(("F. proxy RSS idle / peak during all of the above", "—",
                 f"{num(mb('nginx_rss_kb'), '.1f')} / {num(mb('nginx_hwm_kb'), '.1f')} MB",
                 f"{num(mb('tap_rss_kb'), '.1f')} / {num(mb('tap_hwm_kb'), '.1f')} MB", "—"))
    rows.append((f"push: encode + snappy-compress a {int(meta['push_series']):,}-series remote-write "
                 "request (median)", "—", "—", num(med("push", "tap", "push_ms"), ".2f") + " ms", "—"))
    for target, what in (("memory", "memory queue"), ("disk", "disk queue (queue_dir: written, fdatasync'ed)")):
        rows.append((f"push: encode + enqueue a {int(meta['push_series']):,}-series snapshot into the {what} "
                     "(median)", "—", "—", num(med("push", target, "push_ms"), ".2f") + " ms", "—"))

    print(f"ollama-tap benchmark: {meta['profile']} build, {meta['rounds']} interleaved round(s) of "
          f"{meta['duration']} s per run, medians; {ncpu} CPUs; took {meta['elapsed_s']} s"
          + (" (smoke: tiny sizes, figures meaningless)" if meta["smoke"] == "1" else ""))
    print()
    print("| case | direct | nginx | ollama-tap | tap / nginx |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()

    answer_s = d_lines * float(meta["d_delay"]) / 1000
    print(f"D counts the lines the backend sent during the window (`GET /bench/stats`): an answer "
          f"lasts about {answer_s:.1f} s, so a run ends with up to {dc} answers cut. Counted as answers "
          f"completed × {d_lines} instead, CPU per line would read {num(d_answers['nginx'], '.2f')} µs "
          f"(nginx) and {num(d_answers['tap'], '.2f')} µs (ollama-tap).")
    print()

    # How loaded the machine was: CPU of the machine's other processes during each run.
    foreign, started = [], 0
    for r in runs:
        if "others_ticks" in r:
            secs = float(r["duration_us"]) / 1e6
            foreign.append(float(r["others_ticks"]) / clk / (secs * ncpu) * 100)
            started += int(r["others_new"])
    if foreign:
        print(f"Machine: load average (1/5/15 min) before {load.get('before', '?')}, after "
              f"{load.get('after', '?')}; stress-ng processes before/after: "
              f"{load.get('stress_ng_before', '?')}/{load.get('stress_ng_after', '?')}; CPU used by "
              f"other processes during the runs: median {statistics.median(foreign):.1f}%, max "
              f"{max(foreign):.1f}% of {ncpu} CPUs; {started} other process(es) started during runs.")
        print()

    if syscalls:
        print(f"Syscalls per line in case C (perf stat, a separate run of {meta['duration']} s per proxy):")
        print()
        events = []
        for s in syscalls:
            if s["event"] not in events:
                events.append(s["event"])
        print("| event | nginx | ollama-tap |")
        print("|---|---|---|")
        for ev in events:
            cells = []
            for t in ("nginx", "tap"):
                hit = [s for s in syscalls if s["target"] == t and s["event"] == ev]
                if hit:
                    n, reqs = float(hit[0]["count"]), float(hit[0]["requests"])
                    cells.append(f"{n / (reqs * c_lines):.3f} ({int(n):,} for {int(reqs) * c_lines:,} lines)")
                else:
                    cells.append("—")
            print(f"| {ev.replace('syscalls:sys_enter_', '')} | " + " | ".join(cells) + " |")
        print()

    print("<details><summary>every run</summary>")
    print()
    print("| round | case | target | requests | s | req/s | p50 µs | p99 µs | proxy CPU s | backend CPU s "
          "| backend lines | wrk CPU s | other processes' CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        if r["case"] in ("A", "B", "C", "D"):
            secs = float(r["duration_us"]) / 1e6
            print(f"| {r['round']} | {r['case']} | {r['target']} | {r['requests']} | {secs:.2f} | "
                  f"{int(r['requests']) / secs:,.0f} | {r['p50_us']} | {r['p99_us']} | "
                  f"{int(r['proxy_ticks']) / clk:.2f} | {int(r['backend_ticks']) / clk:.2f} | "
                  f"{r.get('backend_lines', '—')} | "
                  f"{int(r['wrk_cpu_us']) / 1e6:.2f} | {int(r['others_ticks']) / clk:.2f} |")
        elif r["case"] == "E":
            print(f"| {r['round']} | E | {r['target']} | {r['count']} | | | {r['p50_us']} | "
                  f"(p90 {r['p90_us']}) | | | | | |")
        elif r["case"] == "push":
            print(f"| {r['round']} | push | {r['target']} | {r['iterations']} | | | median {r['median_ms']} ms | "
                  f"max {r['max_ms']} ms | | | | | |")
    print()
    print(f"RSS: {rss}")
    print()
    print("</details>")

    if problems:
        print("\nproblems:\n" + "\n".join("- " + p for p in problems))
    if check:
        bad = [x for x in figures if not math.isfinite(x)]
        fatal = [p for p in problems if "err_connect" in p or "err_status" in p or "no request" in p]
        if bad or fatal:
            print(f"bench/run.sh --smoke: FAILED ({len(bad)} figures not numbers; {fatal})", file=sys.stderr)
            sys.exit(1)
        print(f"bench/run.sh --smoke: ok, {len(figures)} figures, all numbers", file=sys.stderr)


if __name__ == "__main__":
    main()
