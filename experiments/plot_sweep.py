#!/usr/bin/python3
"""Draws the PNG plots of a `bouquet sweep` output directory.

Usage: /usr/bin/python3 experiments/plot_sweep.py DIR

Reads DIR/plots.json (written by the sweep: which metric over which axis, one line per value of
the series axis, one panel per combination of the remaining axes) and DIR/aggregate.csv (per point
the mean and 95% interval over seeds), and writes each plot's PNG into DIR. Needs matplotlib from
Debian (python3-matplotlib, installed by scripts/setup.sh). The sweep runs this itself; run it by
hand after editing the script to redraw without re-running the sweep.
"""
import csv
import itertools
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

MAX_COLUMNS = 3


def number(text):
    return float(text) if text not in ("", None) else math.nan


def numeric_axis(labels):
    """Positions for the x labels: the values themselves when all are finite numbers."""
    try:
        values = [float(label) for label in labels]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def panel_name(axes, combo):
    return ", ".join(f"{name}={label}" for name, label in zip(axes, combo)) or ""


def draw(spec, plot, rows, directory):
    axes = {a["name"]: a["labels"] for a in spec["axes"]}
    x_labels = axes[plot["x"]]
    series = plot["series"]
    series_labels = axes[series] if series else [None]
    others = [a["name"] for a in spec["axes"] if a["name"] not in (plot["x"], series)]
    combos = list(itertools.product(*[axes[name] for name in others]))
    positions = numeric_axis(x_labels)
    categorical = positions is None
    if categorical:
        positions = list(range(len(x_labels)))
    if plot["log_x"] and not categorical and min(positions) <= 0:
        plot["log_x"] = False
    metric = plot["metric"]

    columns = min(len(combos), MAX_COLUMNS)
    lines = math.ceil(len(combos) / columns)
    figure, grid = plt.subplots(lines, columns, figsize=(5.2 * columns, 3.8 * lines), squeeze=False,
                                sharey=True)
    for index, combo in enumerate(combos):
        ax = grid[index // columns][index % columns]
        where = dict(zip(others, combo))
        for count, label in enumerate(series_labels):
            xs, ys, low, high = [], [], [], []
            for position, x_label in zip(positions, x_labels):
                for row in rows:
                    if row[plot["x"]] != x_label or (series and row[series] != label):
                        continue
                    if any(row[name] != value for name, value in where.items()):
                        continue
                    mean = number(row[metric + "_mean"])
                    if math.isnan(mean):
                        continue
                    lo = number(row[metric + "_ci95_low"])
                    hi = number(row[metric + "_ci95_high"])
                    if plot["unit"] == "share":
                        # A t interval of a share can leave [0, 1]; the share cannot.
                        lo, hi = max(lo, 0.0), min(hi, 1.0)
                    xs.append(position)
                    ys.append(mean)
                    low.append(0 if math.isnan(lo) else mean - lo)
                    high.append(0 if math.isnan(hi) else hi - mean)
            if not xs:
                continue
            # A small sideways shift keeps overlapping error bars of categorical series apart.
            shift = (count - (len(series_labels) - 1) / 2) * 0.06 if categorical else 0
            ax.errorbar([x + shift for x in xs], ys, yerr=[low, high], marker="o", capsize=3,
                        label=f"{series}={label}" if series else None)
        ax.set_title(panel_name(others, combo), fontsize=9)
        ax.set_xlabel(plot["x"])
        if categorical:
            ax.set_xticks(positions)
            ax.set_xticklabels(x_labels, rotation=20 if max(len(x) for x in x_labels) > 6 else 0)
        if plot["log_x"]:
            ax.set_xscale("log")
        if not categorical:
            # Ticks at the grid's own values, written as in the experiment file.
            ax.set_xticks(positions)
            ax.set_xticklabels(x_labels)
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        if plot["log_y"]:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        if plot["unit"] == "share":
            ax.set_ylim(-0.05, 1.05)
        if index % columns == 0:
            unit = f" ({plot['unit']})" if plot["unit"] else ""
            ax.set_ylabel(metric + unit)
        ax.grid(True, alpha=0.3)
        if series and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    for index in range(len(combos), lines * columns):
        grid[index // columns][index % columns].set_visible(False)
    figure.suptitle(f"{spec['experiment']}: {plot['title']} (mean, 95% interval over seeds)", fontsize=11)
    figure.tight_layout()
    figure.savefig(os.path.join(directory, plot["file"]), dpi=100)
    plt.close(figure)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: plot_sweep.py SWEEP_DIR")
    directory = sys.argv[1]
    with open(os.path.join(directory, "plots.json")) as f:
        spec = json.load(f)
    with open(os.path.join(directory, spec["aggregate"]), newline="") as f:
        rows = list(csv.DictReader(f))
    for plot in spec["plots"]:
        draw(spec, plot, rows, directory)
        print(f"plot_sweep: wrote {plot['file']}")


if __name__ == "__main__":
    main()
