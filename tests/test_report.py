"""`lr0fm report` and `lr0fm weights fit`: numbers against hand computations on constructed predictions,
reproducible bootstrap intervals, self-contained HTML, the placing among the paper's backbones."""

import base64
import json
import math
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lr0fm import cli, reference
from lr0fm.errors import UserError
from lr0fm.findings import PLOT_FILES
from lr0fm.report import build_report, collect
from lr0fm.report import plots as report_plots
from lr0fm.store import ResultStore, RunKey

invoke = CliRunner().invoke
FINDINGS_FIGURES = set(PLOT_FILES.values())  # the Findings section's figures (the paper's table has them all)

EUROSAT_NAMES = ["annual crop land", "forest", "brushland or shrubland", "highway or road",
                 "industrial buildings", "pasture land", "permanent crop land", "residential buildings", "river",
                 "lake or sea"]


def top5_rows(labels, hits, offsets, n_classes):
    """Top-5 per sample: a hit ranks the label first, then label+1..+4; a miss answers label+offset first.

    Every native miss uses offset 1 and keeps the label second, so the native top-5 of every image is the
    set {label, ..., label+4}: a low-resolution mistake with offset 1-4 lies in it, 5 or more does not.
    """
    rows = []
    for label, hit, offset in zip(labels, hits, offsets):
        if hit:
            rows.append([(label + k) % n_classes for k in range(5)])
        elif offset is None:  # native miss
            rows.append([(label + 1) % n_classes, label, *((label + k) % n_classes for k in (2, 3, 4))])
        else:
            first = (label + offset) % n_classes
            rest = [c for c in ((first + k) % n_classes for k in range(1, n_classes)) if c != label][:4]
            rows.append([first, *rest])
    return np.array(rows, dtype=np.int32)


def write_run(store, model, dataset, n_classes, labels, cells, classnames=None, fingerprint="fp", native_pixels=224):
    """cells: resolution -> (number of leading hits, offsets of the misses in order, or None at native)."""
    provenance = {"n_classes": n_classes}
    if classnames is not None:
        provenance["classnames"] = classnames
    run_id = store.run_id(RunKey(model, fingerprint, dataset, "dfp", "test", "canonical"), provenance)
    labels = np.asarray(labels)
    top5 = {}
    for resolution, (hits, offsets) in cells.items():
        hit = np.arange(len(labels)) < hits
        misses = iter(offsets) if offsets is not None else None
        per_sample = [None if h or misses is None else next(misses) for h in hit]
        top5[resolution] = top5_rows(labels, hit, per_sample, n_classes)
    store.add_chunk(run_id, 0, labels, np.ones(len(labels), bool), top5)
    for resolution in cells:
        store.finish_resolution(run_id, resolution, n_classes, native_pixels if resolution == "native" else int(resolution))
    return run_id


EUROSAT_16_OFFSETS = [1, 1, 1, 1, 2, 2, 3, 6, 6, 7, 7]  # 11 misses, 7 inside the native top-5
DTD_16_OFFSETS = [1, 1, 1, 10, 10, 10, 10, 10, 10]  # 9 misses, 3 inside


def hand_db(path: Path, model="mine") -> Path:
    with ResultStore(path) as store:
        write_run(store, model, "eurosat", 10, [i % 10 for i in range(20)],
                  {"native": (18, None), "32": (15, [1, 1, 5, 5, 5]), "16": (9, EUROSAT_16_OFFSETS)},
                  classnames=EUROSAT_NAMES)
        write_run(store, model, "dtd", 47, [(3 * i) % 47 for i in range(10)],
                  {"native": (5, None), "32": (4, [1] * 6), "16": (1, DTD_16_OFFSETS)},
                  classnames=[f"texture {i}" for i in range(47)])
        # No class names in the provenance: a run recorded before they were kept.
        write_run(store, model, "fashion_mnist", 10, list(range(10)),
                  {"native": (8, None), "32": (6, [1] * 4), "16": (4, [1] * 6)})
    return path


