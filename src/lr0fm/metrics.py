"""Accuracy and robustness metrics over stored predictions. numpy (and scipy for the weight fit): no torch here.

The LR0.FM metrics, for a model, dataset d and low resolution r, with top-1 accuracies as fractions:

- relative robustness  gamma = A_r / A_native  (may exceed 1; never clipped);
- improved relative robustness  Gamma = gamma * (1 - exp(-200 * eps**2)),  eps = A_native - 1/C_d,
  which discounts datasets where the model is near chance at native resolution;
- SAR = mean of gamma over datasets;  WAR = sum(w_d * Gamma_d) / sum(w_d).

Beyond SAR/WAR, per (model, dataset): the half-accuracy resolution (where top-1, raw or above chance, falls
to half its native value, on a log2 scale of pixels), each image's lowest resolution still classified
correctly (and which classes break first), and the Spearman stability of the models' ranking across
resolutions; `resampled_means` bootstraps any of them with the same image resamples as `bootstrap_robustness`.

Table functions take a tidy pandas table (one row per model, dataset, resolution) and return tidy tables, so
a command line verb only has to load a table and print the result. pandas and scipy are imported on first use
so that importing this module (the results store does) stays cheap.
"""

from __future__ import annotations

import math
import time
import warnings
import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .errors import UserError
from .resolution import NATIVE_TEXT, Resolution, order

if TYPE_CHECKING:
    import pandas as pd


def accuracy_summary(labels: np.ndarray, top5: np.ndarray, n_classes: int) -> dict:
    """Top-1, top-5 (fractions), per-class recall and its mean over the classes present in `labels`."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return {"n": 0, "top1": float("nan"), "top5": float("nan"), "mean_per_class_recall": float("nan"),
                "per_class_recall": [None] * n_classes}
    top5 = np.asarray(top5, dtype=np.int64).reshape(len(labels), -1)
    hit1 = top5[:, 0] == labels
    hit5 = (top5 == labels[:, None]).any(axis=1)
    per_class = []
    for c in range(n_classes):
        members = labels == c
        per_class.append(float(hit1[members].mean()) if members.any() else None)
    present = [r for r in per_class if r is not None]
    return {
        "n": int(len(labels)),
        "top1": float(hit1.mean()),
        "top5": float(hit5.mean()),
        "mean_per_class_recall": float(np.mean(present)),
        "per_class_recall": per_class,
    }


# ---------------------------------------------------------------------------------------------------------------
# Element-wise metrics

ALPHA = 200.0  # sharpness of the near-chance discount (the paper's alpha)
NATIVE = NATIVE_TEXT
ROBUSTNESS_COLUMNS = ("relative_robustness", "improved_relative_robustness")


def relative_robustness(accuracy, native_accuracy, *, paper_compat: bool = False):
    """gamma = A_r / A_native, element-wise; NaN where the native accuracy is missing or zero.

    Units cancel, so percent or fractions both work as long as they match. Values above 1 are kept.
    `paper_compat` takes abs() like the authors' script (a no-op for real accuracies).
    """
    accuracy = np.asarray(accuracy, dtype=np.float64)
    native_accuracy = np.asarray(native_accuracy, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma = np.where(native_accuracy > 0, accuracy / native_accuracy, np.nan)
    if paper_compat:
        gamma = np.abs(gamma)
    return gamma[()]


def chance_discount(native_accuracy, n_classes, *, percent: bool = False, paper_compat: bool = False):
    """E = 1 - exp(-ALPHA * eps**2) with eps = A_native - 1/C: about 0 at chance, 1 from 20 points above it."""
    native = np.asarray(native_accuracy, dtype=np.float64)
    if percent:
        native = native / 100
    gap = native - 1.0 / np.asarray(n_classes, dtype=np.float64)
    if paper_compat:
        # The script writes e ** x with e = math.exp(1); kept for bit-identical results.
        return (1.0 - np.power(math.exp(1), -ALPHA * gap**2))[()]
    return (-np.expm1(-ALPHA * gap**2))[()]


def improved_relative_robustness(accuracy, native_accuracy, n_classes, *, percent: bool = False,
                                 paper_compat: bool = False):
    """Gamma = gamma * chance_discount(A_native, C), element-wise. `percent`: accuracies are in percent."""
    gamma = relative_robustness(accuracy, native_accuracy, paper_compat=paper_compat)
    improved = gamma * chance_discount(native_accuracy, n_classes, percent=percent, paper_compat=paper_compat)
    if paper_compat:
        improved = np.abs(improved)
    return np.asarray(improved)[()]


def sar(relative, axis: int = -1):
    """Simple aggregated robustness: mean of gamma over datasets (along `axis`), ignoring NaN entries."""
    relative = np.asarray(relative, dtype=np.float64)
    present = ~np.isnan(relative)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(present, relative, 0.0).sum(axis) / present.sum(axis))[()]


def war(improved, weights, axis: int = -1):
    """Weighted aggregated robustness: sum(w * Gamma) / sum(w) over datasets (along `axis`), ignoring NaN.

    `weights` broadcasts against `improved`; the normalisation uses only the weights of datasets present.
    """
    improved = np.asarray(improved, dtype=np.float64)
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), improved.shape)
    present = ~np.isnan(improved)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((np.where(present, improved * weights, 0.0).sum(axis))
                / np.where(present, weights, 0.0).sum(axis))[()]


# ---------------------------------------------------------------------------------------------------------------
# Lookups shared by the table functions


def _resolution_key(resolution, native: str = NATIVE) -> str:
    """Canonical text of a table's resolution ("native", "16"), whatever form the table used (16, 16.0, "16",
    "Native"); `native` is the label the table uses for native resolution."""
    if isinstance(resolution, str) and resolution.strip().lower() == native.lower():
        return NATIVE
    return str(Resolution(resolution))


def _class_count_lookup(datasets, class_counts: Mapping[str, int] | None, table_counts: Mapping[str, int],
                        paper_compat: bool) -> dict[str, int]:
    """Class count per dataset: explicit argument, then the table's n_classes column, then the paper's."""
    from . import reference

    known = dict(reference.PAPER_SCRIPT_CLASS_COUNTS if paper_compat else reference.CLASS_COUNTS)
    known.update(table_counts)
    known.update(class_counts or {})
    missing = sorted({d for d in datasets if d not in known})
    if missing:
        raise UserError(f"No class count for dataset(s) {', '.join(missing)}: pass class_counts={{name: count}} "
                        "or add an n_classes column to the table.")
    return {d: int(known[d]) for d in datasets}


def _weight_lookup(datasets, weights: Mapping[str, float] | None, default_weight: float | None) -> dict[str, float]:
    """WAR weight per dataset. Weights were fitted for the paper's 15 datasets, so others need a decision:
    an explicit `weights` entry or `default_weight`; otherwise this is an error rather than a silent guess."""
    from . import reference

    table = reference.WAR_WEIGHTS if weights is None else weights
    missing = sorted({d for d in datasets if d not in table})
    if missing and default_weight is None:
        raise UserError(f"No WAR weight for dataset(s) {', '.join(missing)}: pass weights={{name: weight}} "
                        "(e.g. from fit_war_weights) or default_weight=.")
    result = {d: float(table.get(d, default_weight)) for d in datasets}
    bad = [d for d, w in result.items() if not (math.isfinite(w) and w >= 0)]
    if bad or (result and sum(result.values()) <= 0):
        raise UserError(f"WAR weights must be non-negative with a positive sum; check {', '.join(bad) or 'all'}.")
    return result


def _model_keys(table: pd.DataFrame, model: str | Sequence[str] | None) -> list[str]:
    if model is None:
        for candidate in ("model", "model_spec", "backbone"):
            if candidate in table.columns:
                return [candidate]
        raise UserError("The table has no model column (model, model_spec or backbone); name it with model=.")
    keys = [model] if isinstance(model, str) else list(model)
    missing = [k for k in keys if k not in table.columns]
    if missing:
        raise UserError(f"The table has no column(s) {', '.join(missing)}; columns are {', '.join(table.columns)}.")
    return keys


def _dataset_order(datasets) -> list[str]:
    """The paper's dataset order first, then any others in order of appearance."""
    from . import reference

    seen = list(dict.fromkeys(datasets))
    return [d for d in reference.DATASETS if d in seen] + [d for d in seen if d not in reference.DATASETS]


