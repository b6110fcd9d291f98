"""The `lr0fm` command: list, eval, show, export, help, and how user errors end."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from lr0fm import cli
from lr0fm.store import RESULT_COLUMNS, ResultStore

invoke = CliRunner().invoke


def run_main(monkeypatch, capsys, *args):
    """cli.main() in process, as the console script runs it: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["lr0fm", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_openclip):
    """One `lr0fm eval` of a random-init open_clip model (from a weights file) on a generated folder."""
    arch, weights = tiny_openclip
    root = tmp_path_factory.mktemp("pets")
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / name).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    db = root.parent / f"{root.name}-results" / "results.sqlite"
    args = ["eval", "--model", f"openclip:{arch}", "--weights", str(weights), "--dataset", f"folder:{root}",
            "-r", "native,16,8", "--limit", "4", "--workers", "0", "--batch-size", "3", "--device", "cpu",
            "--db", str(db)]
    result = invoke(cli.app, args)
    return result, args, db, arch


def test_eval_prints_a_table_per_resolution(evaluated):
    result, _, db, arch = evaluated
    assert result.exit_code == 0, result.output
    assert "native 32 px" in result.stdout and "16 px" in result.stdout and "8 px" in result.stdout
    assert arch in result.stdout
    assert "3 cell(s) computed, 0 reused" in result.stderr
    with ResultStore(db) as store:
        rows = store.results()
    assert [(r["resolution"], r["n"], r["n_skipped"]) for r in rows] == [("native", 4, 0), ("16", 4, 0), ("8", 4, 0)]


def test_eval_again_reuses_the_cells(evaluated):
    _, args, _, _ = evaluated
    again = invoke(cli.app, args)
    assert again.exit_code == 0, again.output
    assert "0 cell(s) computed, 3 reused" in again.stderr
    assert "native 32 px" in again.stdout


def test_show_prints_and_filters(evaluated):
    _, _, db, arch = evaluated
    shown = invoke(cli.app, ["show", "--db", str(db)])
    assert shown.exit_code == 0, shown.output
    assert arch in shown.stdout and all(t in shown.stdout for t in ("native 32 px", "16 px", "8 px"))
    assert arch in invoke(cli.app, ["show", "--db", str(db), "--model", "TEST-TINY", "--dataset", "pets"]).stdout
    missing = invoke(cli.app, ["show", "--db", str(db), "--model", "no-such-model"])
    assert missing.exit_code == 0 and missing.stdout == "" and "No stored results match" in missing.stderr
    assert invoke(cli.app, ["show", "--db", str(db), "--dataset", "fashion"]).stdout == ""


@pytest.mark.parametrize("kind", ["csv", "json", "parquet"])
def test_export_formats(evaluated, tmp_path, kind):
    _, _, db, arch = evaluated
    out = tmp_path / "sub" / f"results.{kind}"
    exported = invoke(cli.app, ["export", "--format", kind, "--out", str(out), "--db", str(db)])
    assert exported.exit_code == 0, exported.output
    assert f"Wrote {out}" in exported.stderr.replace("\n", "")
    frame = {"csv": pd.read_csv, "json": pd.read_json, "parquet": pd.read_parquet}[kind](out)
    assert list(frame.columns) == list(RESULT_COLUMNS)
    assert frame["resolution"].astype(str).tolist() == ["native", "16", "8"]
    assert frame["model_spec"].tolist() == [f"openclip:{arch}"] * 3
    with ResultStore(db) as store:
        assert frame["top1"].tolist() == pytest.approx([r["top1"] for r in store.results()])
    if kind == "json":
        assert isinstance(json.loads(out.read_text()), list)
    # A filter that matches nothing still writes a readable (empty) file.
    empty = tmp_path / f"empty.{kind}"
    assert invoke(cli.app, ["export", "-f", kind, "-o", str(empty), "--db", str(db), "-m", "nothing"]).exit_code == 0
    assert len({"csv": pd.read_csv, "json": pd.read_json, "parquet": pd.read_parquet}[kind](empty)) == 0


def test_export_unknown_format_exits_2(evaluated, tmp_path, monkeypatch, capsys):
    _, _, db, _ = evaluated
    code, out, err = run_main(monkeypatch, capsys, "export", "--format", "xlsx", "--out", str(tmp_path / "r.xlsx"),
                              "--db", str(db))
    assert code == 2 and out == ""
    assert err.startswith("error: Unknown export format 'xlsx'") and "csv, json, parquet" in err
    assert not (tmp_path / "r.xlsx").exists()


def test_show_missing_db_exits_2(tmp_path, monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "show", "--db", str(tmp_path / "missing.sqlite"))
    assert code == 2 and out == ""
    assert err.startswith("error: No results database at") and "lr0fm eval" in err and err.count("\n") == 1
    assert not (tmp_path / "missing.sqlite").exists()


def test_list(monkeypatch):
    models = invoke(cli.app, ["list", "models"])
    assert models.exit_code == 0
    assert "eva02-b16" in models.stdout and "list backends" in models.stderr
    backends = invoke(cli.app, ["list", "backends"])
    for name in ("openclip", "hf", "lr0fm-tiny"):
        assert name in backends.stdout
    tags = invoke(cli.app, ["list", "models", "--openclip-tags"])
    for name in ("ViT-B-32", "laion2b_s34b_b79k"):
        assert name in tags.stdout
    datasets = invoke(cli.app, ["list", "datasets"])
    assert "fashion_mnist" in datasets.stdout and "folder:PATH" in datasets.stdout
    protocols = invoke(cli.app, ["list", "protocols"])
    assert "canonical" in protocols.stdout and "paper" in protocols.stdout
    pipelines = invoke(cli.app, ["list", "pipelines"])
    for name in ("siglip", "stretch", "shortside"):
        assert name in pipelines.stdout
    assert invoke(cli.app, ["list", "checkpoints"]).exit_code == 2  # click's own usage error


