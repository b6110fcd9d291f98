"""Robustness beyond SAR/WAR: half-accuracy resolution, per-image lowest correct resolution, class breaking,
rank stability and their bootstrap intervals, each against a brute-force computation on constructed inputs;
then the report sections and CSV files from real evaluations of the bundled tiny model."""

import math
import zlib

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from lr0fm import metrics
from lr0fm.errors import UserError
from lr0fm.report.collect import Collected, DatasetRun
from lr0fm.report.compute import profile_tables


# ---------------------------------------------------------------------------------------------------------------
# Brute force: the definitions written out loop by loop


def brute_half(pixels, accuracy, chance=0.0):
    target = chance + (accuracy[0] - chance) / 2
    if not accuracy[0] > chance:
        return math.nan
    for i in range(1, len(pixels)):
        if accuracy[i] < target:
            a, b = accuracy[i - 1], accuracy[i]
            x_a, x_b = math.log2(pixels[i - 1]), math.log2(pixels[i])
            return 2 ** (x_a + (a - target) / (a - b) * (x_b - x_a))
    return 0.0


def brute_lowest(row):
    if any(math.isnan(v) for v in row):
        return "unreadable"
    if row[0] != 1:
        return "wrong"
    j = 0
    while j + 1 < len(row) and row[j + 1] == 1:
        j += 1
    return j


