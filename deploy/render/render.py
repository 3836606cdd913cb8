#!/usr/bin/env python3
"""Renders the Grafana dashboard without Grafana: every panel's PromQL, as the dashboard has
it, is evaluated by a real Prometheus over a time range and drawn on a grid in one PNG, laid out
as the dashboard's gridPos lays it out. It shows the panels' queries work against what a
running gateway exports (a panel with no data says so in red).

    render.py --prom http://127.0.0.1:19090 --start UNIX --end UNIX --out docs/dashboard.png
"""

import argparse
import json
import math
import re
import sys
import urllib.parse
import urllib.request

import matplotlib
import matplotlib.lines

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

UNITS = {"s": ("ms", 1e3), "bytes": ("MiB", 1 / 2**20), "percentunit": ("%", 100)}


def query_range(prom, expr, start, end, step):
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prom}/api/v1/query_range?{q}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def substitute(expr, constants, rate_interval):
    expr = expr.replace("$__rate_interval", rate_interval)
    for name, value in constants.items():
        expr = expr.replace(f"${name}", value)
    return expr


def legend(fmt, metric):
    if not fmt:
        return ",".join(f"{k}={v}" for k, v in metric.items() if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)


def plot(ax, series, start, scale):
    for name, points in series:
        xs = [(float(t) - start) for t, _ in points]
        ys = [float(v) * scale for _, v in points]
        ax.plot(xs, [y if math.isfinite(y) else float("nan") for y in ys], label=name[:40], lw=1.2)


def peak(points):
    finite = [abs(float(v)) for _, v in points if math.isfinite(float(v))]
    return max(finite, default=0.0)


def legend_of(ax, where):
    """Names the first eight series (the largest: they are drawn first) and counts the rest."""
    handles, names = ax.get_legend_handles_labels()
    more = len(handles) - 8
    if more > 0:
        handles, names = handles[:8], names[:8] + [f"... {more} more"]
        handles.append(matplotlib.lines.Line2D([], [], alpha=0))
    ax.legend(handles, names, fontsize=6, loc=where, ncol=2)


def draw(ax, panel, series, start):
    """Draws a panel; a series far smaller than the largest (CPU beside RSS) gets a right axis,
    and only the eight largest series are named in the legend."""
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    label, scale = UNITS.get(defaults.get("unit", ""), (defaults.get("unit", ""), 1))
    if defaults.get("custom", {}).get("scaleDistribution", {}).get("type") == "log":
        ax.set_yscale("log")
    top = max((peak(p) for _, p in series), default=0.0)
    small = sorted((s for s in series if 0 < peak(s[1]) < top / 100), key=lambda s: -peak(s[1]))
    large = sorted((s for s in series if s not in small), key=lambda s: -peak(s[1]))
    plot(ax, large, start, scale)
    if small:
        right = ax.twinx()
        plot(right, small, start, scale)
        right.tick_params(labelsize=7)
        legend_of(right, "upper right")
    ax.set_title(panel["title"], fontsize=9)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("seconds into the run", fontsize=7)
    if label:
        ax.set_ylabel(label, fontsize=7)
    if not series:
        ax.text(0.5, 0.5, "no data", color="red", ha="center", transform=ax.transAxes)
    elif large:
        legend_of(ax, "upper left")
    ax.grid(alpha=0.3)
    return bool(series)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--prom", required=True)
    a.add_argument("--dashboard", default="deploy/grafana/gateway.json")
    a.add_argument("--start", type=float, required=True)
    a.add_argument("--end", type=float, required=True)
    a.add_argument("--step", default="2s")
    a.add_argument("--rate-interval", default="10s")
    a.add_argument("--out", required=True)
    args = a.parse_args()

    dash = json.load(open(args.dashboard))
    constants = {
        v["name"]: v["query"]
        for v in dash.get("templating", {}).get("list", [])
        if v.get("type") == "constant"
    }
    panels = [p for p in dash["panels"] if p.get("targets")]
    rows = sorted({p["gridPos"]["y"] for p in panels})
    fig = plt.figure(figsize=(16, 3.4 * len(rows)))
    grid = fig.add_gridspec(len(rows), 24, hspace=0.55, wspace=4, top=0.96, bottom=0.03)
    missing = []
    for p in panels:
        pos = p["gridPos"]
        r = rows.index(pos["y"])
        ax = fig.add_subplot(grid[r, pos["x"] : pos["x"] + pos["w"]])
        series = []
        for t in p["targets"]:
            expr = substitute(t["expr"], constants, args.rate_interval)
            for s in query_range(args.prom, expr, args.start, args.end, args.step):
                series.append((legend(t.get("legendFormat"), s["metric"]), s["values"]))
        if not draw(ax, p, series, args.start):
            missing.append(p["title"])
    fig.suptitle(f"{dash.get('title', 'dashboard')} (rendered from Prometheus)", fontsize=12)
    fig.savefig(args.out, dpi=80)
    print(f"{args.out}: {len(panels)} panels, without data: {missing or 'none'}")


if __name__ == "__main__":
    sys.exit(main())
