"""The numbers of a report, from stored predictions: accuracy and robustness with bootstrap CIs, SAR/WAR,
rankings, semantic plausibility of low-resolution mistakes, and the placing among the paper's backbones.

Everything is a tidy pandas table with fractions (the rendered report shows percent and x100).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import metrics, reference
from ..metrics import NATIVE
from ..resolution import PAPER
from .collect import Collected, DatasetRun, dataset_order, order_resolutions

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
    )
    if compare_paper:
        tables.compare, tables.paper_scores = compare_with_paper(collected, robustness)
    return tables
