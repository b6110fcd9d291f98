"""`lr0fm analyze findings`: the backbone metadata, the statistics against independent computations on
constructed tables, the pairs built from metadata, the CLI on the paper's table and on a database, the report."""

import csv
import json
import math
from importlib import resources

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from lr0fm import cli, reference
from lr0fm.findings import (MODEL_COLUMNS, compute_findings, paired_difference, rank_correlation, spearman,
                            parse_resolutions)
from lr0fm.errors import UserError
from lr0fm.models import registry
from lr0fm.models.meta import CURATIONS, META_COLUMNS, count_openclip_image_params
from lr0fm.store import ResultStore
from test_cli import run_main

invoke = CliRunner().invoke


def rows(name):
    with resources.files("lr0fm.reference").joinpath(name).open("r", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


META = rows("backbone_meta.csv")
BACKBONES = rows("backbones.csv")


# ---------------------------------------------------------------------------------------------------------------
# The metadata file


def test_metadata_covers_every_registry_row_with_valid_values():
    assert [r["name"] for r in META] == [r["name"] for r in BACKBONES]
    assert list(META[0]) == list(META_COLUMNS)
    by_name = {r["name"]: r for r in META}
    for row in META:
        assert row["arch"] and row["pretrain_data"] and row["source"], row["name"]
        assert row["curation"] in CURATIONS
        assert int(row["pretrain_pairs"]) >= 1_000_000
        if row["image_params"]:
            assert int(row["image_params"]) >= 10_000_000
        else:  # only where no image-tower figure exists, and the source says so
            assert row["name"].startswith("m2-encoder") and "unknown" in row["source"]
        assert "image_params:" in row["source"] and "data:" in row["source"]
        if row["finetuned"]:
            base = by_name[row["base"]]
            assert not base["finetuned"] and base["arch"] == row["arch"]
            assert base["pretrain_data"] == row["pretrain_data"]
        else:
            assert not row["base"]
    # every registry entry of the paper carries its row
    for entry in registry.entries():
        if entry.paper_name:
            assert entry.meta is not None and entry.meta.arch == by_name[entry.name]["arch"]


def test_openclip_rows_say_how_they_were_counted():
    for meta, backbone in zip(META, BACKBONES):
        if backbone["spec"].startswith("openclip:"):
            arch = backbone["spec"].removeprefix("openclip:").split("/")[0]
            assert f"open_clip.create_model('{arch}', pretrained=None) on the meta device" in meta["source"]


def test_one_count_matches_open_clip():
    row = next(r for r in META if r["name"] == "clip-vit-b32")
    assert count_openclip_image_params("ViT-B-32") == int(row["image_params"])


@pytest.mark.slow
def test_every_openclip_count_matches_open_clip():
    for meta, backbone in zip(META, BACKBONES):
        if backbone["spec"].startswith("openclip:"):
            arch = backbone["spec"].removeprefix("openclip:").split("/")[0]
            assert count_openclip_image_params(arch) == int(meta["image_params"]), meta["name"]


def test_register_carries_metadata_and_refuses_bad_values():
    entry = registry.register("findings-test-model", "lr0fm-tiny", arch="tiny", image_params=1234,
                              pretrain_pairs=10**6, curation="web", replace=True)
    try:
        assert entry.meta.image_params == 1234 and entry.meta.curation == "web"
        assert registry.register("findings-plain", "lr0fm-tiny", replace=True).meta is None
        with pytest.raises(UserError, match="positive whole number"):
            registry.register("findings-bad", "lr0fm-tiny", image_params=0)
        with pytest.raises(UserError, match="curation"):
            registry.register("findings-bad", "lr0fm-tiny", curation="pristine")
    finally:
        for name in ("findings-test-model", "findings-plain", "findings-bad"):
            registry.unregister(name)


# ---------------------------------------------------------------------------------------------------------------
# Statistics against independent computations


def test_vectorised_spearman_equals_scipy():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, (4, 30)).astype(float)  # ties
    y = rng.normal(size=(4, 30))
    for i in range(4):
        assert spearman(x[i], y[i]) == pytest.approx(stats.spearmanr(x[i], y[i]).statistic)
    assert spearman(x, y) == pytest.approx([stats.spearmanr(x[i], y[i]).statistic for i in range(4)])
    assert spearman(np.ones(5), np.arange(5.0)) == 0.0