def discount(native, n_classes):
    return 1 - math.exp(-200 * (native - 1 / n_classes) ** 2)


# Hand-computed: top-1 (fractions), gamma, Gamma, SAR and WAR of the constructed predictions.
TOP1 = {("eurosat", "native"): 0.9, ("eurosat", "32"): 0.75, ("eurosat", "16"): 0.45,
        ("dtd", "native"): 0.5, ("dtd", "32"): 0.4, ("dtd", "16"): 0.1,
        ("fashion_mnist", "native"): 0.8, ("fashion_mnist", "32"): 0.6, ("fashion_mnist", "16"): 0.4}
CLASSES = {"eurosat": 10, "dtd": 47, "fashion_mnist": 10}
WEIGHT = {"eurosat": 1.0, "dtd": reference.WAR_WEIGHTS["dtd"], "fashion_mnist": 1.0}  # fashion: the default 1


def gamma(dataset, resolution):
    return TOP1[(dataset, resolution)] / TOP1[(dataset, "native")]


def improved(dataset, resolution):
    return gamma(dataset, resolution) * discount(TOP1[(dataset, "native")], CLASSES[dataset])


def expected_sar_war(resolution):
    sar = np.mean([gamma(d, resolution) for d in CLASSES])
    war = sum(WEIGHT[d] * improved(d, resolution) for d in CLASSES) / sum(WEIGHT.values())
    return sar, war


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    db = hand_db(folder / "results.sqlite")
    result = build_report(db, folder / "out", compare_paper=True, seed=0, resamples=300)
    return result, db, folder / "out"


def test_accuracy_and_robustness_match_hand_computation(report):
    result, _, _ = report
    accuracy = result.tables.accuracy.set_index(["dataset", "resolution"])
    for key, value in TOP1.items():
        assert accuracy.loc[key, "top1"] == pytest.approx(value)
        assert accuracy.loc[key, "top1_low"] <= value <= accuracy.loc[key, "top1_high"]
    # Native misses keep the label second, low-resolution misses drop it from the top-5.
    assert accuracy.loc[("eurosat", "native"), "top5"] == 1.0
    assert accuracy.loc[("eurosat", "16"), "top5"] == pytest.approx(0.45)
    assert accuracy.loc[("dtd", "native"), "n_classes"] == 47
    robustness = result.tables.robustness.set_index(["dataset", "resolution"])
    for dataset in CLASSES:
        for resolution in ("32", "16"):
            row = robustness.loc[(dataset, resolution)]
            assert row["gamma"] == pytest.approx(gamma(dataset, resolution))
            assert row["Gamma"] == pytest.approx(improved(dataset, resolution))
            assert row["gamma_low"] <= row["gamma"] <= row["gamma_high"]
    assert robustness.loc[("fashion_mnist", "16"), "weight_source"] == "default"
    assert robustness.loc[("dtd", "16"), "weight"] == reference.WAR_WEIGHTS["dtd"]


def test_sar_war_match_hand_computation(report):
    result, _, _ = report
    table = result.tables.sar_war.set_index("resolution")
    for resolution in ("32", "16"):
        sar, war = expected_sar_war(resolution)
        row = table.loc[resolution]
        assert row["SAR"] == pytest.approx(sar) and row["WAR"] == pytest.approx(war)
        assert row["SAR_low"] <= row["SAR"] <= row["SAR_high"] and row["WAR_low"] <= row["WAR"] <= row["WAR_high"]
        assert row["n_datasets"] == 3 and row["rank_SAR"] == 1
    assert table.loc["16", "SAR"] == pytest.approx(0.4)
    assert result.tables.default_weight_datasets == ["fashion_mnist"]


