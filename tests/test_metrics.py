"""LR0.FM metrics: gamma/Gamma/SAR/WAR against the authors' released numbers, weight fitting, bootstrap CIs."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lr0fm import metrics, reference
from lr0fm.errors import UserError

RESOLUTIONS = (16, 32, 64, 128)


def _paper_reference_dir() -> Path | None:
    """The authors' released tables: $LR0FM_PAPER_REFERENCE, else shared/reference/lr0fm-paper next to the repo."""
    override = os.environ.get("LR0FM_PAPER_REFERENCE")
    candidates = [Path(override)] if override else []
    here = Path(__file__).resolve()
    candidates.append(here.parents[2] / "shared" / "reference" / "lr0fm-paper")
    candidates += [parent / "shared" / "reference" / "lr0fm-paper" for parent in here.parents]
    for candidate in candidates:
        if (candidate / "accuracy_long.csv").is_file() and (candidate / "ranking").is_dir():
            return candidate
    return None


PAPER_DIR = _paper_reference_dir()
needs_paper = pytest.mark.skipif(
    PAPER_DIR is None, reason="authors' tables not found: set LR0FM_PAPER_REFERENCE to the lr0fm-paper folder")


@pytest.fixture(scope="module")
def accuracy() -> pd.DataFrame:
    return reference.paper_accuracy()


def _ranking(resolution: int, backbones) -> pd.DataFrame:
    """ALL_<r>.csv with a `backbone` column: the ranking's names differ from ours only in whitespace."""
    ranking = pd.read_csv(PAPER_DIR / "ranking" / f"ALL_{resolution}.csv")
    by_letters = {"".join(b.split()): b for b in backbones}
    ranking["backbone"] = ["".join(m.split()) for m in ranking["Model"]]
    ranking["backbone"] = ranking["backbone"].map(by_letters)
    assert ranking["backbone"].notna().all()
    return ranking


def _ranking_name(dataset: str) -> str:
    return dataset.replace("_", "-") if dataset.startswith("imagenet") else dataset


# ---------------------------------------------------------------------------------------------------------------
# Reference data


def test_reference_constants_agree():
    assert len(reference.DATASETS) == 15
    for table in (reference.DATASET_NAMES, reference.CLASS_COUNTS, reference.PAPER_SCRIPT_CLASS_COUNTS,
                  reference.WAR_WEIGHTS):
        assert tuple(table) == reference.DATASETS
    differ = {d for d in reference.DATASETS if reference.CLASS_COUNTS[d] != reference.PAPER_SCRIPT_CLASS_COUNTS[d]}
    assert differ == {"food101", "fgvc_aircraft"}
    assert reference.CLASS_COUNTS["food101"] == 101 and reference.CLASS_COUNTS["fgvc_aircraft"] == 100
    assert max(reference.WAR_WEIGHTS.values()) == 1.0 and min(reference.WAR_WEIGHTS.values()) == 0.01
    assert sum(reference.WAR_WEIGHTS.values()) == pytest.approx(4.52492535141298, abs=1e-13)


def test_paper_accuracy_shape(accuracy):
    assert list(accuracy.columns) == ["family", "backbone", "dataset", "resolution", "top1", "top5"]
    assert len(accuracy) == 66 * 15 * 5
    assert accuracy["backbone"].nunique() == 66 and accuracy["family"].nunique() == 10
    assert tuple(accuracy["dataset"].unique()) == reference.DATASETS
    assert set(accuracy["resolution"]) == set(reference.RESOLUTIONS)
    assert (accuracy["top5"] >= accuracy["top1"]).all()
    mine = reference.paper_accuracy()
    mine.loc[0, "top1"] = -1.0  # a copy: the next caller still sees the published value
    assert reference.paper_accuracy().loc[0, "top1"] != -1.0


@needs_paper
def test_packaged_accuracy_equals_authors_table(accuracy):
    source = pd.read_csv(PAPER_DIR / "accuracy_long.csv", dtype={"resolution": str})
    pd.testing.assert_frame_equal(accuracy, source, check_dtype=False)


# ---------------------------------------------------------------------------------------------------------------
# Published SAR / WAR


