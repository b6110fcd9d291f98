"""The numbers of a report, from stored predictions: accuracy and robustness with bootstrap CIs, SAR/WAR,
rankings, semantic plausibility of low-resolution mistakes, the half-accuracy resolution, each image's lowest
correct resolution, rank stability, and the placing among the paper's backbones.

Everything is a tidy pandas table with fractions (the rendered report shows percent and x100).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import metrics, reference
from ..metrics import NATIVE
from ..resolution import PAPER
from .collect import Collected, DatasetRun, dataset_order, dataset_rank, order_resolutions

# WAR weight of a dataset the paper did not weight (its weights were fitted to its 15 datasets only).
DEFAULT_WEIGHT = 1.0
PAPER_LOW_RESOLUTIONS = tuple(str(r) for r in PAPER if not r.is_native)
TIE_TOLERANCE = 1e-9  # a user model whose score equals a backbone's (up to float noise) ties with it


@dataclass
class ReportTables:
    accuracy: pd.DataFrame
    robustness: pd.DataFrame
    sar_war: pd.DataFrame
    plausibility: pd.DataFrame
    confusions: pd.DataFrame
    compare: pd.DataFrame | None = None
    # (resolution, datasets) -> the paper backbones' SAR/WAR over those datasets, for the ranking plot
    paper_scores: dict[tuple[str, tuple[str, ...]], pd.DataFrame] = field(default_factory=dict)
    default_weight_datasets: list[str] = field(default_factory=list)
    # Robustness beyond SAR/WAR (see `profile_tables`)
    half_accuracy: pd.DataFrame = field(default_factory=pd.DataFrame)
    lowest_correct: pd.DataFrame = field(default_factory=pd.DataFrame)
    breaking_classes: pd.DataFrame = field(default_factory=pd.DataFrame)
    rank_stability: pd.DataFrame = field(default_factory=pd.DataFrame)
    level: float = 0.95
    seed: int = 0
    resamples: int = 1000


def display_dataset(name: str) -> str:
    return reference.DATASET_NAMES.get(name, name)


def dataset_weight(name: str) -> float:
    return float(reference.WAR_WEIGHTS.get(name, DEFAULT_WEIGHT))


def _correctness(run: DatasetRun, k: int) -> dict[str, np.ndarray]:
    return {r: metrics.sample_correctness(run.labels[r], run.top5[r], run.ok[r], k=k) for r in run.resolutions}


def _bootstrap(collected: Collected, seed: int, resamples: int, level: float) -> pd.DataFrame:
    """bootstrap_robustness per model (top-1; top-5 accuracy rows added with metric 'accuracy_top5')."""
    frames = []
    for model in collected.models:
        runs = collected.of(model)
        counts = {r.dataset: r.n_classes for r in runs}
        options = dict(n_resamples=resamples, level=level, seed=seed, class_counts=counts,
                       default_weight=DEFAULT_WEIGHT)
        top1 = metrics.bootstrap_robustness({r.dataset: _correctness(r, 1) for r in runs}, **options)
        top5 = metrics.bootstrap_robustness({r.dataset: _correctness(r, 5) for r in runs}, **options)
        top5 = top5[top5["metric"] == "accuracy"].assign(metric="accuracy_top5")
        frames.append(pd.concat([top1, top5], ignore_index=True).assign(model=model))
    if not frames:
        return pd.DataFrame(columns=["model", "metric", "dataset", "resolution", "estimate", "low", "high"])
    return pd.concat(frames, ignore_index=True)


def _pivot(boot: pd.DataFrame, metric: str, name: str, keys: list[str]) -> pd.DataFrame:
    part = boot[boot["metric"] == metric][keys + ["estimate", "low", "high"]]
    return part.rename(columns={"estimate": name, "low": f"{name}_low", "high": f"{name}_high"})


def accuracy_table(collected: Collected, boot: pd.DataFrame) -> pd.DataFrame:
    keys = ["model", "dataset", "resolution"]
    base = pd.DataFrame([
        {"model": run.model, "dataset": run.dataset, "resolution": resolution,
         "pixels": int(run.rows[resolution]["pixels"]), "n": int(run.rows[resolution]["n"]),
         "n_skipped": int(run.rows[resolution]["n_skipped"]), "n_classes": run.n_classes}
        for run in collected.runs for resolution in run.resolutions
    ], columns=keys + ["pixels", "n", "n_skipped", "n_classes"])
    out = base.merge(_pivot(boot, "accuracy", "top1", keys), on=keys, how="left")
    return out.merge(_pivot(boot, "accuracy_top5", "top5", keys), on=keys, how="left")


def robustness_table(collected: Collected, boot: pd.DataFrame) -> pd.DataFrame:
    keys = ["model", "dataset", "resolution"]
    gamma = _pivot(boot, "relative_robustness", "gamma", keys)
    improved = _pivot(boot, "improved_relative_robustness", "Gamma", keys)
    out = gamma.merge(improved, on=keys, how="outer")
    counts = {(r.model, r.dataset): r.n_classes for r in collected.runs}
    out.insert(3, "n_classes", [counts[(m, d)] for m, d in zip(out["model"], out["dataset"])])
    out.insert(4, "weight", [dataset_weight(d) for d in out["dataset"]])
    out.insert(5, "weight_source", ["paper" if d in reference.WAR_WEIGHTS else "default" for d in out["dataset"]])
    return _sorted(out, collected)


def _sorted(frame: pd.DataFrame, collected: Collected) -> pd.DataFrame:
    """Models in report order, the paper's dataset order, native then large to small resolutions."""
    if frame.empty:
        return frame.reset_index(drop=True)
    model_rank = {m: i for i, m in enumerate(collected.models)}
    resolution_rank = {r: i for i, r in enumerate(order_resolutions(set(frame["resolution"])))}
    key = pd.DataFrame({
        "model": frame["model"].map(model_rank),
        "dataset": frame["dataset"].map({d: i for i, d in enumerate(dataset_order(frame["dataset"]))})
        if "dataset" in frame else 0,
        "resolution": frame["resolution"].map(resolution_rank),
    }, index=frame.index)
    return frame.loc[key.sort_values(list(key.columns), kind="stable").index].reset_index(drop=True)