# ---------------------------------------------------------------------------------------------------------------
# Tidy tables


def robustness_table(table: pd.DataFrame, *, model: str | Sequence[str] | None = None, accuracy: str = "top1",
                     native: str = NATIVE, percent: bool | None = None,
                     class_counts: Mapping[str, int] | None = None, paper_compat: bool = False) -> pd.DataFrame:
    """gamma and Gamma for every (model, dataset, low resolution) of a tidy accuracy table.

    `table` has one row per (model, dataset, resolution) with columns `dataset`, `resolution` (the label
    `native` for the model's own size, or pixels), the `accuracy` column, and the model key: `model` names one
    or more columns; by default the first present of "model", "model_spec", "backbone". An optional
    `n_classes` column supplies class counts for datasets the paper does not list.

    `percent`: whether accuracies are in percent; None decides from the data (percent if any exceeds 1).
    `paper_compat`: use the authors' script's class counts (Food101 and FGVC Aircraft as 102) and abs(), to
    reproduce their released files; the default uses the correct class counts.

    Returns one row per low-resolution cell (native rows become `native_accuracy`): the model key columns,
    dataset, resolution (text), accuracy and native_accuracy (fractions), n_classes, relative_robustness,
    improved_relative_robustness. A missing or zero native accuracy gives NaN robustness.
    """
    import pandas as pd

    keys = _model_keys(table, model)
    needed = [c for c in ("dataset", "resolution", accuracy) if c not in table.columns]
    if needed:
        raise UserError(f"The table has no column(s) {', '.join(needed)}; it needs dataset, resolution, {accuracy}.")
    extra = ["n_classes"] if "n_classes" in table.columns else []
    frame = table[keys + ["dataset", "resolution", accuracy] + extra].copy()
    frame["dataset"] = frame["dataset"].astype(str)
    frame["resolution"] = [_resolution_key(r, native) for r in frame["resolution"]]
    frame[accuracy] = pd.to_numeric(frame[accuracy], errors="coerce").astype(np.float64)
    duplicated = frame.duplicated(keys + ["dataset", "resolution"], keep=False)
    if duplicated.any():
        first = frame.loc[duplicated, keys + ["dataset", "resolution"]].iloc[0].tolist()
        raise UserError(f"The table has more than one row for {first}; filter it (e.g. by protocol) or add the "
                        "distinguishing column to model=.")
    values = frame[accuracy].to_numpy()
    if percent is None:
        percent = bool(np.nanmax(values, initial=0.0) > 1.0)
    frame["accuracy"] = values / 100 if percent else values

    table_counts = {}
    if extra:
        counts = frame.dropna(subset=["n_classes"]).groupby("dataset")["n_classes"].agg(lambda s: set(s.astype(int)))
        conflicting = [d for d, s in counts.items() if len(s) > 1]
        if conflicting:
            raise UserError(f"n_classes differs between rows of dataset(s) {', '.join(conflicting)}.")
        table_counts = {d: next(iter(s)) for d, s in counts.items()}
    counts = _class_count_lookup(frame["dataset"].unique(), class_counts, table_counts, paper_compat)

    is_native = frame["resolution"] == NATIVE
    native_frame = frame.loc[is_native, keys + ["dataset", "accuracy"]].rename(
        columns={"accuracy": "native_accuracy"})
    out = frame.loc[~is_native, keys + ["dataset", "resolution", "accuracy"]].merge(
        native_frame, on=keys + ["dataset"], how="left", sort=False)
    out["n_classes"] = out["dataset"].map(counts).astype(np.int64)
    a, a_native = out["accuracy"].to_numpy(), out["native_accuracy"].to_numpy()
    out["relative_robustness"] = relative_robustness(a, a_native, paper_compat=paper_compat)
    out["improved_relative_robustness"] = improved_relative_robustness(
        a, a_native, out["n_classes"].to_numpy(), paper_compat=paper_compat)
    return out.reset_index(drop=True)