def test_plausibility_and_confusions(report):
    result, _, _ = report
    plausible = result.tables.plausibility.set_index(["dataset", "resolution"])
    row = plausible.loc[("eurosat", "16")]
    assert (row["n"], row["n_wrong"], row["in_native_top5"]) == (20, 11, 7)
    assert row["share_in_native_top5"] == pytest.approx(7 / 11)
    assert row["chance_share"] == pytest.approx(4 / 9)  # 4 wrong classes in each native top-5, of 9
    row = plausible.loc[("dtd", "16")]
    assert (row["n_wrong"], row["in_native_top5"]) == (9, 3) and row["chance_share"] == pytest.approx(4 / 46)
    assert plausible.loc[("eurosat", "32"), "in_native_top5"] == 2

    # Most frequent (true -> predicted) pairs, counted by hand from the construction.
    labels = [i % 10 for i in range(20)][9:]
    expected = Counter((t, (t + o) % 10) for t, o in zip(labels, EUROSAT_16_OFFSETS))
    confusions = result.tables.confusions
    mine = confusions[(confusions["dataset"] == "eurosat") & (confusions["resolution"] == "16")]
    assert len(mine) == 5
    assert list(mine["count"]) == sorted(expected.values(), reverse=True)[:5]
    for _, r in mine.iterrows():
        assert expected[(r["true"], r["predicted"])] == r["count"]
        assert r["true_name"] == EUROSAT_NAMES[r["true"]] and r["predicted_name"] == EUROSAT_NAMES[r["predicted"]]
    fashion = confusions[confusions["dataset"] == "fashion_mnist"]
    assert set(fashion["true_name"]) <= {f"class {i}" for i in range(10)}  # no names stored: indices


def test_bootstrap_is_reproducible_and_seeded(report, tmp_path):
    result, db, out = report
    build_report(db, tmp_path / "again", compare_paper=True, seed=0, resamples=300)
    for name in ("accuracy.csv", "robustness.csv", "sar_war.csv"):
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    assert (out / "report.md").read_text() == (tmp_path / "again" / "report.md").read_text()
    other = build_report(db, tmp_path / "other", ["csv"], seed=1, resamples=300)
    first, second = result.tables.sar_war, other.tables.sar_war
    assert np.allclose(first["SAR"], second["SAR"])  # estimates do not depend on the seed
    assert not np.allclose(first["SAR_low"], second["SAR_low"])  # intervals do


def test_outputs_exist_and_html_is_self_contained(report):
    result, _, out = report
    expected = {"report.html", "report.md", "report.tex", "accuracy.png", "sar_war.png", "compare_paper.png",
                "accuracy.csv", "robustness.csv", "sar_war.csv", "plausibility.csv", "confusions.csv",
                "compare_paper.csv", "compare_paper_backbones.csv", "lowest_correct.png", "half_accuracy.csv",
                "lowest_correct.csv", "breaking_classes.csv", "rank_stability.csv"}
    expected |= FINDINGS_FIGURES
    assert set(result.files) == expected and {p.name for p in out.iterdir()} == expected
    for name in ("accuracy.png", "sar_war.png", "compare_paper.png", "lowest_correct.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < 400_000
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower()
    sources = re.findall(r'<img[^>]*\bsrc="([^"]*)"', page)
    assert len(sources) == 4 + len(FINDINGS_FIGURES)
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:4] == b"\x89PNG"
    assert not re.findall(r'\bhref="(?!#)', page)
    assert "fashion_mnist has no weight in the paper" in page and "default weight 1" in page
    assert "90.00 ±" in page and "40.00 ±" in page  # EuroSAT native top-1, SAR at 16 px


def test_markdown_and_latex(report):
    _, _, out = report
    markdown = (out / "report.md").read_text()
    assert "![" in markdown and "(accuracy.png)" in markdown
    assert "| mine | EuroSAT | 224 | 90.00 ±" in markdown
    latex = (out / "report.tex").read_text()
    assert latex.startswith("\\documentclass") and latex.rstrip().endswith("\\end{document}")
    assert "\\begin{tabular}" in latex and "fashion\\_mnist" in latex and "$\\pm$" in latex
    assert "\\includegraphics[width=\\linewidth]{accuracy.png}" in latex