def sar_war_table(collected: Collected, boot: pd.DataFrame) -> pd.DataFrame:
    """SAR/WAR with CIs per model and low resolution; ranks among models evaluated on the same datasets."""
    keys = ["model", "resolution"]
    out = _pivot(boot, "SAR", "SAR", keys).merge(_pivot(boot, "WAR", "WAR", keys), on=keys, how="outer")
    datasets = []
    for model, resolution in zip(out["model"], out["resolution"]):
        have = [r.dataset for r in collected.of(model) if resolution in r.rows]
        datasets.append(tuple(dataset_order(have)))
    out["n_datasets"] = [len(d) for d in datasets]
    out["datasets"] = [";".join(d) for d in datasets]
    for column in ("SAR", "WAR"):
        out[f"rank_{column}"] = (out.groupby(["resolution", "datasets"])[column]
                                 .rank(ascending=False, method="min").astype("Int64"))
    out["ranked_among"] = out.groupby(["resolution", "datasets"])["model"].transform("count")
    return _sorted(out, collected)


# ---------------------------------------------------------------------------------------------------------------
# Semantic plausibility


def plausibility_tables(collected: Collected, top: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How plausible are low-resolution mistakes?

    For every low resolution: among readable images whose low-resolution top-1 is wrong, the share whose
    wrong answer is among the native-resolution top-5 of the same image; `chance_share` is what a wrong
    answer drawn uniformly from the other C - 1 classes would score (the native top-5 entries other than
    the true class, over C - 1). Also the `top` most frequent (true -> predicted) confusions.
    """
    rows, confusions = [], []
    for run in collected.runs:
        labels = run.labels[NATIVE].astype(np.int64)
        native_top5 = run.top5[NATIVE].astype(np.int64)
        others = ((native_top5 >= 0) & (native_top5 != labels[:, None])).sum(axis=1)
        for resolution in run.resolutions[1:]:
            readable = run.ok[NATIVE] & run.ok[resolution]
            predicted = run.top5[resolution][:, 0].astype(np.int64)
            wrong = readable & (predicted != labels)
            in_top5 = (native_top5 == predicted[:, None]).any(axis=1) & wrong
            n_wrong = int(wrong.sum())
            chance = float(np.mean(others[wrong] / max(run.n_classes - 1, 1))) if n_wrong else float("nan")
            rows.append({"model": run.model, "dataset": run.dataset, "resolution": resolution,
                         "n": int(readable.sum()), "n_wrong": n_wrong, "in_native_top5": int(in_top5.sum()),
                         "share_in_native_top5": int(in_top5.sum()) / n_wrong if n_wrong else float("nan"),
                         "chance_share": chance})
            if not n_wrong:
                continue
            pairs = labels[wrong] * max(run.n_classes, int(predicted.max()) + 1) + predicted[wrong]
            values, counts = np.unique(pairs, return_counts=True)
            width = max(run.n_classes, int(predicted.max()) + 1)
            # Most frequent first; ties by class index so the order is reproducible.
            for position in np.lexsort((values, -counts))[:top]:
                true, guess = divmod(int(values[position]), width)
                confusions.append({"model": run.model, "dataset": run.dataset, "resolution": resolution,
                                   "true": true, "true_name": run.classname(true), "predicted": guess,
                                   "predicted_name": run.classname(guess), "count": int(counts[position]),
                                   "share_of_wrong": int(counts[position]) / n_wrong})
    plausibility = pd.DataFrame(rows, columns=["model", "dataset", "resolution", "n", "n_wrong", "in_native_top5",
                                               "share_in_native_top5", "chance_share"])
    confusion = pd.DataFrame(confusions, columns=["model", "dataset", "resolution", "true", "true_name",
                                                  "predicted", "predicted_name", "count", "share_of_wrong"])
    return plausibility, confusion


# ---------------------------------------------------------------------------------------------------------------
# Placing user models among the paper's 66 backbones


def paper_scores(resolution: str, datasets: tuple[str, ...]) -> pd.DataFrame:
    """The paper backbones' SAR and WAR at `resolution` over `datasets` only (paper weights, correct class
    counts), with family; sorted by WAR, best first."""
    paper = reference.paper_accuracy()
    part = paper[paper["dataset"].isin(datasets) & paper["resolution"].isin([NATIVE, resolution])]
    scores = metrics.sar_war_table(part, model="backbone")
    families = paper.drop_duplicates("backbone").set_index("backbone")["family"]
    scores.insert(1, "family", scores["backbone"].map(families))
    return scores.sort_values(["WAR", "SAR"], ascending=False, kind="stable").reset_index(drop=True)


def _rank(value: float, others: np.ndarray) -> int:
    """1 + the number of backbones strictly better (beyond float noise): a tie shares the backbone's rank."""
    return int(1 + np.sum(others > value + TIE_TOLERANCE))