def lines_of(result) -> list[str]:
    return (result.stdout + result.stderr).splitlines()


def test_list_models_fits_an_80_column_terminal():
    shown = invoke(cli.app, ["list", "models"], env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    lines = lines_of(shown)
    assert len(lines) <= 90 and max(map(len, lines)) <= 80
    assert "no [1]" in shown.stdout and "[1]  no: ALBEF needs" in shown.stdout  # each reason once, below the table
    assert shown.stdout.count("ALBEF needs") == 1
    wide = invoke(cli.app, ["list", "models", "--wide"], env={"COLUMNS": "200"})
    assert wide.exit_code == 0 and "openclip:EVA02-B-16/merged2b_s8b_b131k" in wide.stdout


def test_list_models_fits_80_columns_in_a_real_terminal_width():
    done = subprocess.run([*lr0fm_command(), "list", "models"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) <= 90 and max(map(len, lines)) <= 80
    assert len(lines) + len(done.stderr.splitlines()) <= 90


def test_list_datasets_fits_80_columns():
    shown = invoke(cli.app, ["list", "datasets"], env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    assert max(map(len, lines_of(shown))) <= 80
    assert "ROOT/eurosat/2750/<Class>/<Class>_N.jpg" in shown.stdout


def test_list_models_as_csv_and_json():
    from lr0fm.models import registry

    shown = invoke(cli.app, ["list", "models", "--format", "csv"])
    assert shown.exit_code == 0, shown.output
    rows = list(csv.DictReader(io.StringIO(shown.stdout)))
    paper = [row for row in rows if row["paper_name"]]
    assert len(paper) == 66 and {row["name"] for row in paper} == set(registry.PAPER_MODELS)
    assert {"name", "family", "spec", "native", "pipeline", "supported", "reason"} <= set(rows[0])
    assert "┃" not in shown.stdout and "[" not in shown.stdout.splitlines()[0]
    as_json = invoke(cli.app, ["list", "models", "-f", "json", "--family", "eva"])
    assert as_json.exit_code == 0, as_json.output
    records = json.loads(as_json.stdout)
    assert records and {row["family"] for row in records} == {"eva"}
    datasets = json.loads(invoke(cli.app, ["list", "datasets", "--format", "json"]).stdout)
    assert {row["name"] for row in datasets if row["suite"]} >= {"imagenet", "eurosat"}
    suites = list(csv.DictReader(io.StringIO(invoke(cli.app, ["list", "suites", "-f", "csv"]).stdout)))
    assert suites[0]["name"] == "lr0fm" and suites[0]["resolutions"] == "native,128,64,32,16"


def test_list_unknown_format_exits_2(monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "list", "models", "--format", "xml")
    assert code == 2 and out == ""
    assert err == "error: Unknown list format 'xml'; use one of: table, csv, json.\n"


def test_export_to_stdout_equals_the_file(evaluated, tmp_path):
    _, _, db, _ = evaluated
    out = tmp_path / "results.csv"
    assert invoke(cli.app, ["export", "--out", str(out), "--db", str(db)]).exit_code == 0
    piped = invoke(cli.app, ["export", "--out", "-", "--db", str(db)])
    assert piped.exit_code == 0, piped.output
    assert piped.stdout == out.read_text() and piped.stderr == ""
    as_json = invoke(cli.app, ["export", "-f", "json", "-o", "-", "--db", str(db)])
    assert [row["resolution"] for row in json.loads(as_json.stdout)] == ["native", "16", "8"]
    parquet = invoke(cli.app, ["export", "-f", "parquet", "-o", "-", "--db", str(db)])
    assert parquet.exit_code == 0 and len(pd.read_parquet(io.BytesIO(parquet.stdout_bytes))) == 3


def test_export_parquet_to_a_terminal_exits_2(evaluated, monkeypatch, capsys):
    _, _, db, _ = evaluated
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = run_main(monkeypatch, capsys, "export", "-f", "parquet", "-o", "-", "--db", str(db))
    assert code == 2 and out == ""
    assert err.startswith("error: Parquet is binary") and err.count("\n") == 1


def test_every_verb_has_an_example():
    names = [command.name for command in cli.app.registered_commands]
    assert {"eval", "list", "show", "export"} <= set(names)
    for name in names:
        shown = invoke(cli.app, [name, "--help"])
        assert shown.exit_code == 0 and "Example" in shown.stdout, name


def lr0fm_command():
    """The installed console script when present, else the module."""
    script = Path(sys.executable).parent / "lr0fm"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lr0fm.cli"]


@pytest.mark.parametrize("args, fragment", [
    (["--model", "nope:model"], "error: Unknown model 'nope:model'"),
    (["--model", "hf:openai/clip-vit-base-patch32", "--dataset", "folder:/no/such/folder"], "error: Dataset folder /no/such/folder does not exist"),
])
def test_user_error_in_a_real_process(tmp_path, args, fragment):
    db = tmp_path / "out" / "results.sqlite"
    done = subprocess.run([*lr0fm_command(), "eval", *args, "--db", str(db)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "60"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(fragment)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "out").exists()