def test_formats_select_files(report, tmp_path):
    _, db, _ = report
    result = build_report(db, tmp_path / "md-only", "md", resamples=20)
    assert set(result.files) == {"report.html", "report.md", "accuracy.png", "sar_war.png", "lowest_correct.png",
                                 *FINDINGS_FIGURES}
    with pytest.raises(UserError, match="Unknown report format 'pdf'"):
        build_report(db, tmp_path / "bad", "md,pdf")
    assert not (tmp_path / "bad").exists()


def test_rerun_replaces_and_removes_stale_files(report, tmp_path):
    _, db, _ = report
    out = tmp_path / "out"
    build_report(db, out, compare_paper=True, resamples=20)
    (out / "mine.txt").write_text("kept")
    build_report(db, out, ["md"], resamples=20)
    names = {p.name for p in out.iterdir()}
    assert names == {"report.html", "report.md", "accuracy.png", "sar_war.png", "lowest_correct.png", "mine.txt",
                     *FINDINGS_FIGURES}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_failure_leaves_nothing_half_written(report, tmp_path, monkeypatch):
    _, db, _ = report

    def broken(tables, path):
        path.write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(report_plots, "sar_war_plot", broken)
    with pytest.raises(UserError, match="Cannot write the report"):
        build_report(db, tmp_path / "out", resamples=20)
    assert list(tmp_path.iterdir()) == []


def test_missing_database_and_empty_filter(tmp_path, report):
    _, db, _ = report
    with pytest.raises(UserError, match="No results database"):
        build_report(tmp_path / "none.sqlite", tmp_path / "out")
    with pytest.raises(UserError, match="matching the filters"):
        build_report(db, tmp_path / "out", model="nobody")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# Compared with the paper's backbones


def test_compare_paper_restricts_to_shared_datasets(report):
    result, _, out = report
    compare = result.tables.compare.set_index("resolution")
    assert list(compare.index) == ["32", "16"]  # the model has no 128/64 cells
    row = compare.loc["16"]
    assert row["status"] == "ranked" and row["datasets"] == "dtd;eurosat" and row["left_out"] == "fashion_mnist"
    sar = np.mean([gamma("dtd", "16"), gamma("eurosat", "16")])
    assert row["SAR"] == pytest.approx(sar)
    page = (out / "report.html").read_text()
    assert "Left out of this comparison" in page and "fashion_mnist" in page


def paper_sar(backbone_rows: pd.DataFrame, resolution: str) -> float:
    acc = backbone_rows.set_index(["dataset", "resolution"])["top1"]
    return float(np.mean([acc[(d, resolution)] / acc[(d, "native")] for d in ("dtd", "eurosat")]))


def test_user_model_equal_to_a_backbone_ties_with_it(tmp_path):
    """A model whose accuracies equal OpenCLIP-ViT-B/16's on DTD and EuroSAT shares its rank."""
    paper = reference.paper_accuracy()
    backbone = "OpenCLIP-ViT-B/16"
    n = 10_000  # so that hits / n equals the published percentages exactly
    db = tmp_path / "results.sqlite"
    with ResultStore(db) as store:
        for dataset, classes in (("dtd", 47), ("eurosat", 10)):
            acc = paper[(paper["backbone"] == backbone) & (paper["dataset"] == dataset)].set_index("resolution")["top1"]
            cells = {r: (round(acc[r] * 100), [1] * (n - round(acc[r] * 100))) for r in ("32", "16")}
            cells["native"] = (round(acc["native"] * 100), None)
            write_run(store, "twin", dataset, classes, [i % classes for i in range(n)], cells)
    result = build_report(db, tmp_path / "out", ["csv"], compare_paper=True, resamples=10)
    compare = result.tables.compare.set_index("resolution")
    shared = paper[paper["dataset"].isin(["dtd", "eurosat"])]
    for resolution in ("32", "16"):
        scores = {b: paper_sar(rows, resolution) for b, rows in shared.groupby("backbone")}
        mine = scores[backbone]
        expected_rank = 1 + sum(v > mine + 1e-9 for v in scores.values())
        assert compare.loc[resolution, "SAR"] == pytest.approx(mine, abs=1e-12)
        assert compare.loc[resolution, "SAR_rank"] == expected_rank
        backbones = result.tables.paper_scores[(resolution, ("dtd", "eurosat"))].set_index("backbone")
        war_rank = 1 + int((backbones["WAR"] > backbones.loc[backbone, "WAR"] + 1e-9).sum())
        assert compare.loc[resolution, "WAR_rank"] == war_rank
        assert compare.loc[resolution, "n_backbones"] == 66
    written = pd.read_csv(tmp_path / "out" / "compare_paper_backbones.csv")
    assert set(written["backbone"]) == set(paper["backbone"]) and len(written) == 2 * 66