def _as_robustness(table: pd.DataFrame, keys: list[str], **options) -> pd.DataFrame:
    """`robustness_table`'s output, computed from accuracies unless the table already is one."""
    if set(ROBUSTNESS_COLUMNS) <= set(table.columns):
        frame = table.copy()
        frame["resolution"] = [_resolution_key(r, options["native"]) for r in frame["resolution"]]
        return frame
    return robustness_table(table, model=keys, **options)


def sar_war_table(table: pd.DataFrame, *, model: str | Sequence[str] | None = None, accuracy: str = "top1",
                  native: str = NATIVE, percent: bool | None = None, class_counts: Mapping[str, int] | None = None,
                  weights: Mapping[str, float] | None = None, default_weight: float | None = None,
                  paper_compat: bool = False) -> pd.DataFrame:
    """SAR and WAR per (model, low resolution), over the datasets each model has at that resolution.

    `table` is a tidy accuracy table (see `robustness_table`, whose options apply) or `robustness_table`'s
    output. `weights` default to the paper's WAR weights; a dataset without a weight is an error unless
    `default_weight` is given (the paper's weights were fitted to its 15 datasets only).

    Returns the model key columns, resolution, SAR, WAR (fractions; x100 for the paper's tables) and
    n_datasets (datasets with a finite gamma: compare models only over the same datasets).
    """
    keys = _model_keys(table, model)
    frame = _as_robustness(table, keys, accuracy=accuracy, native=native, percent=percent,
                           class_counts=class_counts, paper_compat=paper_compat)
    weight = _weight_lookup(frame["dataset"].unique(), weights, default_weight)
    w = frame["dataset"].map(weight).to_numpy(dtype=np.float64)
    gamma = frame["relative_robustness"].to_numpy(dtype=np.float64)
    improved = frame["improved_relative_robustness"].to_numpy(dtype=np.float64)
    has_gamma, has_improved = ~np.isnan(gamma), ~np.isnan(improved)
    parts = frame[keys + ["resolution"]].copy()
    parts["_gamma"] = np.where(has_gamma, gamma, 0.0)
    parts["_n"] = has_gamma.astype(np.int64)
    parts["_weighted"] = np.where(has_improved, w * improved, 0.0)
    parts["_weight"] = np.where(has_improved, w, 0.0)
    sums = parts.groupby(keys + ["resolution"], sort=False, dropna=False).sum().reset_index()
    with np.errstate(invalid="ignore", divide="ignore"):
        sums["SAR"] = sums["_gamma"] / sums["_n"]
        sums["WAR"] = sums["_weighted"] / sums["_weight"]
    sums["n_datasets"] = sums["_n"]
    return sums[keys + ["resolution", "SAR", "WAR", "n_datasets"]]


# ---------------------------------------------------------------------------------------------------------------
# WAR weights: Spearman agreement between the aggregate ranking of models and each dataset's own ranking


def _standardised_ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks down axis 0, centred, unit norm: the dot product of two columns is Spearman's rho.

    A constant column has no ranking; it becomes NaN.
    """
    from scipy.stats import rankdata

    ranks = rankdata(values, axis=0)
    ranks -= ranks.mean(axis=0)
    norm = np.sqrt((ranks**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return ranks / np.where(norm > 0, norm, np.nan)


def _robustness_matrices(table: pd.DataFrame, resolution, *, model, accuracy, native, percent, class_counts,
                         paper_compat):
    """(model labels, datasets, gamma (M, D), Gamma (M, D), dropped models) at one resolution, complete rows."""
    keys = _model_keys(table, model)
    frame = _as_robustness(table, keys, accuracy=accuracy, native=native, percent=percent,
                           class_counts=class_counts, paper_compat=paper_compat)
    target = _resolution_key(resolution, native)
    frame = frame[frame["resolution"] == target]
    if frame.empty:
        raise UserError(f"The table has no rows at resolution {target}.")
    datasets = _dataset_order(frame["dataset"])
    index = keys + ["dataset"]
    gamma = frame.set_index(index)["relative_robustness"].unstack("dataset").reindex(columns=datasets)
    improved = frame.set_index(index)["improved_relative_robustness"].unstack("dataset").reindex(
        index=gamma.index, columns=datasets)
    complete = gamma.notna().all(axis=1) & improved.notna().all(axis=1)
    labels = [k if isinstance(k, str) else " / ".join(map(str, k)) for k in gamma.index]
    dropped = [label for label, ok in zip(labels, complete) if not ok]
    kept = [label for label, ok in zip(labels, complete) if ok]
    if len(kept) < 3:
        raise UserError(f"Need at least 3 models with every dataset at {target} px to rank them; found {len(kept)}.")
    return (kept, datasets, gamma[complete].to_numpy(np.float64), improved[complete].to_numpy(np.float64),
            dropped)


def _correlations(gamma: np.ndarray, improved: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per dataset: rho(SAR, gamma_d) and rho(WAR_w, Gamma_d) over the models (rows)."""
    sar_rank = _standardised_ranks(gamma.mean(axis=1))
    war_rank = _standardised_ranks(improved @ (weights / weights.sum()))
    return sar_rank @ _standardised_ranks(gamma), war_rank @ _standardised_ranks(improved)


