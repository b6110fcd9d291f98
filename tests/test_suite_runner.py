"""`lr0fm eval --suite lr0fm` and `--model all`: the paper's grid end to end on fixture data, resume,
keep-going past missing data, planning of all registry models, flag conflicts, and the list commands."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import dataclasses
import json
import logging
import shutil

import pytest
import torch
from typer.testing import CliRunner

import lr0fm
from lr0fm import cli, loader, reference
from lr0fm.api import run_evaluation
from lr0fm.data.lr0fm_suite import SUITE
from lr0fm.errors import UserError
from lr0fm.models import registry
from lr0fm.store import ResultStore
from lr0fm.plan import EvalConfig, plan
from lr0fm.suites import SUITES

from suite_fixtures import BUILDERS, build_suite
from test_cli import run_main

# Wide enough that no model or dataset name is folded inside a table cell.
invoke = CliRunner(env={"COLUMNS": "250"}).invoke

SUITE_ARCH = "lr0fm-test-suite"
# Native 144 px so that the whole paper grid (128/64/32/16) lies below it; one block per tower keeps it fast.
SUITE_ARCH_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 144, "layers": 1, "width": 64, "patch_size": 48},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
MODEL = "suite-test-clip"
GRID = ["native", "128", "64", "32", "16"]


@pytest.fixture(autouse=True)
def _quiet_count_warnings(caplog):
    # Fixture trees are far smaller than the real splits; the size warning is expected.
    caplog.set_level(logging.ERROR, logger="lr0fm.data")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # ~115k prompts go through the text tower; on a shared, busy CPU extra threads only contend.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def suite_model(tmp_path_factory):
    """A registered name for a real open_clip CLIP at 144 px, and the weights file of its random init."""
    import open_clip
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("suite-arch")
    (folder / f"{SUITE_ARCH}.json").write_text(json.dumps(SUITE_ARCH_CONFIG))
    if SUITE_ARCH not in open_clip.list_models():
        open_clip.add_model_config(folder / f"{SUITE_ARCH}.json")
    torch.manual_seed(4321)
    weights = folder / "suite.safetensors"
    save_file(open_clip.create_model(SUITE_ARCH, pretrained=None).state_dict(), str(weights))
    registry.register(MODEL, f"openclip:{SUITE_ARCH}", family="clip", native=144, replace=True)
    yield MODEL, weights
    registry.unregister(MODEL)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite-data")
    build_suite(root)
    return root


def stored(db):
    with ResultStore(db) as store:
        return store.results()


def suite_args(root, db, *extra):
    return ["eval", "--suite", "lr0fm", "--data-root", str(root), "--db", str(db), "--workers", "0",
            "--batch-size", "8", "--device", "cpu", *extra]


# --------------------------------------------------------------------------------------------------
# The whole grid, end to end


def test_suite_runs_the_paper_grid_resumes_and_keeps_going(tmp_path, suite_model, data_root):
    name, weights = suite_model
    db = tmp_path / "results" / "results.sqlite"
    args = suite_args(data_root, db, "--model", name, "--weights", str(weights))

    first = invoke(cli.app, args)
    assert first.exit_code == 0, first.output
    rows = stored(db)
    assert len(rows) == 15 * 5
    assert {(r["dataset"], r["resolution"]) for r in rows} == {(d, r) for d in SUITE for r in GRID}
    assert {r["protocol"] for r in rows} == {"paper"} and {r["model_spec"] for r in rows} == {name}
    assert {r["pixels"] for r in rows if r["resolution"] == "native"} == {144}
    assert all(r["n"] > 0 and r["top1"] is not None for r in rows)
    with ResultStore(db) as store:
        provenance = store.run(rows[0]["run_id"])["provenance"]
    assert provenance["family"] == "clip" and provenance["protocol"] == "paper"
    # The paper's prompts: ImageNet's 80 templates over 1000 classes, EuroSAT's own 3.
    by_dataset = {}
    with ResultStore(db) as store:
        for row in rows:
            by_dataset[row["dataset"]] = store.run(row["run_id"])["provenance"]
    assert (by_dataset["imagenet"]["n_templates"], by_dataset["imagenet"]["n_classes"]) == (80, 1000)
    assert (by_dataset["eurosat"]["n_templates"], by_dataset["eurosat"]["split"]) == (3, "val")
    assert by_dataset["dtd"]["split"] == "test1" and by_dataset["sun397"]["split"] == "Testing_01"

    err = first.stderr
    assert "Suite lr0fm: 1 model(s) × 15 dataset(s) = 15 cell(s) at native,128,64,32,16, paper protocol" in err
    assert f"[ 1/15] {name} · imagenet: 5 computed" in err and f"[15/15] {name} · ucf101: 5 computed" in err
    assert "75 cell(s) computed, 0 reused" in err and "lr0fm report --compare-paper" in err
    assert "Not evaluated" not in err
    assert "Top-1 % · lr0fm suite · paper protocol" in first.stdout
    assert all(key in first.stdout for key in SUITE)

    again = invoke(cli.app, args)
    assert again.exit_code == 0, again.output
    assert "0 cell(s) computed, 75 reused" in again.stderr
    assert len(stored(db)) == 75

    # One dataset gone: the others run into a fresh database, the missing one is reported, exit status 1.
    shutil.rmtree(data_root / "food-101")
    try:
        other = tmp_path / "results" / "other.sqlite"
        partial = invoke(cli.app, suite_args(data_root, other, "--model", name, "--weights", str(weights)))
        assert partial.exit_code == 1, partial.output
        assert {r["dataset"] for r in stored(other)} == set(SUITE) - {"food101"}
        assert len(stored(other)) == 14 * 5
        err = partial.stderr
        assert "1 dataset(s) missing" in err and "70 cell(s) computed" in err
        assert "Not evaluated" in err and "food101" in err and "Food101 was not found under" in err
        assert "all models" in err and "1 skip(s)" in err
    finally:
        BUILDERS["food101"](data_root)


def test_stored_cells_are_found_without_loading_the_model(tmp_path, suite_model, data_root, monkeypatch):
    """A model with hub weights (no --weights) is not loaded at all when its cells are stored."""
    name, weights = suite_model
    real_load = loader.load
    loads = []

    def load_with_hub_weights(spec, device="cpu"):
        loads.append(str(spec))
        return real_load(dataclasses.replace(spec, weights=str(weights)), device)

    monkeypatch.setattr(loader, "load", load_with_hub_weights)
    db = tmp_path / "results.sqlite"
    args = suite_args(data_root, db, "--model", name, "--dataset", "eurosat", "--dataset", "dtd")
    first = invoke(cli.app, args)
    assert first.exit_code == 0, first.output
    assert loads == [name] and "10 cell(s) computed" in first.stderr
    # Suite order, whatever the order of --dataset.
    assert first.stderr.index(f"{name} · dtd") < first.stderr.index(f"{name} · eurosat")

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded although its cells are stored")

    monkeypatch.setattr(loader, "load", no_load)
    again = invoke(cli.app, args)
    assert again.exit_code == 0, again.output
    assert "0 cell(s) computed, 10 reused" in again.stderr and f"{name} · eurosat: already stored" in again.stderr
    assert again.stdout.count(name) == 2  # one table row per dataset


def test_small_native_model_runs_the_resolutions_below_it(tmp_path, tiny_openclip, data_root):
    arch, weights = tiny_openclip  # native 32 px: 128, 64 and 32 cannot be made
    db = tmp_path / "results.sqlite"
    done = invoke(cli.app, suite_args(data_root, db, "--model", f"openclip:{arch}", "--weights", str(weights),
                                      "--dataset", "eurosat"))
    assert done.exit_code == 1, done.output
    assert [r["resolution"] for r in stored(db)] == ["native", "16"]
    assert "128, 64, 32 px are not below its native 32 px" in done.stderr


# --------------------------------------------------------------------------------------------------
# --model all


def test_model_all_plans_every_supported_model(tmp_path, data_root, monkeypatch):
    """Nothing real loads: every supported registry model is tried, every unsupported one is listed."""
    tried = []

    def unavailable(spec, device="cpu"):
        tried.append(str(spec))
        raise UserError(f"{spec} could not be loaded: its files are not in the local cache.")

    monkeypatch.setattr(loader, "load", unavailable)
    supported = {e.name for e in registry.entries() if e.supported}
    unsupported = {e.name for e in registry.entries() if not e.supported}
    assert len(supported) + len(unsupported) >= 66 and len(unsupported) == 12

    db = tmp_path / "results.sqlite"
    work = plan(EvalConfig(models=["all"], suite="lr0fm", datasets=["eurosat"], data_root=str(data_root), db=db))
    assert [str(m) for m in work.models] == [e.name for e in registry.entries() if e.supported]
    assert not work.skipped and {s.model for s in work.not_planned} == unsupported
    assert len(work.units) == len(supported) and not tried

    done = invoke(cli.app, suite_args(data_root, db, "--model", "all", "--dataset", "eurosat"))
    assert done.exit_code == 1, done.output
    assert set(tried) == supported and len(tried) == len(supported)
    err = done.stderr
    assert f"{len(supported)} model(s) × 1 dataset(s)" in err
    assert "not planned" in err and all(name in err for name in unsupported)
    assert "could not be loaded" in err and not db.exists()

    # The Python API: the same plan, the skips in the frame's attrs.
    tried.clear()
    frame = lr0fm.evaluate("all", "eurosat", suite="lr0fm", data_root=str(data_root), db=db, workers=0, device="cpu")
    assert frame.empty and set(tried) == supported
    assert {s["model"] for s in frame.attrs["skipped"]} == supported
    assert {s["model"] for s in frame.attrs["not_planned"]} == unsupported


def test_named_unsupported_model_is_skipped_in_a_suite(tmp_path, data_root):
    result = run_evaluation(EvalConfig(models=["albef-4m"], suite="lr0fm", data_root=str(data_root),
                                       db=tmp_path / "r.sqlite", device="cpu"))
    assert [(s.model, s.dataset) for s in result.skipped] == [("albef-4m", "")]
    assert "ALBEF" in result.skipped[0].reason and not result.rows


# --------------------------------------------------------------------------------------------------
# Flags that contradict the suite, unknown names


@pytest.mark.parametrize("extra, fragment", [
    (["--suite", "nope", "--model", "eva02-b16"], "Unknown suite 'nope'; use one of: lr0fm"),
    (["--suite", "lr0fm"], "--suite lr0fm needs models"),
    (["--suite", "lr0fm", "--model", "eva02-b16", "--protocol", "canonical"], "uses the paper protocol"),
    (["--suite", "lr0fm", "--model", "eva02-b16", "-r", "native,64"], "drop --resolutions"),
    (["--suite", "lr0fm", "--model", "eva02-b16", "--split", "train"], "drop --split"),
    (["--suite", "lr0fm", "--model", "eva02-b16", "--dataset", "fashion_mnist"], "fashion_mnist is not in the lr0fm suite"),
    (["--suite", "lr0fm", "--model", "eva02-b16x"], "Unknown model 'eva02-b16x'"),
    (["--model", "all", "--weights", "w.safetensors"], "exactly one --model"),
])
def test_contradicting_flags_exit_2(tmp_path, monkeypatch, capsys, extra, fragment):
    db = tmp_path / "out" / "results.sqlite"
    code, out, err = run_main(monkeypatch, capsys, "eval", *extra, "--db", str(db))
    assert code == 2 and out == "", err
    assert err.startswith("error: ") and fragment in err
    assert not (tmp_path / "out").exists()


def test_suite_is_the_papers_grid():
    suite = SUITES["lr0fm"]
    assert suite.datasets == reference.DATASETS and suite.resolutions == reference.RESOLUTIONS
    assert suite.protocol == "paper"


# --------------------------------------------------------------------------------------------------
# list


def test_list_models_by_family():
    shown = invoke(cli.app, ["list", "models", "--family", "eva", "--wide"])
    assert shown.exit_code == 0, shown.output
    eva = [e for e in registry.entries("eva")]
    assert all(e.name in shown.stdout and e.spec in shown.stdout for e in eva)
    assert "shortside" in shown.stdout and "224" in shown.stdout and "336" in shown.stdout
    assert "siglip-b16" not in shown.stdout

    everything = invoke(cli.app, ["list", "models"])
    assert everything.exit_code == 0
    assert all(e.name in everything.stdout for e in registry.entries())
    assert "no: ALBEF needs" in everything.stdout and "lr0fm list backends" in everything.stderr
    assert "--openclip-tags" in everything.stderr
    assert "laion2b_s34b_b79k" in invoke(cli.app, ["list", "models", "--openclip-tags"]).stdout


def test_list_unknown_family_exits_2(monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "list", "models", "--family", "nope")
    assert code == 2 and out == ""
    assert "Unknown model family 'nope'" in err and "eva" in err and "siglip" in err


def test_list_datasets_shows_split_classes_images_and_layout():
    shown = invoke(cli.app, ["list", "datasets"])
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    assert all(key in out for key in SUITE) and "fashion_mnist" in out and "folder:PATH" in out
    assert "Testing_01" in out and "matched-frequency" in out and "50,000" in out and "5,400" in out
    assert "ROOT/eurosat/2750/<Class>/<Class>_N.jpg" in out
    suites = invoke(cli.app, ["list", "suites"])
    assert "lr0fm" in suites.stdout and "ucf101" in suites.stdout
