"""Report figures, drawn with matplotlib's object API on the Agg canvas (no pyplot: no GUI backend, no
global state), saved as PNG."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..fileio import atomic_path
from ..metrics import NATIVE
from .collect import dataset_order, order_resolutions
from .compute import ReportTables, display_dataset

DPI = 110
USER_COLOUR = "#d62728"
PAPER_COLOUR = "#c4c4c4"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _colours(models: list[str]) -> dict[str, str]:
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return {m: palette[i % len(palette)] for i, m in enumerate(models)}


def _errors(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Asymmetric error bars (2, n) in x100 units; NaN bounds draw no bar."""
    est = frame[column].to_numpy(float)
    low = np.nan_to_num(est - frame[f"{column}_low"].to_numpy(float), nan=0.0)
    high = np.nan_to_num(frame[f"{column}_high"].to_numpy(float) - est, nan=0.0)
    return 100 * np.clip(np.vstack([low, high]), 0, None)


def _save(figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return path


def _legend_entries(axes) -> tuple[list, list[str]]:
    """One legend entry per label over all panels (a model may be missing from the first panel)."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    return list(entries.values()), list(entries)


def accuracy_plot(tables: ReportTables, path: Path) -> Path:
    """Top-1 accuracy against resolution, one panel per dataset, one line per model, CI error bars."""
    accuracy = tables.accuracy
    models = list(dict.fromkeys(accuracy["model"]))
    colours = _colours(models)
    datasets = dataset_order(accuracy["dataset"])
    columns = min(3, len(datasets))
    rows = math.ceil(len(datasets) / columns)
    figure = _figure(4.3 * columns, 3.1 * rows + 0.5)
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel()[len(datasets):]:
        ax.set_visible(False)
    for ax, dataset in zip(axes.ravel(), datasets):
        part = accuracy[accuracy["dataset"] == dataset]
        ticks = set()
        for model in models:
            line = part[part["model"] == model]
            if line.empty:
                continue
            line = line.set_index("resolution").loc[order_resolutions(line["resolution"])].reset_index()
            x = line["pixels"].to_numpy(float)
            ticks.update(int(p) for p in x)
            y = 100 * line["top1"].to_numpy(float)
            ax.errorbar(x, y, yerr=_errors(line, "top1"), color=colours[model], marker="o", markersize=4,
                        linewidth=1.6, capsize=3, label=model)
            native = line["resolution"] == NATIVE
            ax.plot(x[native], y[native], linestyle="none", marker="s", markersize=8, markerfacecolor="none",
                    markeredgecolor=colours[model])
        n_classes = int(part["n_classes"].iloc[0])
        ax.axhline(100 / n_classes, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ticks))
        ax.set_xticklabels([str(t) for t in sorted(ticks)])
        ax.minorticks_off()
        top = float(np.nanmax(100 * part["top1_high"].fillna(part["top1"]))) if len(part) else 100.0
        ax.set_ylim(0, min(100.0, top * 1.08 + 3))
        ax.set_title(display_dataset(dataset), fontsize=11)
        ax.set_xlabel("resolution (px; square = native)", fontsize=9)
        ax.set_ylabel("top-1 accuracy (%)", fontsize=9)
        ax.grid(True, alpha=0.3)
    handles, labels = _legend_entries(axes.ravel())
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), frameon=False, fontsize=9,
                  bbox_to_anchor=(0.5, -0.02))
    figure.suptitle(f"Zero-shot top-1 accuracy vs resolution ({round(100 * tables.level)}% bootstrap CIs; "
                    "dotted: chance)", fontsize=11)
    figure.tight_layout(rect=(0, 0.06 if len(labels) <= 3 else 0.1, 1, 0.97))
    return _save(figure, path)


def sar_war_plot(tables: ReportTables, path: Path) -> Path | None:
    """SAR and WAR (x100) per low resolution, grouped bars per model, CI error bars (None: no low resolution)."""
    frame = tables.sar_war
    if frame.empty:
        return None
    models = list(dict.fromkeys(frame["model"]))
    colours = _colours(models)
    resolutions = order_resolutions(set(frame["resolution"]))
    # Within a resolution only the models evaluated there get a slot, centred on the tick.
    present = {r: [m for m in models if ((frame["model"] == m) & (frame["resolution"] == r)).any()]
               for r in resolutions}
    widest = max(len(v) for v in present.values())
    figure = _figure(min(16.0, max(8.0, 0.45 * len(resolutions) * (widest + 1) * 2)), 3.8)
    axes = figure.subplots(1, 2, squeeze=False)[0]
    width = 0.8 / widest
    for ax, metric in zip(axes, ("SAR", "WAR")):
        for position, resolution in enumerate(resolutions):
            here = present[resolution]
            for slot, model in enumerate(here):
                row = frame[(frame["model"] == model) & (frame["resolution"] == resolution)]
                x = position + width * (slot - (len(here) - 1) / 2)
                value = 100 * float(row[metric].iloc[0])
                errors = _errors(row, metric)
                ax.bar([x], [value], width=width * 0.92, color=colours[model], label=model, yerr=errors,
                       capsize=3, error_kw={"linewidth": 1})
                if widest <= 3:
                    # Above the error bar, so the number never sits on it.
                    ax.annotate(f"{value:.1f}", (x, value + errors[1, 0]), xytext=(0, 2),
                                textcoords="offset points", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(resolutions)))
        ax.set_xticklabels([f"{r} px" for r in resolutions])
        ax.set_ylabel(f"{metric} ×100")
        ax.set_ylim(0, max(105.0, float(np.nanmax(100 * frame[f"{metric}_high"].fillna(frame[metric]))) + 8))
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_title("SAR: mean of γ over datasets" if metric == "SAR" else "WAR: weighted mean of Γ", fontsize=10)
    handles, labels = _legend_entries(axes)
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), frameon=False, fontsize=9,
                  bbox_to_anchor=(0.5, -0.02))
    figure.tight_layout(rect=(0, 0.1 if len(labels) <= 3 else 0.16, 1, 1))
    return _save(figure, path)


def compare_plot(tables: ReportTables, path: Path) -> Path | None:
    """Per LR resolution: the paper's backbones sorted by SAR and by WAR (over the shared datasets), with the
    user's models inserted at their ranks in their own colours."""
    compare = tables.compare
    if compare is None or compare.empty or not (compare["status"] == "ranked").any():
        return None
    ranked = compare[compare["status"] == "ranked"]
    colours = _colours(list(dict.fromkeys(tables.sar_war["model"])))
    groups = list(dict.fromkeys(zip(ranked["resolution"], ranked["datasets"])))
    groups.sort(key=lambda g: -int(g[0]))
    figure = _figure(12.0, 2.6 * len(groups) + 0.8)
    axes = figure.subplots(len(groups), 2, squeeze=False)
    for row, (resolution, datasets) in enumerate(groups):
        shared = tuple(datasets.split(";"))
        scores = tables.paper_scores[(resolution, shared)]
        users = ranked[(ranked["resolution"] == resolution) & (ranked["datasets"] == datasets)]
        for ax, metric in zip(axes[row], ("SAR", "WAR")):
            entries = [(str(b), float(v), False) for b, v in zip(scores["backbone"], scores[metric])]
            entries += [(str(m), float(v), True) for m, v in zip(users["model"], users[metric])]
            # Users after backbones of equal score: a tie sits right next to its backbone.
            entries.sort(key=lambda e: (-round(e[1], 9), e[2]))
            values = 100 * np.array([e[1] for e in entries])
            ax.bar(np.arange(len(entries)) + 1, values, width=0.85,
                   color=[colours.get(e[0], USER_COLOUR) if e[2] else PAPER_COLOUR for e in entries])
            shown = 0
            for position, (name, value, is_user) in enumerate(entries, start=1):
                if not is_user:
                    continue
                rank = int(users.loc[users["model"] == name, f"{metric}_rank"].iloc[0])
                # Staggered heights keep the labels of neighbouring models apart.
                ax.annotate(f"#{rank}", (position, 100 * value), xytext=(0, 3 + 9 * (shown % 3)),
                            textcoords="offset points", ha="center", va="bottom", fontsize=7,
                            color=colours.get(name, USER_COLOUR), fontweight="bold")
                ax.bar([position], [100 * value], width=0.85, color=colours.get(name, USER_COLOUR), label=name)
                shown += 1
            n_shared = len(shared)
            ax.set_title(f"{metric} at {resolution} px: rank among {len(scores)} backbones + yours "
                         f"({n_shared} shared dataset{'s' * (n_shared != 1)})", fontsize=9)
            ax.set_xlim(0, len(entries) + 1)
            ax.set_ylim(0, max(values.max() * 1.25, 10))
            ax.set_ylabel(f"{metric} ×100", fontsize=9)
            ax.set_xticks([])
            ax.grid(True, axis="y", alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("backbones, best to worst (grey: the paper's)", fontsize=9)
    handles, labels = _legend_entries(axes.ravel())
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), frameon=False, fontsize=9,
                  bbox_to_anchor=(0.5, 0.0))
    figure.tight_layout(rect=(0, 0.6 / (2.6 * len(groups) + 0.8) * (1 + (len(labels) - 1) // 3), 1, 1))
    return _save(figure, path)


def lowest_correct_plot(tables: ReportTables, path: Path) -> Path | None:
    """Per dataset, one stacked bar per model: the share of images by the lowest resolution down to which
    they stay correct (grey: wrong already at native). None when there is nothing to draw."""
    from matplotlib import colormaps

    frame = tables.lowest_correct
    if frame.empty:
        return None
    datasets = dataset_order(frame["dataset"])
    resolutions = order_resolutions({r for r in frame["resolution"] if r})
    palette = colormaps["viridis"]
    colour = {r: palette(i / max(len(resolutions) - 1, 1)) for i, r in enumerate(resolutions)}
    bars = max(len(set(frame.loc[frame["dataset"] == d, "model"])) for d in datasets)
    figure = _figure(9.0, sum(0.45 * bars + 0.9 for _ in datasets) + 0.8)
    axes = figure.subplots(len(datasets), 1, squeeze=False)[:, 0]
    for ax, dataset in zip(axes, datasets):
        part = frame[frame["dataset"] == dataset]
        models = list(dict.fromkeys(part["model"]))
        for position, model in enumerate(models):
            left = 0.0
            for _, row in part[part["model"] == model].iterrows():
                width = 100 * float(row["fraction"])
                label = ("wrong at native" if not row["resolution"] else
                         "lowest correct: native" if row["resolution"] == NATIVE else f"{row['category']} px")
                ax.barh([position], [width], left=left, height=0.7, label=label,
                        color=colour[row["resolution"]] if row["resolution"] else PAPER_COLOUR)
                if width >= 6:
                    ax.annotate(f"{width:.0f}", (left + width / 2, position), ha="center", va="center", fontsize=7,
                                color="white" if row["resolution"] and colour[row["resolution"]][1] < 0.6 else "black")
                left += width
        ax.set_yticks(range(len(models)))
        ax.set_yticklabels(models, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_title(display_dataset(dataset), fontsize=10)
    axes[-1].set_xlabel("images (%) by the lowest resolution down to which they stay correct; "
                        "the last band: correct at every resolution", fontsize=9)
    handles, labels = _legend_entries(axes)
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False, fontsize=8,
                  bbox_to_anchor=(0.5, 0.0))
    figure.tight_layout(rect=(0, 0.5 / figure.get_figheight() * (1 + (len(labels) - 1) // 4), 1, 1))
    return _save(figure, path)