def war_correlations(table: pd.DataFrame, weights: Mapping[str, float] | None = None, *, resolution=16,
                     model: str | Sequence[str] | None = None, accuracy: str = "top1", native: str = NATIVE,
                     percent: bool | None = None, class_counts: Mapping[str, int] | None = None,
                     default_weight: float | None = None, paper_compat: bool = False) -> pd.DataFrame:
    """How well SAR and WAR rankings of the models agree with each dataset's own ranking, at one resolution.

    Spearman rho over the models that have every dataset: `rho_sar` = rho(SAR, gamma_d), `rho_war` =
    rho(WAR, Gamma_d) with `weights` (default: the paper's). Table options as in `robustness_table`.
    Returns columns dataset, weight, rho_sar, rho_war.
    """
    import pandas as pd

    _, datasets, gamma, improved, _ = _robustness_matrices(
        table, resolution, model=model, accuracy=accuracy, native=native, percent=percent,
        class_counts=class_counts, paper_compat=paper_compat)
    weight = _weight_lookup(datasets, weights, default_weight)
    w = np.array([weight[d] for d in datasets])
    rho_sar, rho_war = _correlations(gamma, improved, w)
    return pd.DataFrame({"dataset": datasets, "weight": w, "rho_sar": rho_sar, "rho_war": rho_war})


def fit_war_weights(table: pd.DataFrame, resolution=16, *, objective_datasets: Sequence[str] | None = None,
                    low_correlation: float = 0.9, floor: float = 0.95, bounds: tuple[float, float] = (0.01, 1.0),
                    penalty: float = 10.0, seed: int = 0, maxiter: int = 1000, popsize: int = 15,
                    model: str | Sequence[str] | None = None, accuracy: str = "top1", native: str = NATIVE,
                    percent: bool | None = None, class_counts: Mapping[str, int] | None = None,
                    paper_compat: bool = False) -> dict:
    """Search WAR dataset weights that make the WAR ranking of models agree with the datasets SAR overlooks.

    Maximises the mean over `objective_datasets` of rho(WAR_w, Gamma_d) (Spearman over models), subject to
    rho(WAR_w, Gamma_d) >= `floor` * rho(SAR, gamma_d) for every dataset (any shortfall costs more than the
    objective can gain, plus `penalty` per unit to steer towards feasibility), with each weight in `bounds`;
    the result is scaled so the largest weight is 1. The paper fitted its weights at 16 px with a 0.95 factor
    and a subset of datasets in the objective, neither published exactly; by default the subset here is the
    datasets whose SAR agreement is below `low_correlation` (all datasets if none is).

    The objective is a step function of the weights, so the search is scipy's differential evolution (seeded,
    hence deterministic), evaluating the whole population in one vectorised step. Models missing any dataset
    at `resolution` are left out and listed. Table options as in `robustness_table`.

    Returns a dict: weights {dataset: w}, correlations (DataFrame: dataset, weight, rho_sar, rho_war,
    in_objective), mean_rho_sar, mean_rho_war, objective_datasets, violations (datasets below the floor),
    resolution, n_models, dropped_models, seed, seconds.
    """
    import pandas as pd
    from scipy.optimize import differential_evolution

    started = time.perf_counter()
    models, datasets, gamma, improved, dropped = _robustness_matrices(
        table, resolution, model=model, accuracy=accuracy, native=native, percent=percent,
        class_counts=class_counts, paper_compat=paper_compat)
    ranks_improved = _standardised_ranks(improved)
    rho_sar, _ = _correlations(gamma, improved, np.ones(len(datasets)))
    if objective_datasets is None:
        chosen = [d for d, rho in zip(datasets, rho_sar) if rho < low_correlation] or list(datasets)
    else:
        chosen = list(objective_datasets)
        unknown = [d for d in chosen if d not in datasets]
        if unknown:
            raise UserError(f"objective_datasets {', '.join(unknown)} are not in the table at this resolution.")
    in_objective = np.array([d in chosen for d in datasets])
    minimum = floor * np.nan_to_num(rho_sar, nan=-1.0)

    def loss(population: np.ndarray) -> np.ndarray:
        # population: (datasets, candidates); WAR's ranking ignores the weights' scale, so no normalising.
        rho = ranks_improved.T @ _standardised_ranks(improved @ population)
        rho = np.nan_to_num(rho, nan=0.0)
        shortfall = np.clip(minimum[:, None] - rho, 0.0, None).sum(axis=0)
        # The step of 2 (the objective's whole range) puts every feasible point ahead of every infeasible one;
        # the linear part still guides the search towards feasibility.
        return -rho[in_objective].mean(axis=0) + penalty * shortfall + 2.0 * (shortfall > 0)

    low, high = bounds
    if not 0 < low <= high:
        raise UserError(f"bounds must satisfy 0 < low <= high, got {bounds}.")
    result = differential_evolution(loss, [(low, high)] * len(datasets), seed=seed, maxiter=maxiter,
                                    popsize=popsize, tol=0.0, polish=False, vectorized=True, updating="deferred")
    weights = result.x / result.x.max()
    rho_sar, rho_war = _correlations(gamma, improved, weights)
    correlations = pd.DataFrame({"dataset": datasets, "weight": weights, "rho_sar": rho_sar, "rho_war": rho_war,
                                 "in_objective": in_objective})
    return {
        "weights": dict(zip(datasets, weights.tolist())),
        "correlations": correlations,
        "mean_rho_sar": float(np.nanmean(rho_sar)),
        "mean_rho_war": float(np.nanmean(rho_war)),
        "objective_datasets": chosen,
        "violations": [d for d, r, m in zip(datasets, rho_war, minimum) if r < m - 1e-12],
        "resolution": _resolution_key(resolution, native),
        "n_models": len(models),
        "dropped_models": dropped,
        "seed": seed,
        "seconds": time.perf_counter() - started,
    }