def test_rank_correlation_known_answers():
    rng = np.random.default_rng(0)
    x = np.log10(np.geomspace(1e7, 1e10, 40))
    y = 0.1 * x + rng.normal(0, 0.05, 40)  # robustness constructed to rise with parameters
    up = rank_correlation(x, y, resamples=500, seed=3)
    assert up["estimate"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert 0 < up["low"] < up["estimate"] < up["high"]
    # Same seed, same interval
    assert rank_correlation(x, y, resamples=500, seed=3) == up
    # Independent percentile bootstrap: resample pairs, 2.5th and 97.5th percentile of rho
    draws = np.random.default_rng(11).integers(0, 40, (2000, 40))
    rhos = [stats.spearmanr(x[d], y[d]).statistic for d in draws]
    assert up["low"] == pytest.approx(np.percentile(rhos, 2.5), abs=0.04)
    assert up["high"] == pytest.approx(np.percentile(rhos, 97.5), abs=0.04)
    shuffled = rank_correlation(x, rng.permutation(rng.normal(size=40)), resamples=500, seed=3)
    assert shuffled["low"] < 0 < shuffled["high"]


def test_paired_difference_known_answers():
    d = np.array([-0.03, -0.01, -0.02, -0.05, -0.04, -0.015, -0.025])
    row = paired_difference(d, resamples=500, seed=0)
    assert row["estimate"] == pytest.approx(d.mean()) and row["n"] == 7
    assert row["low"] <= d.mean() <= row["high"] < 0
    # exact two-sided signed-rank p: all 7 ranks on one side, 2 / 2**7
    assert row["p_value"] == pytest.approx(2 / 2**7)
    few = paired_difference(d[:4], resamples=200)
    assert math.isnan(few["p_value"]) and few["high"] < 0
    assert math.isnan(paired_difference(d[:2])["low"])


# ---------------------------------------------------------------------------------------------------------------
# Pairs and verdicts on a constructed table


def constructed(sign: float = 1.0):
    """12 models: size pairs, fine-tunes, higher-resolution copies, curated vs web data. `sign` -1 reverses
    every effect the paper claims."""
    models, scores = [], []
    base_scores = {}
    for i in range(6):
        params = 10 ** (7.5 + 0.4 * i)
        name = f"m{i}"
        models.append({"model": name, "origin": "paper", "family": "x", "native": 224, "arch": f"A{i}",
                       "image_params": params, "pretrain_data": "W", "pretrain_pairs": 10**9, "curation": "web",
                       "finetuned": "", "base": "", "datasets": "d"})
        base_scores[name] = 0.2 + sign * 0.03 * i
    for i in range(6):
        # fine-tune of m{i}: lower by 0.01*(i+1); a 336 px copy: lower by 0.005*(i+1); curated data: +0.02*(i+1)
        for suffix, extra, delta in (("ft", {"finetuned": "COCO", "base": f"m{i}"}, -0.01),
                                     ("hr", {"native": 336}, -0.005),
                                     ("cur", {"pretrain_data": "C", "curation": "curated"}, 0.02)):
            row = {**models[i], "model": f"m{i}-{suffix}", **extra}
            models.append(row)
            base_scores[row["model"]] = base_scores[f"m{i}"] + sign * delta * (i + 1)
    for name, value in base_scores.items():
        for resolution in ("128", "64", "32", "16"):
            scores.append({"model": name, "resolution": resolution, "SAR": value, "WAR": value / 2, "n_datasets": 1})
    scores = pd.DataFrame(scores)
    mean = scores.groupby("model")[["SAR", "WAR"]].mean().reset_index().assign(resolution="mean", n_datasets=1)
    return pd.DataFrame(models, columns=MODEL_COLUMNS), pd.concat([scores, mean], ignore_index=True)


def test_pairs_and_verdicts_on_constructed_table():
    models, scores = constructed()
    result = compute_findings(models, scores, ["16"], resamples=300)
    pairs = result.pairs[(result.pairs["metric"] == "SAR") & (result.pairs["resolution"] == "16")]
    by = {c: set(zip(p["reference"], p["model"])) for c, p in pairs.groupby("comparison")}
    assert by["finetuned"] == {(f"m{i}", f"m{i}-ft") for i in range(6)}
    assert by["resolution"] == {(f"m{i}", f"m{i}-hr") for i in range(6)}
    # the fine-tune has the same arch and data but is fine-tuned: never a data pair; hr has another native
    assert by["curation"] == {(f"m{i}", f"m{i}-cur") for i in range(6)}
    assert "data_size" not in by
    statistic = result.statistics.set_index(["what", "metric", "resolution"])
    ft = statistic.loc[("fine-tuned − base", "SAR", "16")]
    assert ft["estimate"] == pytest.approx(-0.01 * np.mean(np.arange(1, 7)))
    assert ft["in_direction"] == 6 and ft["p_value"] == pytest.approx(2 / 2**6)
    verdicts = result.verdicts.set_index("claim")["verdict"]
    assert verdicts.to_dict() == {"size": "supported", "data": "supported", "finetune": "supported",
                                  "resolution": "supported"}
    text = result.verdicts.set_index("claim").loc["finetune", "text"]
    assert text.startswith("supported:") and f"{100 * ft['estimate']:.2f}" in text

    reverse = compute_findings(*constructed(-1.0), ["16"], resamples=300).verdicts.set_index("claim")["verdict"]
    assert set(reverse) == {"contradicted"}


def test_parse_resolutions():
    assert parse_resolutions(None) == ["16"]
    assert parse_resolutions("32,16px") == ["32", "16"]
    assert parse_resolutions([64, "mean"]) == ["64", "mean"]
    with pytest.raises(UserError, match="Unknown resolution '20'"):
        parse_resolutions("20")


# ---------------------------------------------------------------------------------------------------------------
# The CLI and the report


def independent_paper_sar(resolution: str) -> pd.Series:
    """SAR per registry name straight from the CSV: mean over datasets of top-1 at r / top-1 at native."""
    paper = reference.paper_accuracy()
    wide = paper.pivot_table(index=["backbone", "dataset"], columns="resolution", values="top1")
    sar = (wide[resolution] / wide["native"]).groupby("backbone").mean()
    names = {r["paper_name"]: r["name"] for r in BACKBONES}
    return sar.rename(index=names)


def test_cli_on_the_paper_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no default database here: the paper's table alone
    out, plots = tmp_path / "findings.json", tmp_path / "plots"
    result = invoke(cli.app, ["analyze", "findings", "--resamples", "200", "--out", str(out), "--plot-dir",
                              str(plots)])
    assert result.exit_code == 0, result.output
    assert "Bigger image towers" in result.stdout
    numbers = json.loads(out.read_text())
    assert {v["claim"] for v in numbers["verdicts"]} == {"size", "data", "finetune", "resolution"}
    assert all(v["verdict"] in ("supported", "mixed", "not supported", "contradicted") for v in numbers["verdicts"])
    assert sorted(p.name for p in plots.iterdir()) == sorted(
        ["findings_params.png", "findings_pretrain.png", "findings_finetuned.png", "findings_resolution.png",
         "findings_curation.png"])
    # rho with parameters at 16 px against an independent SAR and the metadata file
    sar = independent_paper_sar("16")
    params = {r["name"]: int(r["image_params"]) for r in META if r["image_params"]}
    names = sorted(params)
    expected = stats.spearmanr([params[n] for n in names], [sar[n] for n in names]).statistic
    row = next(s for s in numbers["statistics"] if s["what"] == "log image params" and s["metric"] == "SAR"
               and s["resolution"] == "16")
    assert row["n"] == len(names) and row["estimate"] == pytest.approx(expected)
    # the fine-tune pairs' SAR difference against the same independent SAR
    pairs = [(r["base"], r["name"]) for r in META if r["finetuned"]]
    row = next(s for s in numbers["statistics"] if s["what"] == "fine-tuned − base" and s["metric"] == "SAR"
               and s["resolution"] == "16")
    assert row["estimate"] == pytest.approx(np.mean([sar[b] - sar[a] for a, b in pairs]))
    csv_out = tmp_path / "findings.csv"
    assert invoke(cli.app, ["analyze", "findings", "--resamples", "50", "-o", str(csv_out)]).exit_code == 0
    assert list(pd.read_csv(csv_out).columns)[:3] == ["claim", "test", "what"]


@pytest.mark.parametrize("args, message", [
    (["--resolution", "20"], "Unknown resolution '20'"),
    (["--db", "{tmp}/missing.sqlite"], "No results database"),
    (["--db", "{tmp}/empty.sqlite"], "No finished results"),
    (["--out", "{tmp}/numbers.txt"], "name the file .csv or .json"),
    (["--resamples", "0"], "--resamples must be at least 1"),
])
def test_user_errors_are_one_sentence_and_exit_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    with ResultStore(tmp_path / "empty.sqlite"):
        pass
    code, _, err = run_main(monkeypatch, capsys, "analyze", "findings",
                            *[a.format(tmp=tmp_path) for a in args])
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def tiny_database(tmp_path_factory):
    """The bundled tiny model evaluated twice on 32 Fashion-MNIST images: registered with metadata, and as
    the plain spec (which cannot join)."""
    import lr0fm

    db = tmp_path_factory.mktemp("findings") / "results.sqlite"
    registry.register("findings-tiny", "lr0fm-tiny", arch="tiny-vit", image_params=2_000_000,
                      pretrain_data="Fashion-MNIST train", pretrain_pairs=60_000, curation="curated", replace=True)
    lr0fm.evaluate(["findings-tiny", "lr0fm-tiny"], "fashion_mnist", resolutions="native,16", limit=32, db=db,
                   workers=0)
    yield db
    registry.unregister("findings-tiny")


def test_cli_joins_registered_models_of_the_database(tiny_database, tmp_path):
    out = tmp_path / "numbers.json"
    result = invoke(cli.app, ["analyze", "findings", "--db", str(tiny_database), "--resamples", "100", "-o",
                              str(out), "--plot-dir", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    numbers = json.loads(out.read_text())
    mine = [m for m in numbers["models"] if m["origin"] == "database"]
    assert [m["model"] for m in mine] == ["findings-tiny"] and mine[0]["datasets"] == "fashion_mnist"
    assert [x["model"] for x in numbers["left_out"]] == ["lr0fm-tiny"]
    assert "not a registry name" in numbers["left_out"][0]["why"]
    params = next(s for s in numbers["statistics"] if s["what"] == "log image params" and s["metric"] == "SAR"
                  and s["resolution"] == "16")
    assert params["n"] == 64  # the paper's 63 backbones with a parameter count, plus the tiny model
    # its 16 px SAR is its stored top-1 at 16 / at native (one dataset)
    with ResultStore(tiny_database) as store:
        top1 = {r["resolution"]: r["top1"] for r in store.results(model="findings-tiny")}
    score = next(s for s in numbers["scores"] if s["model"] == "findings-tiny" and s["resolution"] == "16")
    assert score["SAR"] == pytest.approx(top1["16"] / top1["native"])
    assert not any(s["model"] == "findings-tiny" and s["resolution"] == "mean" for s in numbers["scores"])
    only_mine = invoke(cli.app, ["analyze", "findings", "--db", str(tiny_database), "--no-paper", "--resamples", "50"])
    assert only_mine.exit_code == 0, only_mine.output


def test_report_has_the_findings_section(tiny_database, tmp_path):
    import time

    from lr0fm.report import build_report

    started = time.perf_counter()
    result = build_report(tiny_database, tmp_path / "report", "md", resamples=200)
    assert time.perf_counter() - started < 60
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Findings" in text and text.index("## Findings") < text.index("## Notes")
    section = text.split("## Findings")[1].split("## Notes")[0]
    assert "Bigger image towers" in section and "Left out of the findings: lr0fm-tiny" in section
    assert "findings_params.png" in result.files and (tmp_path / "report" / "findings_params.png").is_file()
