"""The results table (plain text) and the PNG plots of a benchmark run."""

from __future__ import annotations

import math
from pathlib import Path


def _fmt(value, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def table(results: dict) -> str:
    rows = results.get("rows", [])
    header = ("scenario", "metric", "edgebook", "baseline", "ratio", "baseline is")
    lines = [header]
    for r in rows:
        ratio = r.get("ratio")
        lines.append((r["scenario"], r["metric"], _fmt(r["edgebook"]), _fmt(r["baseline"]),
                      f"{ratio:.2f}x" if isinstance(ratio, (int, float)) else "-",
                      r["baseline_name"]))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        cells = [str(c).ljust(w) if i in (0, 1, 5) else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    out.append("")
    out.append("targets:")
    for t in results.get("targets", []):
        mark = {True: "MET   ", False: "MISSED", None: "n/a   "}[t["met"]]
        note = f"  ({t['note']})" if t.get("note") else ""
        out.append(f"  [{mark}] {t['target']}: {_fmt(t['value'])} (target {t['limit']}){note}")
    skipped = results.get("skipped") or {}
    if skipped:
        out.append("")
        out.append("not measured:")
        for name, why in skipped.items():
            out.append(f"  {name}: {why}")
    calib = results.get("scenarios", {}).get("calibrate")
    if calib:
        c = calib["c32"]
        out.append("")
        out.append(f"load generator {c['tool']}: {c['rps']:,.0f} req/s against a "
                   f"{calib['server']} server at c32 (its own CPU "
                   f"{c['loadgen_cpu_us_per_req']:.0f} us/req)")
        if "python_c32" in calib:
            p = calib["python_c32"]
            out.append(f"python generator (used for hot reload): {p['rps']:,.0f} req/s there "
                       f"(its own CPU {p['loadgen_cpu_us_per_req']:.0f} us/req)")
    meta = results.get("meta", {})
    if meta:
        out.append(f"load average before {meta['loadavg_before'][0]:.2f}, after "
                   f"{meta.get('loadavg_after', [math.nan])[0]:.2f}; {meta.get('cpus')} CPUs; "
                   f"gateway via {meta.get('gateway_launch')}")
    return "\n".join(out)


def plots(results: dict, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    scen = results.get("scenarios", {})

    throughput = [r for r in results.get("rows", []) if r["metric"] == "req/s"
                  and isinstance(r["baseline"], (int, float))]
    if throughput:
        fig, ax = plt.subplots(figsize=(10, 0.5 * len(throughput) + 1.5))
        names = [f"{r['scenario']}\nvs {r['baseline_name']}" for r in throughput]
        y = range(len(throughput))
        ax.barh([i + 0.2 for i in y], [r["edgebook"] for r in throughput], 0.4,
                label="edgebook")
        ax.barh([i - 0.2 for i in y], [r["baseline"] for r in throughput], 0.4,
                label="baseline (same run)")
        ax.set_yticks(list(y), names, fontsize=7)
        ax.set_xlabel("requests/s")
        ax.set_title("Throughput against the baseline measured in the same run")
        ax.legend()
        fig.tight_layout()
        path = out / "throughput.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    latency = [r for r in results.get("rows", []) if r["metric"] in ("p50 ms", "p99 ms")
               and isinstance(r["baseline"], (int, float)) and "reload" not in r["scenario"]]
    if latency:
        fig, ax = plt.subplots(figsize=(10, 0.45 * len(latency) + 1.5))
        names = [f"{r['scenario']} {r['metric']}" for r in latency]
        y = range(len(latency))
        ax.barh([i + 0.2 for i in y], [r["edgebook"] for r in latency], 0.4, label="edgebook")
        ax.barh([i - 0.2 for i in y], [r["baseline"] for r in latency], 0.4, label="baseline")
        ax.set_yticks(list(y), names, fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("milliseconds (log)")
        ax.set_title("Latency percentiles")
        ax.legend()
        fig.tight_layout()
        path = out / "latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    reload = scen.get("reload")
    if reload and reload.get("timeline"):
        fig, ax = plt.subplots(figsize=(10, 4))
        ax.scatter(reload["timeline"]["t"], reload["timeline"]["ms"], s=1, alpha=0.4)
        for e in reload["events"]:
            ax.axvspan(e["start"], e["end"], color="orange", alpha=0.2)
            ax.axvline(e["end"], color="red", lw=1)
            ax.text(e["start"], ax.get_ylim()[1] * 0.9 if ax.get_ylim()[1] else 1,
                    e["label"], fontsize=7)
        ax.set_yscale("log")
        ax.set_xlabel("seconds")
        ax.set_ylabel("latency ms (log)")
        ax.set_title(f"Hot reload under load: {reload['failed']} failed of "
                     f"{reload['load']['requests']} (shaded: deploy call; red: returned)")
        fig.tight_layout()
        path = out / "hot_reload.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    workers = scen.get("workers")
    if workers:
        fig, ax = plt.subplots(figsize=(6, 4))
        ns = [n for n in (1, 2, 4) if f"workers_{n}" in workers]
        ax.plot(ns, [workers[f"workers_{n}"]["rps"] for n in ns], "o-", label="edgebook")
        ax.plot(ns, [1000 * min(n, 2) for n in ns], "--", label="ideal on 2 cores (1 ms/req)")
        ax.set_xticks(ns)
        ax.set_xlabel("workers")
        ax.set_ylabel("requests/s")
        ax.set_title("1 ms CPU handler: workers per endpoint")
        ax.legend()
        fig.tight_layout()
        path = out / "workers.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    builds = scen.get("builds")
    if builds:
        rows = [b for b in builds if isinstance(b.get("seconds"), (int, float))]
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
        ax.barh(range(len(rows)), [b["seconds"] for b in rows],
                color=["tab:gray" if b["build"].startswith("original") else "tab:blue"
                       for b in rows])
        ax.set_yticks(range(len(rows)), [b["build"] for b in rows], fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("seconds (log)")
        ax.set_title("Build times (blue: edgebook build service; gray: original style)")
        fig.tight_layout()
        path = out / "builds.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