def _neighbour(scores: pd.DataFrame, column: str, value: float, above: bool) -> str:
    if above:
        better = scores[scores[column] > value + TIE_TOLERANCE]
        return "" if better.empty else str(better.loc[better[column].idxmin(), "backbone"])
    worse = scores[scores[column] <= value + TIE_TOLERANCE]
    return "" if worse.empty else str(worse.loc[worse[column].idxmax(), "backbone"])


def compare_with_paper(collected: Collected, robustness: pd.DataFrame
                       ) -> tuple[pd.DataFrame, dict[tuple[str, tuple[str, ...]], pd.DataFrame]]:
    """Each user model's rank among the paper's backbones at 128/64/32/16, over the shared datasets only.

    SAR and WAR are averages over datasets, so a comparison is only fair over the same datasets: the
    backbones' scores are recomputed from their published accuracies restricted to the paper datasets the
    user model has at that resolution (WAR with the paper's weights). Resolutions the model was not
    evaluated at are skipped; without a shared dataset the row says so (status 'no overlap') and has no rank.
    """
    rows, cache = [], {}
    for model in collected.models:
        runs = collected.of(model)
        for resolution in PAPER_LOW_RESOLUTIONS:
            have = [r.dataset for r in runs if resolution in r.rows]
            if not have:
                continue
            shared = tuple(d for d in reference.DATASETS if d in have)
            row = {"model": model, "resolution": resolution, "datasets": ";".join(shared),
                   "n_datasets": len(shared), "left_out": ";".join(d for d in have if d not in shared)}
            if not shared:
                rows.append({**row, "status": "no overlap"})
                continue
            if (resolution, shared) not in cache:
                cache[(resolution, shared)] = paper_scores(resolution, shared)
            scores = cache[(resolution, shared)]
            mine = robustness[(robustness["model"] == model) & (robustness["resolution"] == resolution)
                              & robustness["dataset"].isin(shared)].set_index("dataset").loc[list(shared)]
            weights = np.array([reference.WAR_WEIGHTS[d] for d in shared])
            user_sar = float(metrics.sar(mine["gamma"].to_numpy()))
            user_war = float(metrics.war(mine["Gamma"].to_numpy(), weights))
            rows.append({**row, "status": "ranked", "SAR": user_sar, "SAR_rank": _rank(user_sar, scores["SAR"].to_numpy()),
                         "WAR": user_war, "WAR_rank": _rank(user_war, scores["WAR"].to_numpy()),
                         "n_backbones": len(scores),
                         "WAR_above": _neighbour(scores, "WAR", user_war, True),
                         "WAR_below": _neighbour(scores, "WAR", user_war, False)})
    columns = ["model", "resolution", "status", "datasets", "n_datasets", "left_out", "SAR", "SAR_rank", "WAR",
               "WAR_rank", "n_backbones", "WAR_above", "WAR_below"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("SAR_rank", "WAR_rank", "n_backbones"):
        frame[column] = frame[column].astype("Int64")
    return frame, cache


# ---------------------------------------------------------------------------------------------------------------
# Robustness beyond SAR/WAR: half-accuracy resolution, lowest correct resolution per image, rank stability

# The half-accuracy resolution halves either the raw top-1 or the top-1 above chance (1 / classes).
HALF_ACCURACY_KINDS = ("top1", "above_chance")
HALF_ACCURACY_COLUMNS = ["model", "dataset", "accuracy", "n_datasets", "native_px", "lowest_px", "half_px",
                         "half_px_low", "half_px_high", "status", "bracket_high_px", "bracket_low_px"]
LOWEST_CORRECT_COLUMNS = ["model", "dataset", "category", "resolution", "pixels", "count", "n_images",
                          "n_unreadable", "fraction", "fraction_low", "fraction_high"]
BREAKING_COLUMNS = ["model", "dataset", "rank", "class", "class_name", "n_correct_native", "median_breaking_px",
                    "resolution", "pixels", "broken", "broken_low", "broken_high"]
RANK_STABILITY_COLUMNS = ["dataset", "split", "n_images", "resolution", "n_models", "models", "rho", "rho_low",
                          "rho_high"]


def _image_groups(collected: Collected) -> list[list[DatasetRun]]:
    """Runs on the same images (dataset, its file-list fingerprint, split, and the same labels in order):
    their images can be resampled jointly."""
    groups: dict[tuple, list[DatasetRun]] = {}
    for run in collected.runs:
        labels = np.ascontiguousarray(run.labels[NATIVE], dtype=np.int64)
        key = (run.dataset, run.dataset_fingerprint, run.split, len(labels), hashlib.sha1(labels.tobytes()).digest())
        groups.setdefault(key, []).append(run)
    return list(groups.values())


def _status(value: float) -> str:
    if np.isnan(value):
        return "undefined"
    return "below lowest" if value == metrics.BELOW_LOWEST else "within range"


def _half_rows(run: DatasetRun, pixels: np.ndarray, accuracy: np.ndarray, boot: np.ndarray, level: float,
               kept: dict) -> list[dict]:
    rows = []
    for kind in HALF_ACCURACY_KINDS:
        chance = 0.0 if kind == "top1" else 1.0 / run.n_classes
        estimate = float(metrics.half_accuracy_resolution(pixels, accuracy, chance))
        resamples = metrics.half_accuracy_resolution(pixels, boot, chance)
        low, high = metrics.percentile_interval(resamples, level, censored=True)
        inside = _status(estimate) == "within range"
        rows.append({"model": run.model, "dataset": run.dataset, "accuracy": kind, "n_datasets": 1,
                     "native_px": int(pixels[0]), "lowest_px": int(pixels[-1]), "half_px": estimate,
                     "half_px_low": float(low), "half_px_high": float(high), "status": _status(estimate),
                     "bracket_high_px": float(pixels[pixels >= estimate].min()) if inside else np.nan,
                     "bracket_low_px": float(pixels[pixels < estimate].max()) if inside else np.nan})
        kept.setdefault((run.model, kind), []).append((estimate, resamples, int(pixels[-1])))
    return rows


def _lowest_correct_rows(run: DatasetRun, index: np.ndarray, point: np.ndarray, boot: np.ndarray,
                         level: float) -> list[dict]:
    low, high = metrics.percentile_interval(boot, level)
    readable = int((index != metrics.UNREADABLE).sum())
    resolutions = run.resolutions
    rows = []
    for column in range(len(resolutions) + 1):
        resolution = resolutions[column - 1] if column else ""
        category = ("wrong at native" if not column else
                    f"≤ {resolution}" if column == len(resolutions) else resolution)
        rows.append({"model": run.model, "dataset": run.dataset, "category": category, "resolution": resolution,
                     "pixels": int(run.rows[resolution]["pixels"]) if column else None,
                     "count": int((index == column - 1).sum()), "n_images": readable,
                     "n_unreadable": len(index) - readable, "fraction": float(point[column]),
                     "fraction_low": float(low[column]), "fraction_high": float(high[column])})
    return rows


def _breaking_rows(run: DatasetRun, index: np.ndarray, pixels: np.ndarray, boot: np.ndarray,
                   level: float) -> list[dict]:
    """Classes with images correct at native, those that break first (highest median breaking resolution,
    then most broken at each resolution from the highest down) ranked first; `boot` holds the shares'
    resamples (`metrics.resampled_class_breaking`)."""
    n_correct, broken, median = metrics.class_breaking(run.labels[NATIVE], index, pixels, run.n_classes)
    low, high = metrics.percentile_interval(boot, level)
    present = np.flatnonzero(n_correct > 0)
    keys = [present] + [-broken[present, k] for k in reversed(range(broken.shape[1]))] + [-median[present]]
    rows = []
    for rank, c in enumerate(present[np.lexsort(keys)], start=1):
        for k, resolution in enumerate(run.resolutions[1:]):
            rows.append({"model": run.model, "dataset": run.dataset, "rank": rank, "class": int(c),
                         "class_name": run.classname(int(c)), "n_correct_native": int(n_correct[c]),
                         "median_breaking_px": float(median[c]), "resolution": resolution,
                         "pixels": int(pixels[k + 1]), "broken": float(broken[c, k]),
                         "broken_low": float(low[c, k]), "broken_high": float(high[c, k])})
    return rows


def _rank_stability_rows(runs: list[DatasetRun], accuracy: dict, level: float) -> list[dict]:
    """Spearman rho of the models' native ranking against each low resolution all of them have."""
    if len(runs) < 3:
        return []
    shared = [r for r in runs[0].resolutions[1:] if all(r in run.rows for run in runs)]
    native = [accuracy[(run.model, NATIVE)] for run in runs]
    rows = []
    for resolution in shared:
        low = [accuracy[(run.model, resolution)] for run in runs]
        rho = metrics.rank_stability(np.array([p for p, _ in native]), np.array([p for p, _ in low]))
        resamples = metrics.rank_stability(np.stack([b for _, b in native], axis=1), np.stack([b for _, b in low], axis=1))
        rho_low, rho_high = metrics.percentile_interval(resamples, level)
        rows.append({"dataset": runs[0].dataset, "split": runs[0].split, "n_images": len(runs[0].labels[NATIVE]),
                     "resolution": resolution, "n_models": len(runs), "models": ";".join(run.model for run in runs),
                     "rho": float(rho), "rho_low": float(rho_low), "rho_high": float(rho_high)})
    return rows


def profile_tables(collected: Collected, *, seed: int = 0, resamples: int = 1000, level: float = 0.95
                   ) -> dict[str, pd.DataFrame]:
    """How a model degrades beyond SAR/WAR, from per-sample predictions, with bootstrap intervals.

    - half_accuracy: per (model, dataset) and aggregated over a model's datasets (dataset None), for raw top-1
      and top-1 above chance, the resolution keeping half the native accuracy (`metrics.half_accuracy_resolution`;
      0 px with status "below lowest" when it never falls that far). The aggregate is the median over datasets
      on a log2 scale (`metrics.median_resolution`): a geometric mean would need numbers for censored datasets.
    - lowest_correct: per (model, dataset) the share of readable images by their lowest resolution still
      correct at every resolution up to native (`metrics.lowest_correct`); the lowest category, "≤ r", holds
      images correct everywhere.
    - breaking_classes: per class, the share of its native-correct images broken by each low resolution and
      its median breaking resolution, classes that break first ranked first; intervals on the shares (the
      median breaking resolution has none: it is a step function of them).
    - rank_stability: per dataset with 3 or more models on the same images, Spearman rho of their native
      top-1 ranking against each shared low resolution.

    Intervals are percentile bootstrap intervals at `level`: images resampled per dataset with the generator
    and draws of the accuracy intervals (`metrics.resampled_means`), jointly for every model and resolution on
    the same images; the aggregate half-accuracy resolution takes each resample's median over datasets.
    """
    stability: list[dict] = []
    kept: dict[tuple[str, str], list] = {}  # (model, kind) -> per dataset (estimate, resamples, lowest px)
    by_run: dict[tuple[str, str], tuple[list[dict], list[dict], list[dict]]] = {}
    for runs in _image_groups(collected):
        runs = [run for run in runs if len(run.resolutions) > 1]
        if not runs:
            continue
        blocks, indices = [], []
        for run in runs:
            correct = np.stack([metrics.sample_correctness(run.labels[r], run.top5[r], run.ok[r])
                                for r in run.resolutions], axis=1)
            indices.append(metrics.lowest_correct(correct))
            blocks += [correct, metrics.lowest_correct_indicators(indices[-1], len(run.resolutions))]
        columns = np.concatenate(blocks, axis=1)
        boot = metrics.resampled_means(columns, resamples, seed=seed, key=runs[0].dataset)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column of unreadable images only
            point = np.nanmean(columns, axis=0)
        accuracy, start = {}, 0
        for run, index in zip(runs, indices):
            width = len(run.resolutions)
            pixels = np.array([run.rows[r]["pixels"] for r in run.resolutions], dtype=np.float64)
            for k, resolution in enumerate(run.resolutions):
                accuracy[(run.model, resolution)] = (point[start + k], boot[:, start + k])
            share = slice(start + width, start + 2 * width + 1)
            by_run[(run.model, run.dataset)] = (
                _half_rows(run, pixels, point[start:start + width], boot[:, start:start + width], level, kept),
                _lowest_correct_rows(run, index, point[share], boot[:, share], level),
                _breaking_rows(run, index, pixels, metrics.resampled_class_breaking(
                    run.labels[NATIVE], index, width, run.n_classes, resamples, seed=seed, key=runs[0].dataset),
                    level))
            start += 2 * width + 1
        stability += _rank_stability_rows(runs, accuracy, level)

    half, lowest, breaking = [], [], []
    for model in collected.models:
        for run in collected.of(model):  # in the paper's dataset order
            if (model, run.dataset) in by_run:
                half_rows, lowest_rows, breaking_rows = by_run[(model, run.dataset)]
                half += half_rows
                lowest += lowest_rows
                breaking += breaking_rows
        for kind in HALF_ACCURACY_KINDS:
            entries = kept.get((model, kind), [])
            if len(entries) < 2:
                continue
            estimate = float(metrics.median_resolution([e[0] for e in entries]))
            medians = metrics.median_resolution(np.stack([e[1] for e in entries], axis=1), axis=1)
            low, high = metrics.percentile_interval(medians, level, censored=True)
            half.append({"model": model, "dataset": None, "accuracy": kind,
                         "n_datasets": int(sum(not np.isnan(e[0]) for e in entries)), "native_px": None,
                         "lowest_px": max(e[2] for e in entries), "half_px": estimate, "half_px_low": float(low),
                         "half_px_high": float(high), "status": _status(estimate), "bracket_high_px": np.nan,
                         "bracket_low_px": np.nan})
    return {
        "half_accuracy": pd.DataFrame(half, columns=HALF_ACCURACY_COLUMNS),
        "lowest_correct": pd.DataFrame(lowest, columns=LOWEST_CORRECT_COLUMNS),
        "breaking_classes": pd.DataFrame(breaking, columns=BREAKING_COLUMNS),
        "rank_stability": pd.DataFrame(sorted(stability, key=lambda row: dataset_rank(row["dataset"])),
                                       columns=RANK_STABILITY_COLUMNS),
    }


# ---------------------------------------------------------------------------------------------------------------


def compute(collected: Collected, *, seed: int = 0, resamples: int = 1000, level: float = 0.95,
            compare_paper: bool = False, top_confusions: int = 5) -> ReportTables:
    boot = _bootstrap(collected, seed, resamples, level)
    robustness = robustness_table(collected, boot)
    plausibility, confusions = plausibility_tables(collected, top_confusions)
    tables = ReportTables(
        accuracy=_sorted(accuracy_table(collected, boot), collected),
        robustness=robustness,
        sar_war=sar_war_table(collected, boot),
        plausibility=_sorted(plausibility, collected),
        confusions=confusions,
        default_weight_datasets=[d for d in dataset_order([r.dataset for r in collected.runs])
                                 if d not in reference.WAR_WEIGHTS],
        level=level, seed=seed, resamples=resamples,
        **profile_tables(collected, seed=seed, resamples=resamples, level=level),
    )
    if compare_paper:
        tables.compare, tables.paper_scores = compare_with_paper(collected, robustness)
    return tables