def test_compare_paper_without_overlap_says_so(tmp_path):
    db = tmp_path / "results.sqlite"
    with ResultStore(db) as store:
        write_run(store, "fashion-only", "fashion_mnist", 10, list(range(10)),
                  {"native": (8, None), "16": (4, [1] * 6)})
    result = build_report(db, tmp_path / "out", compare_paper=True, resamples=20)
    compare = result.tables.compare
    assert list(compare["status"]) == ["no overlap"] and compare["SAR_rank"].isna().all()
    assert "compare_paper.png" not in result.files
    page = (tmp_path / "out" / "report.html").read_text()
    assert "No ranking for fashion-only" in page and "only on datasets the paper did not use" in page


def test_models_ranked_among_themselves(tmp_path):
    db = tmp_path / "results.sqlite"
    with ResultStore(db) as store:
        for model, hits in (("weak", 2), ("strong", 7), ("middle", 5)):
            write_run(store, model, "eurosat", 10, [i % 10 for i in range(10)],
                      {"native": (9, None), "16": (hits, [1] * (10 - hits))})
    result = build_report(db, tmp_path / "out", ["md"], resamples=20)
    ranks = result.tables.sar_war.set_index("model")["rank_WAR"]
    assert ranks.to_dict() == {"strong": 1, "middle": 2, "weak": 3}
    assert "Ranking at 16 px" in (tmp_path / "out" / "report.md").read_text()


def test_same_spec_with_two_weights_is_two_models_and_older_runs_are_superseded(tmp_path):
    db = tmp_path / "results.sqlite"
    with ResultStore(db) as store:
        for fingerprint in ("aaaaaaaaaaaa", "bbbbbbbbbbbb"):
            write_run(store, "spec", "eurosat", 10, list(range(10)), {"native": (9, None), "16": (5, [1] * 5)},
                      fingerprint=fingerprint)
        run = store.run_id(RunKey("solo", "fp", "eurosat", "older-sample-list", "test", "canonical"), {"n_classes": 10})
        store.add_chunk(run, 0, np.arange(4), np.ones(4, bool), {"native": top5_rows(range(4), [1] * 4, [None] * 4, 10)})
        store.finish_resolution(run, "native", 10, 224)
        write_run(store, "solo", "eurosat", 10, list(range(10)), {"native": (9, None), "16": (5, [1] * 5)})
        collected = collect(store)
    assert collected.models == ["solo", "spec (weights aaaaaaaa)", "spec (weights bbbbbbbb)"]
    assert len(collected.of("solo")) == 1 and collected.of("solo")[0].run_id != run
    assert any("superseded" in note for note in collected.notes)