def brute_median(values):
    """Median of two or more resolutions on a log2 scale, 0 (censored) below everything."""
    ordered = sorted(values)
    middle = ordered[(len(ordered) - 1) // 2:len(ordered) // 2 + 1]
    return 0.0 if 0 in middle else 2 ** (sum(math.log2(v) for v in middle) / len(middle))


PIXELS = [32, 16, 8]


def test_half_accuracy_known_crossings():
    # 0.8 -> target 0.4, crossed between 16 (0.6) and 8 (0.2) halfway in accuracy: log2 = 4 - 0.5.
    assert metrics.half_accuracy_resolution(PIXELS, [0.8, 0.6, 0.2]) == pytest.approx(2 ** 3.5)
    # Below half already at the first low resolution: between native (32) and 16, 2/3 of the way.
    assert metrics.half_accuracy_resolution(PIXELS, [0.8, 0.2, 0.1]) == pytest.approx(2 ** (5 - 2 / 3))
    # Never below half: censored, not extrapolated.
    assert metrics.half_accuracy_resolution(PIXELS, [0.8, 0.7, 0.5]) == metrics.BELOW_LOWEST
    # Exactly half at 16 is not below it; the crossing then starts at 16.
    assert metrics.half_accuracy_resolution(PIXELS, [0.8, 0.4, 0.2]) == pytest.approx(16 * 2 ** -0.0)
    # A recovery does not undo the first crossing.
    assert metrics.half_accuracy_resolution(PIXELS, [0.8, 0.3, 0.7]) == pytest.approx(2 ** (5 - 0.8))
    # Above chance, 10 classes: target 0.1 + 0.35 = 0.45, between 16 and 8 at (0.6 - 0.45) / 0.4.
    assert metrics.half_accuracy_resolution(PIXELS, [0.8, 0.6, 0.2], chance=0.1) == pytest.approx(2 ** (4 - 0.375))
    # Nothing to halve at or below chance; a missing accuracy before the crossing is unknown.
    assert math.isnan(metrics.half_accuracy_resolution(PIXELS, [0.1, 0.1, 0.1], chance=0.1))
    assert math.isnan(metrics.half_accuracy_resolution(PIXELS, [0.8, np.nan, 0.1]))
    with pytest.raises(UserError):
        metrics.half_accuracy_resolution([16, 32, 8], [0.8, 0.6, 0.2])
    with pytest.raises(UserError):
        metrics.half_accuracy_resolution(PIXELS, [0.8, 0.6])


def test_half_accuracy_matches_brute_force_vectorised():
    rng = np.random.default_rng(3)
    pixels = [224, 128, 64, 32, 16]
    accuracy = rng.uniform(0, 1, size=(400, 5))
    accuracy[:100] = np.sort(accuracy[:100], axis=1)[:, ::-1]  # monotone curves too
    for chance in (0.0, 0.1):
        got = metrics.half_accuracy_resolution(pixels, accuracy, chance)
        want = [brute_half(pixels, row, chance) for row in accuracy]
        np.testing.assert_allclose(got, want, rtol=1e-12)
        assert (got == 0).any() and (got > 0).any()


def test_median_resolution_counts_censored_lowest():
    assert metrics.median_resolution([16, 0, 8]) == pytest.approx(8)
    assert metrics.median_resolution([0, 0, 16]) == 0
    assert metrics.median_resolution([16, 8]) == pytest.approx(math.sqrt(16 * 8))
    assert metrics.median_resolution([0, 16]) == 0
    assert metrics.median_resolution([np.nan, 16, 4, 64]) == pytest.approx(16)
    assert math.isnan(metrics.median_resolution([np.nan, np.nan]))
    rows = np.array([[16, 8, 32], [0, 0, 4]])
    np.testing.assert_allclose(metrics.median_resolution(rows, axis=1), [16, 0])


def test_lowest_correct_matches_brute_force():
    rng = np.random.default_rng(5)
    correct = (rng.random((500, 5)) < 0.7).astype(float)
    correct[rng.random(500) < 0.05, rng.integers(0, 5)] = np.nan
    # Monotone breaking: correct down to a point, wrong below.
    correct[:50] = np.arange(5) <= rng.integers(-1, 5, size=50)[:, None]
    index = metrics.lowest_correct(correct)
    for row, got in zip(correct, index):
        want = brute_lowest(row)
        assert got == {"unreadable": metrics.UNREADABLE, "wrong": metrics.WRONG_AT_NATIVE}.get(want, want)
    # Correct again after a miss does not count; correct everywhere is the last index.
    assert metrics.lowest_correct([[1, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1]]).tolist() == [0, 4, -1]

    indicators = metrics.lowest_correct_indicators(index, 5)
    readable = [brute_lowest(row) for row in correct if brute_lowest(row) != "unreadable"]
    shares = [readable.count("wrong")] + [readable.count(j) for j in range(5)]
    np.testing.assert_allclose(np.nanmean(indicators, axis=0), np.array(shares) / len(readable))
    assert np.isnan(indicators[index == metrics.UNREADABLE]).all()


def test_class_breaking_matches_brute_force():
    rng = np.random.default_rng(7)
    pixels = [64, 32, 16, 8]
    labels = rng.integers(0, 6, size=300)
    labels[labels == 5] = 4  # class 5 has no image
    correct = (rng.random((300, 4)) < np.array([0.9, 0.8, 0.6, 0.3])).astype(float)
    correct[labels == 3, 0] = 0  # class 3 never correct at native
    index = metrics.lowest_correct(correct)
    n_correct, broken, median = metrics.class_breaking(labels, index, pixels, 6)
    for c in range(6):
        members = [brute_lowest(row) for row, label in zip(correct, labels) if label == c]
        kept = [j for j in members if j not in ("wrong", "unreadable")]
        assert n_correct[c] == len(kept)
        if not kept:
            assert np.isnan(broken[c]).all() and math.isnan(median[c])
            continue
        shares = [sum(j < k for j in kept) / len(kept) for k in range(1, 4)]
        np.testing.assert_allclose(broken[c], shares)
        at_half = [pixels[k] for k in range(1, 4) if shares[k - 1] >= 0.5]
        assert median[c] == (at_half[0] if at_half else 0.0)


def test_class_breaking_resamples_are_the_accuracy_resamples():
    rng = np.random.default_rng(8)
    labels = rng.integers(0, 5, size=400)
    labels[labels == 4] = 3  # class 4 has no image
    correct = (rng.random((400, 4)) < np.array([0.85, 0.7, 0.5, 0.3])).astype(float)
    correct[rng.random(400) < 0.05, 2] = np.nan  # a few unreadable images
    index = metrics.lowest_correct(correct)
    got = metrics.resampled_class_breaking(labels, index, 4, 5, 300, seed=3, key="dtd")
    assert got.shape == (300, 5, 3)
    # The same draws through the dense path: per class, means of "correct at native" and "broken by k".
    member = np.stack([(labels == c) & (index >= 0) for c in range(5)], axis=1).astype(float)
    broken = np.stack([(labels == c) & (index >= 0) & (index < k) for c in range(5) for k in (1, 2, 3)],
                      axis=1).astype(float)
    means = metrics.resampled_means(np.concatenate([member, broken], axis=1), 300, seed=3, key="dtd")
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = means[:, 5:].reshape(300, 5, 3) / means[:, :5, None]
    np.testing.assert_allclose(got[:, :4], expected[:, :4])
    assert np.isnan(got[:, 4]).all()
    # Centred on the point estimate.
    _, point, _ = metrics.class_breaking(labels, index, [64, 32, 16, 8], 5)
    np.testing.assert_allclose(np.nanmean(got[:, :4], axis=0), point[:4], atol=0.05)


def test_rank_stability_against_spearmanr_with_ties():
    rng = np.random.default_rng(11)
    native = rng.integers(0, 4, size=(300, 5)) / 10  # many ties
    low = rng.integers(0, 4, size=(300, 5)) / 10
    got = metrics.rank_stability(native, low)
    for n, lo, rho in zip(native, low, got):
        if np.ptp(n) == 0 or np.ptp(lo) == 0:
            assert math.isnan(rho)
        else:
            assert rho == pytest.approx(spearmanr(n, lo).statistic)
            assert metrics.rank_stability(n, lo) == pytest.approx(spearmanr(n, lo).statistic)
    assert metrics.rank_stability([0.9, 0.8, 0.7], [0.1, 0.2, 0.3]) == pytest.approx(-1)
    assert metrics.rank_stability([0.9, 0.8, 0.7], [0.5, 0.4, 0.4]) == pytest.approx(spearmanr([3, 2, 1], [3, 1.5, 1.5]).statistic)
    assert math.isnan(metrics.rank_stability([0.9, 0.8, 0.7], [0.4, 0.4, 0.4]))
    with pytest.raises(UserError):
        metrics.rank_stability([0.9, 0.8], [0.5, 0.4])


def test_resampled_means_are_the_accuracy_bootstraps_resamples():
    rng = np.random.default_rng(13)
    native = (rng.random(700) < 0.8).astype(float)
    low = (rng.random(700) < 0.5).astype(float)
    native[:7] = np.nan
    boot = metrics.resampled_means(np.stack([native, low], axis=1), 300, seed=4, key="dtd")
    reference = metrics.bootstrap_robustness({"dtd": {"native": native, "16": low}}, n_resamples=300, seed=4)
    for column, resolution in enumerate(["native", "16"]):
        row = reference[(reference["metric"] == "accuracy") & (reference["resolution"] == resolution)].iloc[0]
        low_bound, high_bound = metrics.percentile_interval(boot[:, column])
        assert (low_bound, high_bound) == pytest.approx((row["low"], row["high"]), abs=0)
    # The means are over the drawn readable images: check one resample by hand.
    counts = np.bincount(np.random.default_rng([4, zlib.crc32(b"dtd")]).integers(0, 700, 700),
                         minlength=700)
    readable = ~np.isnan(native)
    assert boot[0, 0] == pytest.approx((counts * np.nan_to_num(native))[readable].sum() / counts[readable].sum())


# ---------------------------------------------------------------------------------------------------------------
# The report's tables from constructed runs


def make_run(model, correct, labels, pixels, dataset="dtd", n_classes=10, resolutions=None):
    """A DatasetRun whose top-1 is the label exactly where `correct` (n, R) is 1."""
    resolutions = resolutions or ["native"] + [str(p) for p in pixels[1:]]
    run = DatasetRun(model=model, dataset=dataset, run_id=0, model_spec=model, protocol="canonical", split="test",
                     n_classes=n_classes, classnames=[f"c{i}" for i in range(n_classes)],
                     rows={r: {"pixels": p, "n": len(labels), "n_skipped": 0} for r, p in zip(resolutions, pixels)},
                     dataset_fingerprint="dfp")
    for k, resolution in enumerate(resolutions):
        first = np.where(correct[:, k] == 1, labels, (labels + 1) % n_classes)
        run.top5[resolution] = np.stack([first] + [(labels + j) % n_classes for j in range(2, 6)], axis=1)
        run.labels[resolution] = labels
        run.ok[resolution] = np.ones(len(labels), bool)
    return run


def curves(rng, n, probabilities):
    """Per-image correctness at R = len(probabilities) - 1 resolutions, monotone: correct down to a random
    depth, drawn with `probabilities` (depth 0: wrong at native; R: correct everywhere)."""
    depth = rng.choice(len(probabilities), size=n, p=probabilities)
    return (np.arange(len(probabilities) - 1) < depth[:, None]).astype(float)


@pytest.fixture(scope="module")
def constructed():
    rng = np.random.default_rng(17)
    pixels = [224, 64, 32, 16]
    n = 400
    labels = rng.integers(0, 10, size=n)
    shapes = {"a": [0.05, 0.05, 0.1, 0.3, 0.5], "b": [0.1, 0.1, 0.3, 0.3, 0.2], "c": [0.1, 0.3, 0.3, 0.2, 0.1],
              "d": [0.2, 0.4, 0.2, 0.1, 0.1]}
    correct = {m: curves(rng, n, p) for m, p in shapes.items()}
    return pixels, labels, correct


def profile(runs, resamples=300):
    return profile_tables(Collected(runs, []), seed=1, resamples=resamples)


def test_profile_tables_match_brute_force(constructed):
    pixels, labels, correct = constructed
    runs = [make_run(m, c, labels, pixels) for m, c in correct.items()]
    # Two more datasets for model a, so the aggregate is a median over three (one of them censored).
    for seed, dataset, shape in ((2, "eurosat", [0.1, 0.5, 0.3, 0.05, 0.05]), (3, "pets", [0.1, 0.2, 0.5, 0.1, 0.1])):
        other = curves(np.random.default_rng(seed), 300, shape)
        runs.append(make_run("a", other, np.arange(300) % 10, pixels, dataset=dataset))
    tables = profile(runs)

    half = tables["half_accuracy"]
    for run in runs:
        accuracy = np.array([correct_of(run, r).mean() for r in run.resolutions])
        for kind, chance in (("top1", 0.0), ("above_chance", 0.1)):
            row = half[(half["model"] == run.model) & (half["dataset"] == run.dataset) & (half["accuracy"] == kind)]
            assert row["half_px"].item() == pytest.approx(brute_half(pixels, accuracy, chance))
    aggregate = half[(half["model"] == "a") & half["dataset"].isna() & (half["accuracy"] == "top1")].iloc[0]
    values = half[(half["model"] == "a") & half["dataset"].notna() & (half["accuracy"] == "top1")]["half_px"]
    assert aggregate["n_datasets"] == 3 and aggregate["lowest_px"] == 16
    assert sorted(values)[0] == 0 < sorted(values)[1]  # dtd never falls to half: censored, counted lowest
    assert aggregate["half_px"] == pytest.approx(brute_median(list(values))) and aggregate["half_px"] > 0
    assert not half[half["dataset"].isna()]["model"].isin(["b", "c", "d"]).any()

    lowest = tables["lowest_correct"]
    for run in runs:
        matrix = np.stack([correct_of(run, r) for r in run.resolutions], axis=1)
        brute = [brute_lowest(row) for row in matrix]
        part = lowest[(lowest["model"] == run.model) & (lowest["dataset"] == run.dataset)]
        assert list(part["category"]) == ["wrong at native", "native", "64", "32", "≤ 16"]
        assert list(part["count"]) == [brute.count("wrong")] + [brute.count(j) for j in range(4)]
        assert part["fraction"].sum() == pytest.approx(1)

    stability = tables["rank_stability"]
    assert list(stability["dataset"]) == ["dtd"] * 3  # eurosat has one model
    for _, row in stability.iterrows():
        native = [correct[m][:, 0].mean() for m in "abcd"]
        low = [correct[m][:, pixels.index(int(row["resolution"]))].mean() for m in "abcd"]
        assert row["rho"] == pytest.approx(spearmanr(native, low).statistic)
        assert row["n_models"] == 4 and row["models"] == "a;b;c;d"

    breaking = tables["breaking_classes"]
    part = breaking[(breaking["model"] == "b") & (breaking["dataset"] == "dtd")]
    ranked = part.drop_duplicates("class").sort_values("rank")
    medians = ranked["median_breaking_px"].to_numpy()
    assert (np.diff(medians) <= 0).all()  # classes that break at higher resolutions first
    assert set(ranked["class"]) == {c for c in range(10) if (correct["b"][labels == c, 0] == 1).any()}


def correct_of(run, resolution):
    return (run.top5[resolution][:, 0] == run.labels[resolution]).astype(float)


def test_runs_on_different_images_are_not_ranked_together(constructed):
    pixels, labels, correct = constructed
    runs = [make_run(m, c, labels, pixels) for m, c in list(correct.items())[:2]]
    runs.append(make_run("c", correct["c"][:300], labels[:300], pixels))  # an evaluation with --limit 300
    assert profile(runs)["rank_stability"].empty


def test_intervals_contain_the_estimate_and_shrink_with_more_images(constructed):
    pixels, labels, correct = constructed
    small = profile([make_run(m, c, labels, pixels) for m, c in correct.items()])
    large = profile([make_run(m, np.tile(c, (8, 1)), np.tile(labels, 8), pixels) for m, c in correct.items()])

    def width(frame, column):
        return (frame[f"{column}_high"] - frame[f"{column}_low"]).to_numpy()

    for tables in (small, large):
        half = tables["half_accuracy"]
        inside = half[half["status"] == "within range"]
        assert len(inside) >= 4
        assert ((inside["half_px_low"] <= inside["half_px"]) & (inside["half_px"] <= inside["half_px_high"])).all()
        lowest = tables["lowest_correct"]
        assert ((lowest["fraction_low"] <= lowest["fraction"]) & (lowest["fraction"] <= lowest["fraction_high"])).all()
        breaking = tables["breaking_classes"]
        assert ((breaking["broken_low"] <= breaking["broken"]) & (breaking["broken"] <= breaking["broken_high"])).all()
        stability = tables["rank_stability"]
        noise = 1e-12  # the resamples' vectorised rho and spearmanr's differ in the last bits
        assert ((stability["rho_low"] <= stability["rho"] + noise)
                & (stability["rho"] <= stability["rho_high"] + noise)).all()
    keep = (small["half_accuracy"]["status"] == "within range").to_numpy()
    assert (width(large["half_accuracy"], "half_px")[keep] < width(small["half_accuracy"], "half_px")[keep]).all()
    assert (width(large["lowest_correct"], "fraction") < width(small["lowest_correct"], "fraction")).all()
    spread = [width(t["breaking_classes"], "broken") for t in (small, large)]
    assert np.nanmean(spread[1]) < 0.6 * np.nanmean(spread[0])
    assert width(large["rank_stability"], "rho").sum() < width(small["rank_stability"], "rho").sum()


def test_censored_half_accuracy_and_interval():
    rng = np.random.default_rng(19)
    labels = rng.integers(0, 10, size=300)
    robust = curves(rng, 300, [0.1, 0.0, 0.0, 0.0, 0.9])  # 90% correct everywhere
    tables = profile([make_run("r", robust, labels, [224, 64, 32, 16])])
    row = tables["half_accuracy"].iloc[0]
    assert row["status"] == "below lowest" and row["half_px"] == 0 and row["lowest_px"] == 16
    assert row["half_px_low"] == 0 and row["half_px_high"] == 0


# ---------------------------------------------------------------------------------------------------------------
# The report from real evaluations of the bundled tiny model


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    import lr0fm
    from lr0fm.models.tiny import weights_path
    from lr0fm.report import build_report

    folder = tmp_path_factory.mktemp("tiny-report")
    db = folder / "results.sqlite"
    # A third "model": the tiny model with its weights perturbed (another fingerprint, other answers).
    with safe_open(str(weights_path()), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    generator = torch.Generator().manual_seed(0)
    noisy = {k: v + 0.05 * v.std() * torch.randn(v.shape, generator=generator) if v.is_floating_point() and v.numel() > 1
             else v for k, v in tensors.items()}
    save_file(noisy, str(folder / "noisy.safetensors"), metadata=metadata)
    options = dict(resolutions="native,16,8", limit=300, db=db, workers=0, device="cpu")
    lr0fm.evaluate("lr0fm-tiny", "fashion_mnist", **options)
    lr0fm.evaluate("lr0fm-tiny", "fashion_mnist", protocol="paper", **options)
    lr0fm.evaluate("lr0fm-tiny", "fashion_mnist", weights=str(folder / "noisy.safetensors"), **options)
    result = build_report(db, folder / "out", ["md", "csv"], resamples=200)
    return db, result


@pytest.mark.slow
def test_report_has_the_new_sections_and_csvs(tiny_report):
    db, result = tiny_report
    markdown = (result.folder / "report.md").read_text()
    titles = [line for line in markdown.splitlines() if line.startswith("## ")]
    plausible = titles.index("## Are low-resolution mistakes plausible?")
    assert titles[plausible + 1:plausible + 4] == ["## Half-accuracy resolution",
                                                   "## Lowest resolution still correct, per image",
                                                   "## Do model rankings survive low resolution?"]
    for name in ("half_accuracy.csv", "lowest_correct.csv", "breaking_classes.csv", "rank_stability.csv",
                 "lowest_correct.png"):
        assert name in result.files and (result.folder / name).is_file()
    assert "Images by the lowest resolution down to which they stay correct" in (result.folder / "report.html").read_text()

    stability = pd.read_csv(result.folder / "rank_stability.csv")
    assert list(stability["resolution"].astype(str)) == ["16", "8"] and (stability["n_models"] == 3).all()
    assert "Which classes break first" in markdown

    # The lowest-correct counts against the stored predictions, image by image.
    from lr0fm.report import collect
    from lr0fm.store import ResultStore

    lowest = pd.read_csv(result.folder / "lowest_correct.csv", keep_default_na=False)
    with ResultStore(db) as store:
        collected = collect(store)
    assert len(collected.runs) == 3
    for run in collected.runs:
        matrix = np.stack([correct_of(run, r) for r in run.resolutions], axis=1)
        brute = [brute_lowest(row) for row in matrix]
        part = lowest[lowest["model"] == run.model]
        assert list(part["count"]) == [brute.count("wrong")] + [brute.count(j) for j in range(3)]
        accuracy = matrix.mean(axis=0)
        half = result.tables.half_accuracy
        row = half[(half["model"] == run.model) & (half["accuracy"] == "top1")].iloc[0]
        pixels = [run.rows[r]["pixels"] for r in run.resolutions]
        assert row["half_px"] == pytest.approx(brute_half(pixels, accuracy))


@pytest.mark.slow
def test_api_returns_the_report_tables(tiny_report):
    import lr0fm

    db, result = tiny_report
    profile = lr0fm.api.robustness_profile(db=db, resamples=200)
    assert set(profile) == {"half_accuracy", "lowest_correct", "breaking_classes", "rank_stability"}
    for name, frame in profile.items():
        pd.testing.assert_frame_equal(frame, getattr(result.tables, name))
    with pytest.raises(UserError, match="No finished results"):
        lr0fm.api.robustness_profile(db=db, dataset="cifar")


def test_api_without_a_database(tmp_path):
    import lr0fm

    with pytest.raises(UserError, match="No results database"):
        lr0fm.api.robustness_profile(db=tmp_path / "missing.sqlite")