# ---------------------------------------------------------------------------------------------------------------
# Bootstrap confidence intervals from per-sample correctness

_BOOTSTRAP_BLOCK = 2_000_000  # resample-count entries held at once (~16 MB each array)


def sample_correctness(labels: np.ndarray, top5: np.ndarray, ok: np.ndarray | None = None, k: int = 1) -> np.ndarray:
    """Per-sample top-k correctness as floats: 1.0 hit, 0.0 miss, NaN for unreadable samples (ok False).

    Takes the arrays the results store returns for one cell: labels (n,), top5 (n, >=k), ok (n,).
    """
    labels = np.asarray(labels, dtype=np.int64)
    top = np.asarray(top5, dtype=np.int64).reshape(len(labels), -1)[:, :k]
    correct = (top == labels[:, None]).any(axis=1).astype(np.float64)
    if ok is not None:
        correct[~np.asarray(ok, dtype=bool)] = np.nan
    return correct


def _resample_counts(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """How often each of n samples is drawn in each of `count` resamples of size n: (count, n) floats."""
    drawn = rng.integers(0, n, size=(count, n))
    drawn += (np.arange(count) * n)[:, None]
    return np.bincount(drawn.ravel(), minlength=count * n).reshape(count, n).astype(np.float64)


def _resample_blocks(rng: np.random.Generator, n: int, n_resamples: int):
    """The resample counts of n samples in blocks of rows: (start, stop, (stop - start, n) counts). The one
    place that draws resamples, so every statistic computed from the same (seed, key) sees the same ones."""
    block = max(1, _BOOTSTRAP_BLOCK // max(n, 1))
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        yield start, stop, _resample_counts(rng, n, stop - start)


def _bootstrap_rng(seed: int, key: str) -> np.random.Generator:
    """The generator of a dataset's resamples: seeded by (seed, dataset name), independent of other datasets."""
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def _resampled_accuracy(columns: list[np.ndarray], n_resamples: int, rng: np.random.Generator,
                        paired: bool) -> np.ndarray:
    """Bootstrap accuracies, (n_resamples, len(columns)). Paired: one set of resamples for every column."""
    groups = [columns] if paired else [[c] for c in columns]
    out = []
    for group in groups:
        values = np.stack(group, axis=1)
        n = len(values)
        # Hits and readable flags side by side: one product gives both numerator and denominator.
        stacked = np.concatenate([np.nan_to_num(values, nan=0.0), (~np.isnan(values)).astype(np.float64)], axis=1)
        sums = np.empty((n_resamples, stacked.shape[1]))
        for start, stop, counts in _resample_blocks(rng, n, n_resamples):
            sums[start:stop] = counts @ stacked
        width = len(group)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(sums[:, :width] / sums[:, width:])
    return np.concatenate(out, axis=1)


def bootstrap_robustness(correct: Mapping[str, Mapping], *, n_resamples: int = 1000, level: float = 0.95,
                         seed: int = 0, paired: bool = True, native: str = NATIVE,
                         class_counts: Mapping[str, int] | None = None, weights: Mapping[str, float] | None = None,
                         default_weight: float | None = None, paper_compat: bool = False) -> pd.DataFrame:
    """Percentile bootstrap CIs of accuracy, gamma, Gamma, SAR and WAR for one model.

    `correct[dataset][resolution]` is a per-sample correctness array over that dataset's test images, in
    the same sample order at every resolution (bool, or float with NaN for unreadable samples, as from
    `sample_correctness`); each dataset needs its native resolution. Test images are resampled per dataset;
    with `paired` (the default) one set of resample indices serves every resolution of a dataset, so gamma's
    interval reflects the paired design. Datasets are resampled independently, from a generator seeded by
    (`seed`, dataset name), so a dataset's resamples do not depend on which other datasets are present.
    SAR and WAR at a resolution cover the datasets that have it. Class counts and weights as in
    `sar_war_table`.

    Returns a DataFrame with columns metric ("accuracy", "relative_robustness",
    "improved_relative_robustness", "SAR", "WAR"), dataset (None for SAR/WAR), resolution, estimate, low,
    high (fractions; `level` two-sided). The dataset of SAR and WAR rows is missing (None/NaN).
    """
    import pandas as pd

    if not 0 < level < 1:
        raise UserError(f"level must be between 0 and 1, got {level}.")
    if n_resamples < 1:
        raise UserError(f"n_resamples must be at least 1, got {n_resamples}.")
    datasets = _dataset_order(correct)
    counts = _class_count_lookup(datasets, class_counts, {}, paper_compat)
    weight = _weight_lookup(datasets, weights, default_weight)
    quantiles = [(1 - level) / 2, (1 + level) / 2]
    rows: list[dict] = []
    per_resolution: dict[str, list[tuple[str, float, float, np.ndarray, np.ndarray]]] = {}

    def add(metric, dataset, resolution, estimate, resamples):
        low, high = np.nanquantile(resamples, quantiles) if np.isfinite(resamples).any() else (np.nan, np.nan)
        rows.append({"metric": metric, "dataset": dataset, "resolution": resolution, "estimate": float(estimate),
                     "low": float(low), "high": float(high)})

    for dataset in datasets:
        cells = {_resolution_key(r, native): np.asarray(v, dtype=np.float64).ravel()
                 for r, v in correct[dataset].items()}
        if NATIVE not in cells:
            raise UserError(f"Dataset {dataset} has no {native!r} resolution; robustness is relative to it.")
        resolutions = [str(r) for r in order(cells)]
        columns = [cells[r] for r in resolutions]
        if paired and len({len(c) for c in columns}) > 1:
            raise UserError(f"Dataset {dataset} has different sample counts per resolution "
                            f"({', '.join(f'{r}: {len(cells[r])}' for r in resolutions)}); pairing needs the same "
                            "test images at every resolution (or pass paired=False).")
        boot = _resampled_accuracy(columns, n_resamples, _bootstrap_rng(seed, dataset), paired)
        with np.errstate(invalid="ignore"):
            point = np.array([np.nanmean(c) if (~np.isnan(c)).any() else np.nan for c in columns])
        for i, resolution in enumerate(resolutions):
            add("accuracy", dataset, resolution, point[i], boot[:, i])
        native_point, native_boot = point[0], boot[:, 0]
        for i, resolution in enumerate(resolutions[1:], start=1):
            gamma_point = relative_robustness(point[i], native_point, paper_compat=paper_compat)
            gamma_boot = relative_robustness(boot[:, i], native_boot, paper_compat=paper_compat)
            improved_point = improved_relative_robustness(point[i], native_point, counts[dataset],
                                                          paper_compat=paper_compat)
            improved_boot = improved_relative_robustness(boot[:, i], native_boot, counts[dataset],
                                                         paper_compat=paper_compat)
            add("relative_robustness", dataset, resolution, gamma_point, gamma_boot)
            add("improved_relative_robustness", dataset, resolution, improved_point, improved_boot)
            per_resolution.setdefault(resolution, []).append(
                (dataset, float(gamma_point), float(improved_point), gamma_boot, improved_boot))

    for resolution in [str(r) for r in order(per_resolution)]:
        entries = per_resolution[resolution]
        w = np.array([weight[e[0]] for e in entries])
        gamma_points = np.array([e[1] for e in entries])
        improved_points = np.array([e[2] for e in entries])
        gamma_boot = np.stack([e[3] for e in entries], axis=1)
        improved_boot = np.stack([e[4] for e in entries], axis=1)
        add("SAR", None, resolution, sar(gamma_points), sar(gamma_boot, axis=1))
        add("WAR", None, resolution, war(improved_points, w), war(improved_boot, w, axis=1))
    return pd.DataFrame(rows, columns=["metric", "dataset", "resolution", "estimate", "low", "high"])


def resampled_means(columns: np.ndarray, n_resamples: int, *, seed: int = 0, key: str = "") -> np.ndarray:
    """Bootstrap means of per-image columns: images (rows) resampled jointly for every column.

    Args:
        columns: (n, K) per-image values (e.g. correctness of several models and resolutions on the same
            images); NaN entries (unreadable images) are left out of their column's mean.
        n_resamples: how many resamples.
        seed, key: the generator is seeded by (seed, key) exactly as `bootstrap_robustness` seeds a dataset
            named `key`, so with key = the dataset name and the same n these are the very resamples behind the
            report's accuracy, γ, Γ, SAR and WAR intervals.

    Returns:
        (n_resamples, K) means (NaN where a resample drew no readable image of a column).
    """
    values = np.asarray(columns, dtype=np.float64)
    if values.ndim != 2:
        raise UserError(f"columns must be a 2-d array (images x columns), got shape {values.shape}.")
    if n_resamples < 1:
        raise UserError(f"n_resamples must be at least 1, got {n_resamples}.")
    return _resampled_accuracy(list(values.T), n_resamples, _bootstrap_rng(seed, key), paired=True)


def percentile_interval(resamples, level: float = 0.95, *, censored: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided percentile interval of bootstrap resamples along axis 0, ignoring NaN (NaN where none is finite).

    `censored`: the values may be BELOW_LOWEST resolutions (0 px), which are known only to lie below a bound;
    the bounds are then order statistics of the resamples (numpy's inverted_cdf, no interpolation), so a bound
    that falls among censored resamples is itself BELOW_LOWEST rather than a made-up number.
    """
    if not 0 < level < 1:
        raise UserError(f"level must be between 0 and 1, got {level}.")
    values = np.asarray(resamples, dtype=np.float64)
    quantiles = [(1 - level) / 2, (1 + level) / 2]
    method = "inverted_cdf" if censored else "linear"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN bounds
        low, high = np.nanquantile(values, quantiles, axis=0, method=method)
    return low[()], high[()]


# ---------------------------------------------------------------------------------------------------------------
# Robustness beyond SAR/WAR: half-accuracy resolution, per-image lowest correct resolution, rank stability
#
# Resolutions are given in pixels, native first, then strictly decreasing (the order of `resolution.order`).

BELOW_LOWEST = 0.0  # a resolution known only to lie below the lowest measured one: 0 px, -inf on a log2 scale
WRONG_AT_NATIVE = -1  # lowest_correct of an image already wrong at native resolution
UNREADABLE = -2  # lowest_correct of an image that could not be read at some resolution


def _check_pixels(pixels) -> np.ndarray:
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.ndim != 1 or len(pixels) < 2 or not (pixels > 0).all() or not (np.diff(pixels) < 0).all():
        raise UserError(f"pixels must list at least two resolutions, native first, then strictly decreasing; "
                        f"got {pixels.tolist()}.")
    return pixels


def half_accuracy_resolution(pixels, accuracy, chance=0.0) -> np.ndarray:
    """The resolution at which a model keeps half of its native accuracy, interpolated on a log2 scale.

    Walking down from native, the first measured resolution whose accuracy is below the target and the one
    above it bracket the crossing; log2(pixels) is interpolated linearly in accuracy between the two. A
    model below the target already at the first low resolution is interpolated between native and it. A
    later recovery above the target does not undo the first crossing.

    Args:
        pixels: (R,) measured resolutions in pixels, native first, then strictly decreasing.
        accuracy: (..., R) accuracies (fractions) at those resolutions; leading axes (e.g. bootstrap resamples)
            are kept.
        chance: the accuracy of guessing (1 / classes) to discount, broadcast against the leading axes. The
            target is chance + (A_native - chance) / 2: 0 (the default) halves the raw top-1, 1 / C halves
            the accuracy above chance.

    Returns:
        (...) pixels (float). BELOW_LOWEST (0.0) where the accuracy never falls below the target at any
        measured resolution: the crossing lies below the lowest measured one and is not extrapolated. NaN
        where a needed accuracy is missing or the native accuracy is not above `chance` (nothing to halve).

    Raises:
        UserError: `pixels` not native-first and decreasing, or `accuracy` without R entries on its last axis.
    """
    pixels = _check_pixels(pixels)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    if accuracy.shape[-1:] != pixels.shape:
        raise UserError(f"accuracy needs {len(pixels)} values on its last axis (one per resolution), "
                        f"got shape {accuracy.shape}.")
    chance = np.asarray(chance, dtype=np.float64)
    native = accuracy[..., 0]
    target = chance + (native - chance) / 2
    below = accuracy < target[..., None]
    below[..., 0] = False
    found = below.any(axis=-1)
    # The crossing's lower end (1 where there is none, a placeholder the result overwrites).
    lower = np.maximum(np.argmax(below, axis=-1), 1)
    upper_accuracy = np.take_along_axis(accuracy, (lower - 1)[..., None], axis=-1)[..., 0]
    lower_accuracy = np.take_along_axis(accuracy, lower[..., None], axis=-1)[..., 0]
    log2 = np.log2(pixels)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = (upper_accuracy - target) / (upper_accuracy - lower_accuracy)
        crossing = 2.0 ** (log2[lower - 1] + fraction * (log2[lower] - log2[lower - 1]))
    result = np.where(found, crossing, BELOW_LOWEST)
    # Missing accuracies down to the crossing (or anywhere, without one) leave the answer unknown.
    visited = np.arange(len(pixels)) <= np.where(found, lower, len(pixels) - 1)[..., None]
    missing = (np.isnan(accuracy) & visited).any(axis=-1)
    return np.where(missing | ~(native > chance), np.nan, result)[()]


def median_resolution(resolutions, axis: int = -1) -> np.ndarray:
    """Median of resolutions on a log2 scale (the middle pair's geometric mean), ignoring NaN.

    BELOW_LOWEST entries count as lower than every measured value, so the median is BELOW_LOWEST when the
    middle (or either of the middle pair) is. Unlike a geometric mean, this needs no number for censored
    entries and is defined while fewer than half of them are censored. NaN when every entry is NaN.
    """
    values = np.asarray(resolutions, dtype=np.float64)
    with np.errstate(divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        return (2.0 ** np.nanmedian(np.log2(values), axis=axis))[()]


def lowest_correct(correct) -> np.ndarray:
    """Per image: the lowest resolution down to which it is classified correctly at every resolution.

    Args:
        correct: (n, R) per-image correctness at R resolutions, native first, then decreasing (bool, or
            float with NaN for unreadable, as from `sample_correctness`).

    Returns:
        (n,) int: j when the image is correct at resolutions 0..j and wrong at j + 1 (a later correct answer
        at a still lower resolution does not count); R - 1 when it is correct at all of them ("≤ lowest");
        WRONG_AT_NATIVE when it is wrong at native; UNREADABLE when any entry is NaN.
    """
    values = np.asarray(correct, dtype=np.float64)
    if values.ndim != 2:
        raise UserError(f"correct must be a 2-d array (images x resolutions), got shape {values.shape}.")
    unbroken = np.cumprod(values == 1, axis=1)
    index = unbroken.sum(axis=1).astype(np.int64) - 1
    index[np.isnan(values).any(axis=1)] = UNREADABLE
    return index


def lowest_correct_indicators(index, n_resolutions: int) -> np.ndarray:
    """One-hot (n, R + 1) of `lowest_correct`: column 0 wrong at native, column 1 + j lowest correct at
    resolution j (the last: correct everywhere); unreadable images are NaN rows. The column means are the
    distribution over readable images (and `resampled_means` of it, its bootstrap)."""
    index = np.asarray(index, dtype=np.int64)
    if ((index < UNREADABLE) | (index >= n_resolutions)).any():
        raise UserError(f"lowest_correct indices must lie in [{UNREADABLE}, {n_resolutions - 1}].")
    out = (index[:, None] + 1 == np.arange(n_resolutions + 1)).astype(np.float64)
    out[index == UNREADABLE] = np.nan
    return out


def class_breaking(labels, index, pixels, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which classes break first: per class, over its readable images correct at native resolution.

    An image breaks at the first resolution below native where it is wrong (it is "broken by" that one and
    every lower one); an image correct everywhere never breaks within the measured range.

    Args:
        labels: (n,) true classes. index: (n,) from `lowest_correct`. pixels: (R,) as in
            `half_accuracy_resolution`. n_classes: C.

    Returns:
        n_correct (C,) images correct at native; broken (C, R - 1) the share of them broken by each low
        resolution (NaN for a class without any); median (C,) the median breaking resolution in pixels: the
        highest resolution by which at least half of them have broken, BELOW_LOWEST when fewer than half break
        at any measured resolution, NaN for a class without any.
    """
    pixels = _check_pixels(pixels)
    labels = np.asarray(labels, dtype=np.int64)
    index = np.asarray(index, dtype=np.int64)
    keep = index >= 0
    labels, index = labels[keep], index[keep]
    n_correct = np.bincount(labels, minlength=n_classes)[:n_classes]
    # broken by low resolution k (1..R-1): lowest correct index below k.
    levels = np.arange(1, len(pixels))
    counts = np.stack([np.bincount(labels[index < k], minlength=n_classes)[:n_classes] for k in levels], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        broken = np.where(n_correct[:, None] > 0, counts / n_correct[:, None], np.nan)
    half = broken >= 0.5
    median = np.where(half.any(axis=1), pixels[1:][np.argmax(half, axis=1)], BELOW_LOWEST)
    return n_correct, broken, np.where(n_correct > 0, median, np.nan)


def resampled_class_breaking(labels, index, n_resolutions: int, n_classes: int, n_resamples: int, *,
                             seed: int = 0, key: str = "") -> np.ndarray:
    """Bootstrap of `class_breaking`'s shares: (n_resamples, C, R - 1), NaN where a resample drew no image of
    the class correct at native.

    The images are resampled with the very draws of `resampled_means(..., seed=seed, key=key)` on the same
    n images, so these intervals come from the same resamples as the accuracy intervals. Each share is a
    ratio of resampled counts: images of the class broken by that resolution over its images correct at
    native (unreadable and wrong-at-native images count in neither).

    Args:
        labels: (n,) true classes. index: (n,) from `lowest_correct`. n_resolutions: R, native included.
        n_classes: C. n_resamples, seed, key: as in `resampled_means`.
    """
    from scipy import sparse

    labels = np.asarray(labels, dtype=np.int64)
    index = np.asarray(index, dtype=np.int64)
    if labels.shape != index.shape or labels.ndim != 1:
        raise UserError(f"labels and index must be 1-d arrays of one length, got {labels.shape} and {index.shape}.")
    if n_resamples < 1:
        raise UserError(f"n_resamples must be at least 1, got {n_resamples}.")
    n, levels = len(labels), n_resolutions - 1
    # Column c * R: native-correct images of class c; column c * R + k (k = 1..R-1): those broken by level k.
    kept = np.flatnonzero(index >= 0)
    rows = [kept] + [kept[index[kept] < k] for k in range(1, n_resolutions)]
    columns = [labels[kept] * n_resolutions] + [labels[r] * n_resolutions + k for k, r in enumerate(rows[1:], start=1)]
    member = sparse.csr_matrix((np.ones(sum(map(len, rows))), (np.concatenate(rows), np.concatenate(columns))),
                               shape=(n, n_classes * n_resolutions))
    out = np.empty((n_resamples, n_classes, levels))
    for start, stop, counts in _resample_blocks(_bootstrap_rng(seed, key), n, n_resamples):
        sums = np.asarray((member.T @ counts.T).T).reshape(stop - start, n_classes, n_resolutions)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:stop] = sums[:, :, 1:] / sums[:, :, :1]
    return out


def rank_stability(native_accuracy, low_accuracy) -> np.ndarray:
    """Spearman's rho between the ranking of models by native accuracy and by accuracy at a low resolution.

    Args:
        native_accuracy, low_accuracy: (..., M) accuracies of the same M >= 3 models on the same images;
            leading axes (bootstrap resamples) are kept. Tied accuracies share their average rank.

    Returns:
        (...) rho: scipy.stats.spearmanr for one pair of rankings, the same formula (Pearson correlation of
        average ranks) vectorised over leading axes; NaN where either ranking is constant (all models tie).

    Raises:
        UserError: fewer than 3 models or mismatched shapes.
    """
    from scipy.stats import spearmanr

    native = np.asarray(native_accuracy, dtype=np.float64)
    low = np.asarray(low_accuracy, dtype=np.float64)
    if native.shape != low.shape or native.ndim == 0 or native.shape[-1] < 3:
        raise UserError(f"Rank stability needs the same 3 or more models at both resolutions; got shapes "
                        f"{native.shape} and {low.shape}.")
    if native.ndim == 1:
        if np.ptp(native) == 0 or np.ptp(low) == 0 or np.isnan(native).any() or np.isnan(low).any():
            return np.float64(np.nan)
        return np.float64(spearmanr(native, low).statistic)
    shape = native.shape[:-1]
    native, low = native.reshape(-1, native.shape[-1]), low.reshape(-1, low.shape[-1])
    rho = (_standardised_ranks(native.T) * _standardised_ranks(low.T)).sum(axis=0)
    rho[np.isnan(native).any(axis=1) | np.isnan(low).any(axis=1)] = np.nan
    return rho.reshape(shape)