def test_report_from_a_real_evaluation(tmp_path, fake, colour_model, make_folder):
    """An evaluation stores class names in the provenance; the report uses them and matches the stored top-1."""
    from conftest import evaluation
    from lr0fm.plan import EvalConfig

    model = fake(colour_model())
    root = make_folder(tmp_path / "greys", {"alpha": [10, 30, 60], "bravo": [40, 70], "charlie": [90, 120],
                                            "delta": [150], "echo": [200], "foxtrot": [245, 250]})
    db = tmp_path / "results.sqlite"
    rows, _ = evaluation(EvalConfig(models=["fake:colours"], datasets=[f"folder:{root}"], resolutions="native,16,8",
                                    db=db, workers=0, batch_size=4, device="cpu"))
    result = build_report(db, tmp_path / "out", ["csv"], resamples=50)
    stored = {r["resolution"]: r["top1"] for r in rows}
    accuracy = result.tables.accuracy.set_index("resolution")
    for resolution, value in stored.items():
        assert accuracy.loc[resolution, "top1"] == pytest.approx(value)
    confusions = result.tables.confusions
    assert not confusions.empty and set(confusions["true_name"]) <= set(model.levels)


# ---------------------------------------------------------------------------------------------------------------
# Command line


def test_report_cli(report, tmp_path):
    _, db, _ = report
    out = tmp_path / "cli"
    shown = invoke(cli.app, ["report", "--db", str(db), "--out", str(out), "--format", "md", "-f", "csv",
                             "--resamples", "50", "--seed", "3"])
    assert shown.exit_code == 0, shown.output
    assert "SAR and WAR" in shown.stdout and "40.00 ±" in shown.stdout
    assert (out / "report.html").is_file() and (out / "sar_war.csv").is_file() and not (out / "report.tex").exists()
    bad = invoke(cli.app, ["report", "--db", str(tmp_path / "missing.sqlite"), "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and not (tmp_path / "x").exists()


def test_new_verbs_have_examples():
    for args in (["report"], ["weights", "fit"], ["analyze", "layers"]):
        shown = invoke(cli.app, [*args, "--help"])
        assert shown.exit_code == 0 and "Example:" in shown.stdout, args


def correlation_rows(text: str) -> dict[str, list[float]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│") if c.strip()]
        if len(cells) >= 6 and cells[0] in reference.DATASET_NAMES.values():
            rows[cells[0]] = [float(c) for c in cells[1:6]]
    return rows


def test_weights_fit_on_the_paper_table(tmp_path):
    out = tmp_path / "weights.json"
    shown = invoke(cli.app, ["weights", "fit", "--resolution", "16", "--maxiter", "200", "--out", str(out)],
                   env={"COLUMNS": "120"})
    assert shown.exit_code == 0, shown.output
    rows = correlation_rows(shown.stdout)
    assert len(rows) == 15
    for name in ("EuroSAT", "ImageNet-A"):
        weight, paper_weight, rho_sar, rho_war, rho_war_paper = rows[name]
        assert rho_war > rho_sar + 0.05 and rho_war_paper > rho_sar + 0.05
    assert rows["EuroSAT"][1] == 1.0 and rows["EuroSAT"][4] == pytest.approx(0.493, abs=0.002)
    saved = json.loads(out.read_text())
    assert set(saved["weights"]) == set(reference.DATASETS) and max(saved["weights"].values()) == 1.0
    assert saved["source"] == "paper" and saved["n_models"] == 66 and len(saved["correlations"]) == 15


def test_weights_fit_from_a_csv_table(tmp_path):
    paper = reference.paper_accuracy()
    table = paper[paper["family"].isin(["CLIP", "EVA-CLIP", "OpenCLIP"])].rename(columns={"backbone": "model"})
    path = tmp_path / "table.csv"
    table[["model", "dataset", "resolution", "top1"]].to_csv(path, index=False)
    shown = invoke(cli.app, ["weights", "fit", "--table", str(path), "--resolution", "32", "--maxiter", "30",
                             "--objective", "eurosat"], env={"COLUMNS": "120"})
    assert shown.exit_code == 0, shown.output
    assert f"fitted at 32 px over {table['model'].nunique()} models" in shown.stdout
    assert len(correlation_rows(shown.stdout)) == 15


def test_weights_fit_bad_input(tmp_path, report):
    _, db, _ = report
    both = invoke(cli.app, ["weights", "fit", "--from-db", "--db", str(db), "--table", "x.csv"])
    assert both.exit_code != 0 and isinstance(both.exception, UserError)
    few = invoke(cli.app, ["weights", "fit", "--from-db", "--db", str(db)])
    assert isinstance(few.exception, UserError) and "at least 3 models" in str(few.exception)
    (tmp_path / "bad.csv").write_text("name,score\na,1\n")
    bad = invoke(cli.app, ["weights", "fit", "--table", str(tmp_path / "bad.csv")])
    assert isinstance(bad.exception, UserError) and "model, dataset, resolution, top1" in str(bad.exception)


def test_weights_fit_from_db(tmp_path):
    db = tmp_path / "results.sqlite"
    with ResultStore(db) as store:
        for index, model in enumerate(("a", "b", "c", "d")):
            for dataset, shift in (("eurosat", 0), ("dtd", 2), ("fashion_mnist", 1)):
                hits = 2 + (index + shift) % 4 * 2
                write_run(store, model, dataset, 10, list(range(10)), {"native": (9, None), "16": (hits, [1] * (10 - hits))})
    shown = invoke(cli.app, ["weights", "fit", "--from-db", "--db", str(db), "--maxiter", "20"], env={"COLUMNS": "120"})
    assert shown.exit_code == 0, shown.output
    assert "over 4 models" in shown.stdout and "Paper w" not in shown.stdout  # fashion_mnist has no paper weight


# ---------------------------------------------------------------------------------------------------------------
# The HTML page in a real browser


CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
                 if Path(p).exists()), None)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium chromium-driver)")