@pytest.mark.parametrize("paper_compat", [False, True])
def test_openclip_b16_at_16(accuracy, paper_compat):
    table = metrics.sar_war_table(accuracy, paper_compat=paper_compat)
    row = table[(table["backbone"] == "OpenCLIP-ViT-B/16") & (table["resolution"] == "16")].iloc[0]
    assert round(100 * row["SAR"], 2) == 33.37
    assert round(100 * row["WAR"], 2) == 26.50
    assert row["n_datasets"] == 15
    if paper_compat:  # the values in ALL_16.csv
        assert row["SAR"] == pytest.approx(0.33369969740938066, abs=1e-12)
        assert row["WAR"] == pytest.approx(0.26498951683334704, abs=1e-12)


@needs_paper
@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_paper_compat_reproduces_ranking_files(accuracy, resolution):
    ranking = _ranking(resolution, accuracy["backbone"].unique())
    ours = metrics.sar_war_table(accuracy, paper_compat=True)
    merged = ours[ours["resolution"] == str(resolution)].merge(ranking, on="backbone", validate="one_to_one")
    assert len(merged) == 66
    np.testing.assert_allclose(merged["SAR"], merged["SAR_Relative-Robustness"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(merged["WAR"], merged["WAR_Improved-Relative-Robustness"], rtol=0, atol=1e-9)

    cells = metrics.robustness_table(accuracy, paper_compat=True)
    cells = cells[cells["resolution"] == str(resolution)]
    for column, suffix in (("relative_robustness", "_Relative-Robustness"),
                           ("improved_relative_robustness", "_Improved-Relative-Robustness")):
        wide = cells.pivot(index="backbone", columns="dataset", values=column)
        for dataset in reference.DATASETS:
            expected = ranking.set_index("backbone")[_ranking_name(dataset) + suffix]
            np.testing.assert_allclose(wide[dataset].reindex(expected.index), expected, rtol=0, atol=1e-9)


def test_correct_class_counts_change_little(accuracy):
    compat = metrics.sar_war_table(accuracy, paper_compat=True)
    correct = metrics.sar_war_table(accuracy)
    np.testing.assert_array_equal(compat["SAR"], correct["SAR"])  # gamma does not use class counts
    assert np.abs(compat["WAR"] - correct["WAR"]).max() < 1e-3


def test_subset_of_datasets_averages_what_is_present(accuracy):
    subset = accuracy[accuracy["dataset"].isin(["imagenet", "eurosat", "dtd"])]
    table = metrics.sar_war_table(subset)
    row = table[(table["backbone"] == "OpenCLIP-ViT-B/16") & (table["resolution"] == "16")].iloc[0]
    cells = metrics.robustness_table(subset)
    cells = cells[(cells["backbone"] == "OpenCLIP-ViT-B/16") & (cells["resolution"] == "16")].set_index("dataset")
    w = reference.WAR_WEIGHTS
    assert row["n_datasets"] == 3
    assert row["SAR"] == pytest.approx(cells["relative_robustness"].mean(), abs=1e-15)
    expected_war = sum(w[d] * cells.loc[d, "improved_relative_robustness"] for d in cells.index) / sum(
        w[d] for d in cells.index)
    assert row["WAR"] == pytest.approx(expected_war, abs=1e-15)


# ---------------------------------------------------------------------------------------------------------------
# Element-wise edge cases and table handling


def test_gamma_and_improved_gamma_edge_cases():
    assert metrics.relative_robustness(0.3, 0.6) == pytest.approx(0.5)
    assert metrics.relative_robustness(0.66, 0.6) == pytest.approx(1.1)  # above 1 is kept
    assert math.isnan(metrics.relative_robustness(0.3, 0.0))
    assert math.isnan(metrics.relative_robustness(0.3, float("nan")))
    assert math.isnan(metrics.relative_robustness(float("nan"), 0.5))
    # At chance the discount is exactly zero; 20 points above chance it is essentially one.
    assert metrics.improved_relative_robustness(0.1, 0.1, 10) == pytest.approx(0.0, abs=1e-15)
    assert metrics.improved_relative_robustness(0.05, 0.1 + 1e-3, 10) < 1e-3
    assert metrics.chance_discount(0.3, 10) == pytest.approx(1 - math.exp(-8))
    assert metrics.chance_discount(30.0, 10, percent=True) == pytest.approx(metrics.chance_discount(0.3, 10))
    assert metrics.improved_relative_robustness(0.66, 0.6, 10) == pytest.approx(1.1)
    # Element-wise on arrays.
    gamma = metrics.relative_robustness(np.array([0.2, 0.4]), np.array([0.4, 0.4]))
    np.testing.assert_allclose(gamma, [0.5, 1.0])


def test_sar_war_ignore_missing_datasets():
    assert metrics.sar([0.5, np.nan, 1.0]) == pytest.approx(0.75)
    assert metrics.war([0.5, np.nan, 1.0], [1.0, 5.0, 3.0]) == pytest.approx((0.5 + 3.0) / 4)
    assert math.isnan(metrics.sar([np.nan, np.nan]))
    np.testing.assert_allclose(metrics.sar([[0.2, 0.4], [0.6, np.nan]], axis=1), [0.3, 0.6])


def _toy(values: dict[tuple[str, str], float], model="m") -> pd.DataFrame:
    return pd.DataFrame([{"model": model, "dataset": d, "resolution": r, "top1": v} for (d, r), v in values.items()])


def test_robustness_table_units_and_resolution_forms():
    percent = _toy({("eurosat", "native"): 80.0, ("eurosat", "16"): 40.0, ("dtd", "Native"): 50.0,
                    ("dtd", 16): 60.0})
    fraction = percent.assign(top1=percent["top1"] / 100)
    a = metrics.robustness_table(percent)
    b = metrics.robustness_table(fraction)
    pd.testing.assert_frame_equal(a, b)
    assert list(a["resolution"]) == ["16", "16"]
    assert a.set_index("dataset").loc["dtd", "relative_robustness"] == pytest.approx(1.2)
    assert a.set_index("dataset").loc["eurosat", "accuracy"] == pytest.approx(0.4)


def test_robustness_table_missing_native_gives_nan():
    table = _toy({("eurosat", "16"): 40.0, ("dtd", "native"): 50.0, ("dtd", "16"): 25.0})
    cells = metrics.robustness_table(table).set_index("dataset")
    assert math.isnan(cells.loc["eurosat", "relative_robustness"])
    summary = metrics.sar_war_table(table).iloc[0]
    assert summary["n_datasets"] == 1 and summary["SAR"] == pytest.approx(0.5)


def test_unknown_dataset_needs_class_count_and_weight():
    table = _toy({("fashion_mnist", "native"): 80.0, ("fashion_mnist", "16"): 40.0})
    with pytest.raises(UserError, match="class count"):
        metrics.robustness_table(table)
    with pytest.raises(UserError, match="WAR weight"):
        metrics.sar_war_table(table, class_counts={"fashion_mnist": 10})
    with_counts = table.assign(n_classes=10)
    row = metrics.sar_war_table(with_counts, default_weight=1.0).iloc[0]
    assert row["SAR"] == pytest.approx(0.5) and row["WAR"] == pytest.approx(0.5 * metrics.chance_discount(0.8, 10))
    row = metrics.sar_war_table(table, class_counts={"fashion_mnist": 10}, weights={"fashion_mnist": 2.0}).iloc[0]
    assert row["WAR"] == pytest.approx(0.5 * metrics.chance_discount(0.8, 10))


def test_duplicate_rows_are_an_error():
    table = pd.concat([_toy({("dtd", "native"): 50.0, ("dtd", "16"): 25.0})] * 2)
    with pytest.raises(UserError, match="more than one row"):
        metrics.robustness_table(table)


def test_sar_war_table_accepts_robustness_output(accuracy):
    cells = metrics.robustness_table(accuracy)
    pd.testing.assert_frame_equal(metrics.sar_war_table(cells), metrics.sar_war_table(accuracy))


# ---------------------------------------------------------------------------------------------------------------
# Dataset agreement and weight fitting


def test_paper_weights_agreement_at_16(accuracy):
    rho = metrics.war_correlations(accuracy, resolution=16).set_index("dataset")
    # The reference notes round these to 0.259, 0.578 and 0.493; the exact values are 0.25999, 0.57933, 0.49229.
    assert rho.loc["eurosat", "rho_sar"] == pytest.approx(0.259, abs=2e-3)
    assert rho.loc["imagenet_a", "rho_sar"] == pytest.approx(0.578, abs=2e-3)
    assert rho.loc["eurosat", "rho_war"] == pytest.approx(0.493, abs=2e-3)
    assert rho.loc["imagenet_a", "rho_war"] == pytest.approx(0.680, abs=2e-3)


def test_fit_war_weights_lifts_overlooked_datasets(accuracy):
    fit = metrics.fit_war_weights(accuracy, resolution=16, seed=0)  # its speed: bench/metrics_speed.py
    rho = fit["correlations"].set_index("dataset")
    assert set(fit["weights"]) == set(reference.DATASETS)
    weights = np.array(list(fit["weights"].values()))
    assert weights.max() == 1.0 and weights.min() >= 0.01 - 1e-12
    assert {"eurosat", "imagenet_a"} <= set(fit["objective_datasets"])
    assert rho.loc["eurosat", "rho_war"] > rho.loc["eurosat", "rho_sar"] + 0.1
    assert rho.loc["imagenet_a", "rho_war"] > rho.loc["imagenet_a", "rho_sar"] + 0.07
    assert abs(fit["mean_rho_war"] - fit["mean_rho_sar"]) < 0.05
    assert fit["violations"] == [] and fit["n_models"] == 66 and fit["dropped_models"] == []
    assert (rho["rho_war"] >= 0.95 * rho["rho_sar"] - 1e-12).all()
    # The reported correlations are those of the returned weights.
    again = metrics.war_correlations(accuracy, fit["weights"], resolution=16)
    np.testing.assert_allclose(again["rho_war"], fit["correlations"]["rho_war"], atol=1e-12)


def test_fit_war_weights_is_deterministic(accuracy):
    first = metrics.fit_war_weights(accuracy, resolution=16, seed=3, maxiter=20)
    second = metrics.fit_war_weights(accuracy, resolution=16, seed=3, maxiter=20)
    assert first["weights"] == second["weights"]


def test_fit_war_weights_drops_incomplete_models(accuracy):
    some = accuracy[accuracy["family"].isin(["CLIP", "EVA-CLIP"])]
    some = some[~((some["backbone"] == "RN50") & (some["dataset"] == "eurosat"))]
    fit = metrics.fit_war_weights(some, resolution=32, objective_datasets=["eurosat"], maxiter=20)
    assert fit["dropped_models"] == ["RN50"] and fit["n_models"] == 16
    with pytest.raises(UserError, match="objective_datasets"):
        metrics.fit_war_weights(some, objective_datasets=["mnist"], maxiter=5)


# ---------------------------------------------------------------------------------------------------------------
# Bootstrap


def _correlated_cells(n: int, seed: int = 0, flip: float = 0.2) -> dict:
    """Native hits at 70%; low-res answers equal native except a random `flip` share, redrawn at 30%."""
    rng = np.random.default_rng(seed)
    native = rng.random(n) < 0.7
    changed = rng.random(n) < flip
    low = np.where(changed, rng.random(n) < 0.3, native)
    return {"native": native, "16": low}


def _interval(frame: pd.DataFrame, metric: str, resolution: str = "16", dataset: str | None = "eurosat"):
    rows = frame[(frame["metric"] == metric) & (frame["resolution"] == resolution)]
    if dataset is not None:
        rows = rows[rows["dataset"] == dataset]
    return rows.iloc[0]


def test_bootstrap_contains_estimate_and_is_seeded():
    cells = {"eurosat": _correlated_cells(3000), "dtd": _correlated_cells(2000, seed=1)}
    first = metrics.bootstrap_robustness(cells, n_resamples=500, seed=7)
    second = metrics.bootstrap_robustness(cells, n_resamples=500, seed=7)
    other = metrics.bootstrap_robustness(cells, n_resamples=500, seed=8)
    pd.testing.assert_frame_equal(first, second)
    assert not np.allclose(first["low"], other["low"])
    assert ((first["low"] <= first["estimate"]) & (first["estimate"] <= first["high"])).all()
    assert set(first["metric"]) == {"accuracy", "relative_robustness", "improved_relative_robustness", "SAR",
                                    "WAR"}
    native = _interval(first, "accuracy", "native")
    assert native["estimate"] == pytest.approx(cells["eurosat"]["native"].mean())
    # A dataset's resamples do not depend on the other datasets present.
    alone = metrics.bootstrap_robustness({"eurosat": cells["eurosat"]}, n_resamples=500, seed=7)
    assert _interval(alone, "relative_robustness")["low"] == _interval(first, "relative_robustness")["low"]


def test_bootstrap_interval_shrinks_with_more_samples():
    small = metrics.bootstrap_robustness({"eurosat": _correlated_cells(500)}, n_resamples=500)
    large = metrics.bootstrap_robustness({"eurosat": _correlated_cells(8000)}, n_resamples=500)
    for metric in ("accuracy", "relative_robustness", "SAR"):
        narrow, wide = _interval(large, metric, dataset=None), _interval(small, metric, dataset=None)
        assert narrow["high"] - narrow["low"] < 0.5 * (wide["high"] - wide["low"])


def test_paired_gamma_interval_is_narrower_on_correlated_data():
    cells = {"eurosat": _correlated_cells(4000, flip=0.1)}
    paired = _interval(metrics.bootstrap_robustness(cells, n_resamples=800), "relative_robustness")
    unpaired = _interval(metrics.bootstrap_robustness(cells, n_resamples=800, paired=False), "relative_robustness")
    assert paired["estimate"] == unpaired["estimate"]
    assert paired["high"] - paired["low"] < 0.6 * (unpaired["high"] - unpaired["low"])


def test_bootstrap_level_and_unreadable_samples():
    cells = _correlated_cells(2000)
    correct = {r: v.astype(float) for r, v in cells.items()}
    for values in correct.values():
        values[:100] = np.nan  # unreadable at every resolution
    out = metrics.bootstrap_robustness({"eurosat": correct}, n_resamples=400)
    row = _interval(out, "accuracy", "native")
    assert row["estimate"] == pytest.approx(cells["native"][100:].mean())
    narrower = _interval(metrics.bootstrap_robustness({"eurosat": correct}, n_resamples=400, level=0.5),
                         "accuracy", "native")
    assert narrower["high"] - narrower["low"] < row["high"] - row["low"]


def test_bootstrap_sar_war_match_point_metrics():
    cells = {"eurosat": _correlated_cells(1000), "fgvc_aircraft": _correlated_cells(1000, seed=2)}
    out = metrics.bootstrap_robustness(cells, n_resamples=50)
    gammas = [cells[d]["16"].mean() / cells[d]["native"].mean() for d in cells]
    assert _interval(out, "SAR", dataset=None)["estimate"] == pytest.approx(np.mean(gammas))
    improved = [g * metrics.chance_discount(cells[d]["native"].mean(), reference.CLASS_COUNTS[d])
                for g, d in zip(gammas, cells)]
    w = [reference.WAR_WEIGHTS[d] for d in cells]
    assert _interval(out, "WAR", dataset=None)["estimate"] == pytest.approx(np.average(improved, weights=w))


def test_bootstrap_input_errors():
    with pytest.raises(UserError, match="native"):
        metrics.bootstrap_robustness({"eurosat": {"16": np.ones(10, bool)}})
    with pytest.raises(UserError, match="same"):
        metrics.bootstrap_robustness({"eurosat": {"native": np.ones(10, bool), "16": np.ones(9, bool)}})
    with pytest.raises(UserError, match="level"):
        metrics.bootstrap_robustness({"eurosat": _correlated_cells(10)}, level=95)


def test_sample_correctness_from_store_arrays():
    labels = np.array([0, 1, 2, 3])
    top5 = np.array([[0, 1, 2, 3, 4], [0, 1, 2, 3, 4], [2, 0, 1, 3, 4], [0, 1, 2, 4, -1]])
    ok = np.array([True, True, True, False])
    np.testing.assert_array_equal(metrics.sample_correctness(labels, top5, ok), [1.0, 0.0, 1.0, np.nan])
    np.testing.assert_array_equal(metrics.sample_correctness(labels, top5, k=5), [1.0, 1.0, 1.0, 0.0])
