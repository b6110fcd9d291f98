"""The paper's findings as analyses: what robustness goes with, over the 66 backbones and your own models.

LR0.FM concludes that (i) bigger image towers are more robust at low resolution, (ii) pre-training data
quality matters more than its size, (iii) fine-tuned and higher-resolution models are less robust. Each claim
is tested here from data, never stated: SAR and WAR per model (`metrics.sar_war_table`) from the paper's
published accuracies plus the models of a results database whose registry name has metadata
(`models.meta.BackboneMeta`), joined with that metadata;

- rank correlations (Spearman) of robustness with image-tower parameters and with pre-training set size,
  with percentile bootstrap intervals over models (`scipy.stats.bootstrap`, seeded);
- paired comparisons built from the metadata: fine-tuned minus its base model, higher native resolution
  minus the same architecture and data at its lowest resolution, curated minus web data and larger minus
  smaller data for the same architecture and resolution; mean difference with a bootstrap interval over
  pairs and a Wilcoxon signed-rank p-value from 5 pairs on (`scipy.stats.wilcoxon`);
- a verdict per claim computed from those intervals at the chosen resolution, for SAR and WAR.

Robustness is each model's SAR/WAR over the datasets it has (the paper's backbones: all 15). Torch-free.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import metrics, reference
from .errors import UserError
from .models.registry import entries, find

LOW_RESOLUTIONS = ("128", "64", "32", "16")
SUMMARY = "mean"  # the mean of a model's SAR (WAR) over 128, 64, 32 and 16 px
METRICS = ("SAR", "WAR")
DEFAULT_WEIGHT = 1.0  # WAR weight of a dataset the paper did not weight
MIN_WILCOXON = 5
CLAIMS = {
    "size": "(i) Bigger image towers are more robust",
    "data": "(ii) Pre-training data quality matters more than its size",
    "finetune": "(iii) Fine-tuned models are less robust than their base",
    "resolution": "(iii) Higher-resolution models are less robust",
}
# paired comparisons: name -> (claim, what the difference is, sign the claim expects)
COMPARISONS = {
    "finetuned": ("finetune", "fine-tuned − base", -1),
    "resolution": ("resolution", "higher native px − lowest", -1),
    "curation": ("data", "curated − web data", +1),
    "data_size": ("data", "larger − smaller data", +1),
}
CORRELATIONS = {"image_params": ("size", "log image params"), "pretrain_pairs": ("data", "log pre-training pairs")}
STATISTIC_COLUMNS = ["claim", "test", "what", "metric", "resolution", "n", "estimate", "low", "high", "p_value",
                     "in_direction"]
MODEL_COLUMNS = ["model", "origin", "family", "native", "arch", "image_params", "pretrain_data", "pretrain_pairs",
                 "curation", "finetuned", "base", "datasets"]


@dataclass
class Findings:
    """The numbers behind each claim (robustness as fractions; x100 in the printed tables)."""

    models: pd.DataFrame  # one row per model: MODEL_COLUMNS
    scores: pd.DataFrame  # model, resolution (128/64/32/16/mean), SAR, WAR, n_datasets
    statistics: pd.DataFrame  # STATISTIC_COLUMNS: one row per (test, metric, resolution)
    pairs: pd.DataFrame  # comparison, reference, model, metric, resolution, reference_value, value, difference
    verdicts: pd.DataFrame  # claim, title, verdict, text (at the first resolution)
    left_out: list[tuple[str, str]]  # (model, why) for database models that do not join
    resolutions: list[str]
    resamples: int
    seed: int
    level: float
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # plots and --out written


# ---------------------------------------------------------------------------------------------------------------
# Statistics


def spearman(x, y, axis: int = -1) -> np.ndarray:
    """Spearman's rho along `axis` (vectorised for the bootstrap); a sample with a constant side gives 0."""
    from scipy.stats import rankdata

    rx = rankdata(x, axis=axis)
    ry = rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    denominator = np.sqrt((rx * rx).sum(axis=axis) * (ry * ry).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(axis=axis) / denominator
    return np.where(denominator > 0, rho, 0.0)


def _interval(data: tuple, statistic, *, paired: bool, resamples: int, level: float, seed: int
              ) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over the samples (NaNs when fewer than 3 samples)."""
    from scipy.stats import bootstrap

    if len(data[0]) < 3:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples: the interval says it
        result = bootstrap(data, statistic, paired=paired, vectorized=True, n_resamples=resamples,
                           confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def rank_correlation(x, y, *, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Spearman rho of paired samples with its p-value and a percentile bootstrap interval over samples."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 3:
        return {"n": n, "estimate": math.nan, "low": math.nan, "high": math.nan, "p_value": math.nan}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test = spearmanr(x, y)
    low, high = _interval((x, y), spearman, paired=True, resamples=resamples, level=level, seed=seed)
    return {"n": n, "estimate": float(test.statistic), "low": low, "high": high, "p_value": float(test.pvalue)}


def paired_difference(differences, *, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean of paired differences, a percentile bootstrap interval over pairs and, from 5 pairs on, the
    two-sided Wilcoxon signed-rank p-value (NaN with fewer pairs or when every difference is zero)."""
    from scipy.stats import wilcoxon

    d = np.asarray(differences, float)
    n = len(d)
    row = {"n": n, "estimate": float(d.mean()) if n else math.nan, "low": math.nan, "high": math.nan,
           "p_value": math.nan}
    if n == 0:
        return row
    row["low"], row["high"] = _interval((d,), lambda s, axis=-1: np.mean(s, axis=axis), paired=False,
                                        resamples=resamples, level=level, seed=seed)
    if n >= MIN_WILCOXON and np.any(d != 0):
        row["p_value"] = float(wilcoxon(d).pvalue)
    return row


def _sign(row) -> int:
    """+1 when the interval lies above 0, -1 below, 0 when it covers 0 or is missing."""
    if row["low"] > 0:
        return 1
    if row["high"] < 0:
        return -1
    return 0


def _strength(rho: float) -> str:
    size = abs(rho)
    return "negligible" if size < 0.1 else "weak" if size < 0.3 else "moderate" if size < 0.5 else "strong"


# ---------------------------------------------------------------------------------------------------------------
# The models: the paper's backbones and the database's models with metadata


def _scores(accuracy: pd.DataFrame, **options) -> pd.DataFrame:
    """SAR/WAR per (model, low resolution) of a tidy accuracy table, plus the mean over the four."""
    frame = metrics.sar_war_table(accuracy, model="model", default_weight=DEFAULT_WEIGHT, **options)
    frame = frame[frame["resolution"].isin(LOW_RESOLUTIONS)]
    full = frame.groupby("model").filter(lambda part: set(part["resolution"]) >= set(LOW_RESOLUTIONS))
    summary = full.groupby("model", sort=False)[list(METRICS)].mean().reset_index()
    summary["resolution"] = SUMMARY
    summary["n_datasets"] = full.groupby("model", sort=False)["n_datasets"].min().to_numpy()
    return pd.concat([frame, summary], ignore_index=True)[["model", "resolution", *METRICS, "n_datasets"]]


def _model_row(entry, origin: str, datasets: str) -> dict:
    meta = entry.meta
    return {"model": entry.name, "origin": origin, "family": entry.family, "native": entry.native,
            "arch": meta.arch, "image_params": meta.image_params, "pretrain_data": meta.pretrain_data,
            "pretrain_pairs": meta.pretrain_pairs, "curation": meta.curation, "finetuned": meta.finetuned,
            "base": meta.base, "datasets": datasets}


def paper_models() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(models, scores) of the paper's 66 backbones under their registry names."""
    names = {e.paper_name: e for e in entries() if e.paper_name}
    accuracy = reference.paper_accuracy().rename(columns={"backbone": "model"})
    accuracy["model"] = accuracy["model"].map(lambda b: names[b].name)
    scores = _scores(accuracy[["model", "dataset", "resolution", "top1"]])
    everything = "all 15 of the paper"
    models = pd.DataFrame([_model_row(e, "paper", everything) for e in names.values() if e.meta is not None],
                          columns=MODEL_COLUMNS)
    return models, scores


def database_models(db: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[tuple[str, str]]]:
    """(models, scores, left out) of a results database: models whose registry name has metadata join."""
    from .report.weights import database_table

    table = database_table(db)
    joined, left_out = [], []
    for label, part in table.groupby("model", sort=False):
        entry = find(label)
        if entry is None:
            left_out.append((label, "not a registry name, so it has no metadata; register it with "
                                    "lr0fm.models.registry.register(name, spec, image_params=..., pretrain_data=...)"))
        elif entry.paper_name:
            left_out.append((label, "one of the paper's backbones, whose published accuracies are used"))
        elif entry.meta is None:
            left_out.append((label, "registered without metadata; pass image_params=, pretrain_data=, ... to "
                                    "register()"))
        else:
            datasets = [d for d in reference.DATASETS if d in set(part["dataset"])]
            datasets += sorted(set(part["dataset"]) - set(datasets))
            joined.append(_model_row(entry, "database", ", ".join(datasets)))
    models = pd.DataFrame(joined, columns=MODEL_COLUMNS)
    if models.empty:
        return models, pd.DataFrame(columns=["model", "resolution", *METRICS, "n_datasets"]), left_out
    mine = table[table["model"].isin(models["model"])]
    return models, _scores(mine), left_out


# ---------------------------------------------------------------------------------------------------------------
# Pairs from the metadata


def _pairs(models: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(comparison, reference model, model) pairs; see the module docstring for the rules."""
    pairs = []
    names = set(models["model"])
    plain = models[(models["finetuned"] == "") & (models["arch"] != "")]
    for row in models.itertuples():
        if row.finetuned and row.base in names:
            pairs.append(("finetuned", row.base, row.model))
    for _, group in plain.dropna(subset=["native"]).groupby(["arch", "pretrain_data"], sort=False):
        lowest = group["native"].min()
        low = group[group["native"] == lowest]
        for reference_model in low["model"]:
            for model in group.loc[group["native"] > lowest, "model"]:
                pairs.append(("resolution", reference_model, model))
    for _, group in plain.groupby(["arch", "native"], sort=False, dropna=False):
        rows = list(group.itertuples())
        for a in rows:
            for b in rows:
                if a.pretrain_data == b.pretrain_data:
                    continue
                if a.curation == "web" and b.curation == "curated":
                    pairs.append(("curation", a.model, b.model))
                elif (a.curation == b.curation and a.pretrain_pairs is not None and b.pretrain_pairs is not None
                      and not pd.isna(a.pretrain_pairs) and not pd.isna(b.pretrain_pairs)
                      and a.pretrain_pairs < b.pretrain_pairs):
                    pairs.append(("data_size", a.model, b.model))
    return pairs


def _pair_table(pairs, scores: pd.DataFrame, resolutions: list[str]) -> pd.DataFrame:
    value = scores.set_index(["model", "resolution"])
    rows = []
    for comparison, reference_model, model in pairs:
        for resolution in resolutions:
            if (reference_model, resolution) not in value.index or (model, resolution) not in value.index:
                continue
            for metric in METRICS:
                a, b = value.at[(reference_model, resolution), metric], value.at[(model, resolution), metric]
                if pd.isna(a) or pd.isna(b):
                    continue
                rows.append({"comparison": comparison, "reference": reference_model, "model": model,
                             "metric": metric, "resolution": resolution, "reference_value": float(a),
                             "value": float(b), "difference": float(b) - float(a)})
    return pd.DataFrame(rows, columns=["comparison", "reference", "model", "metric", "resolution",
                                       "reference_value", "value", "difference"])


# ---------------------------------------------------------------------------------------------------------------
# Verdicts


def _text_interval(row, scale: float = 1.0, digits: int = 2) -> str:
    def number(value):
        return "–" if pd.isna(value) else f"{scale * value:.{digits}f}"

    return f"{number(row['estimate'])} [{number(row['low'])}, {number(row['high'])}]"


def _combine(signs: list[int], expected: int) -> str:
    if all(s == expected for s in signs):
        return "supported"
    if all(s == -expected for s in signs):
        return "contradicted"
    if all(s == 0 for s in signs):
        return "not supported"
    return "mixed"


def _verdicts(statistics: pd.DataFrame, resolution: str, level: float) -> pd.DataFrame:
    at = statistics[statistics["resolution"] == resolution]
    where = f"at {resolution} px" if resolution != SUMMARY else "averaged over 128-16 px"
    ci = f"{round(100 * level)}% CI"
    rows = []

    def get(test, what, metric):
        part = at[(at["test"] == test) & (at["what"] == what) & (at["metric"] == metric)]
        return None if part.empty else part.iloc[0]

    # (i): rank correlation with image parameters
    found = [get("spearman", CORRELATIONS["image_params"][1], m) for m in METRICS]
    if any(r is None or r["n"] < 3 for r in found):
        rows.append(("size", "not enough data", "fewer than 3 models with image parameters"))
    else:
        verdict = _combine([_sign(r) for r in found], +1)
        text = ", ".join(f"{m} ρ = {_text_interval(r)} ({_strength(r['estimate'])})" for m, r in zip(METRICS, found))
        rows.append(("size", verdict, f"{verdict}: {text}, {ci}, {where} over {int(found[0]['n'])} models"))

    # (ii): curated vs web within architectures, against larger vs smaller data and the size correlation
    quality = [get("paired", COMPARISONS["curation"][1], m) for m in METRICS]
    size = [get("paired", COMPARISONS["data_size"][1], m) for m in METRICS]
    correlation = [get("spearman", CORRELATIONS["pretrain_pairs"][1], m) for m in METRICS]
    if any(r is None or r["n"] < 3 for r in quality):
        rows.append(("data", "not enough data", "fewer than 3 curated-vs-web pairs of the same architecture"))
    else:
        verdict = _combine([_sign(r) for r in quality], +1)
        # Quality must also beat size: more data of the same kind raising robustness as much makes it mixed.
        as_much = [m for m, q, s in zip(METRICS, quality, size)
                   if s is not None and s["n"] >= 3 and _sign(s) > 0 and s["estimate"] >= q["estimate"]]
        if verdict == "supported" and as_much:
            verdict = "mixed"
        parts = [f"curated − web {m} {_text_interval(q, 100)} (×100, {int(q['in_direction'])}/{int(q['n'])} "
                 f"pairs higher)" for m, q in zip(METRICS, quality)]
        parts += [f"larger − smaller data {m} {_text_interval(s, 100)} ({int(s['n'])} pairs)"
                  for m, s in zip(METRICS, size) if s is not None]
        parts += [f"{m} ρ with log pairs = {_text_interval(c)}" for m, c in zip(METRICS, correlation)
                  if c is not None and c["n"] >= 3]
        reason = f" (larger data raises {' and '.join(as_much)} as much as curation)" if as_much else ""
        rows.append(("data", verdict, f"{verdict}{reason}: " + "; ".join(parts) + f", {ci}, {where}"))

    # (iii): fine-tuned and higher-resolution models
    for claim, comparison in (("finetune", "finetuned"), ("resolution", "resolution")):
        found = [get("paired", COMPARISONS[comparison][1], m) for m in METRICS]
        if any(r is None or r["n"] < 3 for r in found):
            rows.append((claim, "not enough data", f"fewer than 3 {COMPARISONS[comparison][1]} pairs"))
            continue
        verdict = _combine([_sign(r) for r in found], -1)
        text = "; ".join(f"{m} {_text_interval(r, 100)} (×100, {int(r['in_direction'])}/{int(r['n'])} pairs lower"
                         + (f", Wilcoxon p = {r['p_value']:.2g}" if not pd.isna(r["p_value"]) else "") + ")"
                         for m, r in zip(METRICS, found))
        rows.append((claim, verdict, f"{verdict}: {COMPARISONS[comparison][1]} {text}, {ci}, {where}"))
    return pd.DataFrame([{"claim": c, "title": CLAIMS[c], "verdict": v, "text": t} for c, v, t in rows],
                        columns=["claim", "title", "verdict", "text"])


# ---------------------------------------------------------------------------------------------------------------


def parse_resolutions(resolutions: str | Sequence[str | int] | None) -> list[str]:
    """'16' / [16, 32] / '16,32' -> checked labels; the first is the verdicts' resolution. 'mean' is allowed."""
    if resolutions is None:
        return ["16"]
    items = [resolutions] if isinstance(resolutions, (str, int)) else list(resolutions)
    chosen = []
    for item in items:
        for piece in str(item).split(","):
            label = piece.strip().lower().removesuffix("px").strip()
            if not label:
                continue
            if label not in LOW_RESOLUTIONS and label != SUMMARY:
                raise UserError(f"Unknown resolution {piece.strip()!r} for the findings; use one of "
                                f"{', '.join(LOW_RESOLUTIONS)} (the paper's low resolutions) or {SUMMARY}.")
            if label not in chosen:
                chosen.append(label)
    return chosen or ["16"]


def compute_findings(models: pd.DataFrame, scores: pd.DataFrame, resolutions: Sequence[str] = ("16",), *,
                     resamples: int = 1000, level: float = 0.95, seed: int = 0,
                     left_out: list[tuple[str, str]] | None = None) -> Findings:
    """The statistics and verdicts for joined `models` (MODEL_COLUMNS) and their `scores`.

    Args:
        models: one row per model with its metadata.
        scores: model, resolution, SAR, WAR (fractions).
        resolutions: resolutions to test; the verdicts use the first. The 128-16 px mean is always added.
        resamples, level, seed: the bootstrap (the same seed gives the same intervals).
        left_out: models that did not join, with why (carried into the result).

    Returns:
        A `Findings`.
    """
    if resamples < 1:
        raise UserError(f"--resamples must be at least 1, got {resamples}.")
    if not 0 < level < 1:
        raise UserError(f"The confidence level must lie between 0 and 1, got {level}.")
    tested = list(dict.fromkeys([*resolutions, SUMMARY]))
    rows = []
    for predictor, (claim, what) in CORRELATIONS.items():
        known = models.dropna(subset=[predictor])[["model", predictor]]
        for resolution in tested:
            part = known.merge(scores[scores["resolution"] == resolution], on="model")
            for metric in METRICS:
                part_metric = part.dropna(subset=[metric])
                x = np.log10(part_metric[predictor].to_numpy(float))
                stat = rank_correlation(x, part_metric[metric].to_numpy(float), resamples=resamples, level=level,
                                        seed=seed)
                rows.append({"claim": claim, "test": "spearman", "what": what, "metric": metric,
                             "resolution": resolution, **stat, "in_direction": math.nan})
    pairs = _pair_table(_pairs(models), scores, tested)
    for comparison, (claim, what, expected) in COMPARISONS.items():
        for resolution in tested:
            for metric in METRICS:
                d = pairs[(pairs["comparison"] == comparison) & (pairs["resolution"] == resolution)
                          & (pairs["metric"] == metric)]["difference"].to_numpy(float)
                stat = paired_difference(d, resamples=resamples, level=level, seed=seed)
                rows.append({"claim": claim, "test": "paired", "what": what, "metric": metric,
                             "resolution": resolution, **stat, "in_direction": int(np.sum(expected * d > 0))})
    statistics = pd.DataFrame(rows, columns=STATISTIC_COLUMNS)
    return Findings(models=models.reset_index(drop=True), scores=scores.reset_index(drop=True),
                    statistics=statistics, pairs=pairs, verdicts=_verdicts(statistics, tested[0], level),
                    left_out=list(left_out or []), resolutions=tested, resamples=resamples, seed=seed, level=level)


def findings(db: str | Path | None = None, resolutions: str | Sequence[str | int] | None = None, *,
             resamples: int = 1000, level: float = 0.95, seed: int = 0, paper: bool = True) -> Findings:
    """The paper's findings tested on its 66 backbones plus the metadata-carrying models of `db`.

    Args:
        db: a results database; None uses the default database when it exists (and only the paper otherwise).
        resolutions, resamples, level, seed: see `compute_findings`.
        paper: include the paper's backbones (False: only the database's models).

    Raises:
        UserError: an unknown resolution, a database given but missing or empty, nothing to analyse.
    """
    from .store import DEFAULT_DB

    chosen = parse_resolutions(resolutions)
    parts, left_out, notes = [], [], []
    if paper:
        parts.append(paper_models())
    path = Path(db).expanduser() if db is not None else DEFAULT_DB
    if db is not None or path.is_file():
        models, scores, left_out = database_models(path)
        parts.append((models, scores))
        odd = models[models["datasets"] != ", ".join(reference.DATASETS)]
        for row in odd.itertuples():
            notes.append(f"{row.model}'s SAR and WAR are over its own datasets ({row.datasets}), not the paper's "
                         "15: compare it with the backbones with care.")
    elif not paper:
        raise UserError(f"No results database at {path}; run `lr0fm eval` first or pass --db PATH.")
    models = pd.concat([m for m, _ in parts if not m.empty], ignore_index=True) if any(
        not m.empty for m, _ in parts) else pd.DataFrame(columns=MODEL_COLUMNS)
    if models.empty:
        raise UserError("No model with metadata to analyse; register your models with metadata "
                        "(register(..., image_params=..., pretrain_data=...)) or include the paper's backbones.")
    scores = pd.concat([s for _, s in parts if not s.empty], ignore_index=True)
    result = compute_findings(models, scores, chosen, resamples=resamples, level=level, seed=seed,
                              left_out=left_out)
    result.notes = notes
    return result


# ---------------------------------------------------------------------------------------------------------------
# Plots (matplotlib's object API on the Agg canvas, no pyplot)

PLOT_FILES = {"params": "findings_params.png", "pretrain": "findings_pretrain.png",
              "finetuned": "findings_finetuned.png", "resolution": "findings_resolution.png",
              "curation": "findings_curation.png"}
DPI = 110
USER_COLOUR = "#d62728"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    from .fileio import atomic_path

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return path


def _rho_label(result: Findings, what: str, metric: str, resolution: str) -> str:
    row = result.statistics[(result.statistics["what"] == what) & (result.statistics["metric"] == metric)
                            & (result.statistics["resolution"] == resolution)]
    return "" if row.empty else f"ρ = {_text_interval(row.iloc[0])}"


def _scatter(result: Findings, predictor: str, colour_by: str, path: Path) -> Path | None:
    from matplotlib import colormaps

    resolution = result.resolutions[0]
    frame = result.models.dropna(subset=[predictor]).merge(
        result.scores[result.scores["resolution"] == resolution], on="model")
    if frame.empty:
        return None
    groups = list(dict.fromkeys(frame[colour_by].fillna("")))
    palette = colormaps["tab20"].colors
    figure = _figure(11, 4.2)
    axes = figure.subplots(1, len(METRICS), sharex=True)
    for ax, metric in zip(axes, METRICS):
        for i, group in enumerate(groups):
            part = frame[(frame[colour_by].fillna("") == group) & (frame["origin"] == "paper")]
            ax.scatter(part[predictor].astype(float), 100 * part[metric], s=22, color=palette[i % len(palette)],
                       label=group or "unknown")
        mine = frame[frame["origin"] != "paper"]
        if not mine.empty:
            ax.scatter(mine[predictor].astype(float), 100 * mine[metric], s=90, marker="*", color=USER_COLOUR,
                       label="your models", zorder=3)
            for row in mine.itertuples():
                ax.annotate(row.model, (float(getattr(row, predictor)), 100 * getattr(row, metric)), fontsize=7,
                            xytext=(4, 4), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel({"image_params": "image-tower parameters", "pretrain_pairs": "pre-training pairs"}[predictor])
        ax.set_ylabel(f"{metric} ×100 at {resolution} px" if resolution != SUMMARY else f"{metric} ×100, 128-16 mean")
        ax.set_title(_rho_label(result, CORRELATIONS[predictor][1], metric, resolution), fontsize=9)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    return _save(figure, path)


def _paired(result: Findings, comparison: str, path: Path) -> Path | None:
    resolution = result.resolutions[0]
    pairs = result.pairs[(result.pairs["comparison"] == comparison) & (result.pairs["resolution"] == resolution)]
    if pairs.empty:
        return None
    natives = result.models.set_index("model")["native"]
    figure = _figure(11, 4.2)
    axes = figure.subplots(1, len(METRICS))
    expected = COMPARISONS[comparison][2]
    for ax, metric in zip(axes, METRICS):
        part = pairs[pairs["metric"] == metric]
        for row in part.itertuples():
            if comparison == "resolution":
                x = [float(natives[row.reference]), float(natives[row.model])]
            else:
                x = [0.0, 1.0]
            colour = "#1f77b4" if expected * row.difference > 0 else "#ff7f0e"
            ax.plot(x, [100 * row.reference_value, 100 * row.value], marker="o", color=colour, alpha=0.8)
            ax.annotate(row.model, (x[1], 100 * row.value), fontsize=6, xytext=(3, 0), textcoords="offset points")
        if comparison == "resolution":
            ax.set_xlabel("native resolution (px)")
        else:
            ax.set_xticks([0, 1], {"finetuned": ["base", "fine-tuned"], "curation": ["web data", "curated data"],
                                   "data_size": ["smaller data", "larger data"]}[comparison])
            ax.set_xlim(-0.3, 1.6)
        ax.set_ylabel(f"{metric} ×100 at {resolution} px" if resolution != SUMMARY else f"{metric} ×100, 128-16 mean")
        row = result.statistics[(result.statistics["what"] == COMPARISONS[comparison][1])
                                & (result.statistics["metric"] == metric)
                                & (result.statistics["resolution"] == resolution)].iloc[0]
        ax.set_title(f"{COMPARISONS[comparison][1]}: {_text_interval(row, 100)} over {int(row['n'])} pairs",
                     fontsize=9)
        ax.grid(alpha=0.3)
    return _save(figure, path)


def plot_findings(result: Findings, folder: str | Path) -> list[Path]:
    """The findings' figures as PNG files in `folder` (created); figures without data are not drawn."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        drawn = [_scatter(result, "image_params", "family", folder / PLOT_FILES["params"]),
                 _scatter(result, "pretrain_pairs", "curation", folder / PLOT_FILES["pretrain"]),
                 _paired(result, "finetuned", folder / PLOT_FILES["finetuned"]),
                 _paired(result, "resolution", folder / PLOT_FILES["resolution"]),
                 _paired(result, "curation", folder / PLOT_FILES["curation"])]
    except OSError as error:
        raise UserError(f"Cannot write the plots to {folder} ({error}); pass a writable folder to --plot-dir.") from None
    return [path for path in drawn if path is not None]


# ---------------------------------------------------------------------------------------------------------------
# Output files


def write_numbers(result: Findings, path: str | Path) -> Path:
    """`--out`: .csv writes the statistics table; .json writes statistics, verdicts, pairs, scores, models."""
    import json

    from .fileio import write_text_atomic

    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise UserError(f"Cannot tell the format of {path}; name the file .csv or .json.")
    if suffix == ".csv":
        text = result.statistics.to_csv(index=False)
    else:
        def records(frame):
            return json.loads(frame.to_json(orient="records"))

        text = json.dumps({
            "resolutions": result.resolutions, "resamples": result.resamples, "seed": result.seed,
            "level": result.level, "verdicts": records(result.verdicts), "statistics": records(result.statistics),
            "pairs": records(result.pairs), "scores": records(result.scores), "models": records(result.models),
            "left_out": [{"model": m, "why": w} for m, w in result.left_out], "notes": result.notes,
        }, indent=2) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    except OSError as error:
        raise UserError(f"Cannot write {path} ({error}); pass a writable path to --out.") from None
    return path


__all__ = ["CLAIMS", "Findings", "LOW_RESOLUTIONS", "PLOT_FILES", "SUMMARY", "compute_findings", "database_models", "findings",
           "paired_difference", "paper_models", "parse_resolutions", "plot_findings", "rank_correlation", "spearman",
           "write_numbers"]