def test_html_renders_in_headless_chromium(report, tmp_path):
    _, _, out = report
    url = (out / "report.html").resolve().as_uri()
    flags = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0, dom.stderr[-2000:]
    cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", dom.stdout)]
    assert any(c.startswith("90.00 ±") for c in cells)  # EuroSAT native top-1
    assert any(c.startswith("40.00 ±") for c in cells)  # SAR at 16 px
    assert len(re.findall(r'<img[^>]*src="data:image/png;base64,', dom.stdout)) == 4 + len(FINDINGS_FIGURES)

    # The figures are decoded and drawn: the screenshot holds the plots' own colours, not just text.
    shot = tmp_path / "page.png"
    done = subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,5200", url], capture_output=True,
                          text=True, timeout=90)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    from matplotlib.image import imread

    pixels = (imread(shot)[..., :3] * 255).round().astype(int)
    assert pixels.std() > 10  # not blank
    plot_blue = (np.abs(pixels - np.array([31, 119, 180])).max(axis=-1) <= 6).sum()  # tab10 lines and bars
    grey = [int(report_plots.PAPER_COLOUR[i:i + 2], 16) for i in (1, 3, 5)]
    paper_grey = (np.abs(pixels - np.array(grey)).max(axis=-1) <= 6).sum()  # the paper backbones' bars
    assert plot_blue > 2000 and paper_grey > 2000


PDFLATEX = shutil.which("pdflatex")


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex is not installed (apt-get install -y texlive-latex-base texlive-latex-recommended)")
def test_latex_report_compiles(report, tmp_path):
    _, _, out = report
    folder = tmp_path / "tex"
    shutil.copytree(out, folder)
    done = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "report.tex"], cwd=folder,
                          capture_output=True, text=True, errors="replace", timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (folder / "report.pdf").read_bytes()[:5] == b"%PDF-"
    log = (folder / "report.log").read_text(errors="replace")
    assert "Missing character" not in log and "Undefined control sequence" not in log


def test_latex_escape_keeps_pdflatex_going():
    from lr0fm.report.document import latex_escape

    assert latex_escape("café_50% & γ−1") == r"café\_50\% \& $\gamma$$-$1"
    assert latex_escape("ﬁsh") == "fish"  # a ligature: its ASCII letters
    assert latex_escape("猫") == r"\texttt{U+732B}"  # no glyph in the T1 fonts: the code point, not a crash
