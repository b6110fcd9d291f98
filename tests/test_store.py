"""The results database: schema, find-or-create runs, chunked predictions, resume, metrics, export."""

from __future__ import annotations

import ast
import json
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lr0fm.errors import UserError
from lr0fm.metrics import accuracy_summary
from lr0fm.store import DEFAULT_DB, RESULT_COLUMNS, ResultStore, RunKey

N_CLASSES = 7


def make_key(model="tiny", fingerprint="aaaa", dataset="fashion_mnist", protocol="paper"):
    return RunKey(model_spec=model, model_fingerprint=fingerprint, dataset=dataset,
                  dataset_fingerprint="d1", split="test", protocol=protocol)


def fake_samples(n, seed=0, skip_every=0):
    """Labels, an ok mask and a top5 that is right about half the time."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_CLASSES, n)
    top5 = np.stack([rng.permutation(N_CLASSES)[:5] for _ in range(n)])
    right = rng.random(n) < 0.5
    top5[right, 0] = labels[right]
    ok = np.ones(n, dtype=bool)
    if skip_every:
        ok[::skip_every] = False
    return labels, ok, top5


@pytest.fixture
def store(tmp_path):
    with ResultStore(tmp_path / "db" / "results.sqlite") as opened:
        yield opened


def test_default_path_and_no_torch():
    assert DEFAULT_DB.parts == ("lr0fm-results", "results.sqlite")
    import lr0fm.store as module

    # The store must open without torch (report and show run where no model is installed).
    tree = ast.parse(open(module.__file__).read())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "torch" not in imported


def test_create_reopen_and_find_or_create(tmp_path):
    path = tmp_path / "nested" / "results.sqlite"
    with ResultStore(path) as store:
        first = store.run_id(make_key(), {"seed": 0, "device": "cpu"})
        assert store.run_id(make_key(), {"device": "cuda"}) == first
        other = store.run_id(make_key(fingerprint="bbbb"), {})
        assert other != first
    assert path.is_file()
    with ResultStore(path) as store:
        assert store.run_id(make_key(), {}) == first
        run = store.run(first)
        # Provenance is merged: the new device wins, the earlier seed stays.
        assert run["provenance"] == {"seed": 0, "device": "cuda"}
        assert run["model_fingerprint"] == "aaaa" and run["created_at"] <= run["updated_at"]


def test_wal_mode_and_schema_version(store):
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn.execute("PRAGMA user_version").fetchone()[0] >= 1
    assert store._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_chunks_finish_metrics_and_skips(store):
    run = store.run_id(make_key(), {})
    labels, ok, top5 = fake_samples(250, skip_every=9)
    low = top5.copy()
    low[:, 0] = (low[:, 0] + 1) % N_CLASSES
    for start in range(0, 250, 100):
        part = slice(start, start + 100)
        store.add_chunk(run, start, labels[part], ok[part], {"native": top5[part], "16": low[part]})
    for resolution, preds, pixels in (("native", top5, 28), ("16", low, 16)):
        row = store.finish_resolution(run, resolution, N_CLASSES, pixels, n_samples=250)
        expected = accuracy_summary(labels[ok], preds[ok], N_CLASSES)
        assert row["top1"] == pytest.approx(expected["top1"])
        assert row["top5"] == pytest.approx(expected["top5"])
        assert row["mean_per_class_recall"] == pytest.approx(expected["mean_per_class_recall"])
        assert row["per_class_recall"] == pytest.approx(expected["per_class_recall"])
        assert row["n"] == ok.sum() and row["n_skipped"] == (~ok).sum() == 28
        assert row["pixels"] == pixels and row["finished_at"]
    assert store.finished_resolutions(run) == {"native", "16"}
    # A finished cell refuses new data until it is reset.
    with pytest.raises(ValueError):
        store.add_chunk(run, 0, labels[:10], ok[:10], {"16": low[:10]})


def test_fewer_than_five_classes_are_padded(store):
    run = store.run_id(make_key(), {})
    labels = np.array([0, 1, 2])
    top3 = np.array([[0, 1, 2], [2, 1, 0], [1, 0, 2]])
    store.add_chunk(run, 0, labels, np.ones(3, bool), {"32": top3})
    _, top5, _ = store.predictions(run, "32")
    assert top5.shape == (3, 5) and (top5[:, 3:] == -1).all()
    row = store.finish_resolution(run, "32", n_classes=3, pixels=32)
    assert row["top1"] == pytest.approx(1 / 3) and row["top5"] == 1.0


def test_completed_prefix_with_gap(store):
    run = store.run_id(make_key(), {})
    labels, ok, top5 = fake_samples(300)
    assert store.completed_prefix(run, "native") == 0
    store.add_chunk(run, 0, labels[:100], ok[:100], {"native": top5[:100]})
    store.add_chunk(run, 200, labels[200:], ok[200:], {"native": top5[200:]})
    assert store.completed_prefix(run, "native") == 100
    assert store.completed_prefix(run, "16") == 0
    with pytest.raises(ValueError, match="gap"):
        store.finish_resolution(run, "native", N_CLASSES, 28)
    store.add_chunk(run, 100, labels[100:200], ok[100:200], {"native": top5[100:200]})
    assert store.completed_prefix(run, "native") == 300


def test_covered_merges_adjacent_chunks_and_keeps_gaps(store):
    run = store.run_id(make_key(), {})
    labels, ok, top5 = fake_samples(400)
    assert store.covered(run, "native") == []
    for start, stop in ((0, 100), (100, 150), (250, 300), (300, 400)):
        store.add_chunk(run, start, labels[start:stop], ok[start:stop], {"native": top5[start:stop]})
    store.add_chunk(run, 120, labels[120:130], ok[120:130], {"16": top5[120:130]})
    assert store.covered(run, "native") == [(0, 150), (250, 400)]
    assert store.covered(run, "16") == [(120, 130)]


def test_overlapping_re_add_replaces_without_duplicates(store):
    run = store.run_id(make_key(), {})
    labels, ok, top5 = fake_samples(300)
    store.add_chunk(run, 0, labels[:200], ok[:200], {"64": top5[:200]})
    store.add_chunk(run, 200, labels[200:], ok[200:], {"64": top5[200:]})
    newer = top5.copy()
    newer[:, 0] = 0
    # Resume from 150 with a different chunk size: overlaps the tail of one chunk and all of another.
    store.add_chunk(run, 150, labels[150:260], ok[150:260], {"64": newer[150:260]})
    store.add_chunk(run, 150, labels[150:260], ok[150:260], {"64": newer[150:260]})
    got_labels, got_top5, got_ok = store.predictions(run, "64")
    assert len(got_labels) == 300 and store.completed_prefix(run, "64") == 300
    np.testing.assert_array_equal(got_labels, labels)
    np.testing.assert_array_equal(got_top5[:150], top5[:150])
    np.testing.assert_array_equal(got_top5[150:260], newer[150:260])
    np.testing.assert_array_equal(got_top5[260:], top5[260:])
    stored = store._conn.execute("SELECT sum(stop - start) FROM chunks WHERE run_id = ?", (run,)).fetchone()[0]
    assert stored == 300


KILLED_WRITER = """
import os, signal, sys
import numpy as np
from lr0fm.store import ResultStore, RunKey
store = ResultStore(sys.argv[1])
run = store.run_id(RunKey("tiny", "aaaa", "fashion_mnist", "d1", "test", "paper"), {})
data = np.load(sys.argv[2])
labels, ok, top5 = data["labels"], data["ok"], data["top5"]
store.add_chunk(run, 0, labels[:100], ok[:100], {"native": top5[:100], "16": top5[:100]})
# Killed in the middle of the next write: its transaction must vanish.
store._conn.execute("BEGIN IMMEDIATE")
store._conn.execute("DELETE FROM chunks")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_killed_run_keeps_committed_chunks(tmp_path):
    path = tmp_path / "results.sqlite"
    labels, ok, top5 = fake_samples(200)
    np.savez(tmp_path / "data.npz", labels=labels, ok=ok, top5=top5)
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path), str(tmp_path / "data.npz")],
                          timeout=120)
    assert done.returncode == -signal.SIGKILL
    with ResultStore(path) as reopened:
        run = reopened.run_id(make_key(), {})
        assert reopened.completed_prefix(run, "native") == 100
        assert reopened.completed_prefix(run, "16") == 100
        assert reopened.finished_resolutions(run) == set()
        got_labels, got_top5, got_ok = reopened.predictions(run, "native")
        np.testing.assert_array_equal(got_labels, labels[:100])
        np.testing.assert_array_equal(got_top5, top5[:100])
        np.testing.assert_array_equal(got_ok, ok[:100])


def test_reset_run(store):
    run = store.run_id(make_key(), {})
    labels, ok, top5 = fake_samples(50)
    store.add_chunk(run, 0, labels, ok, {"native": top5, "32": top5, "16": top5})
    for resolution in ("native", "32", "16"):
        store.finish_resolution(run, resolution, N_CLASSES, 28)
    store.reset_run(run, ["16"])
    assert store.finished_resolutions(run) == {"native", "32"}
    assert store.completed_prefix(run, "16") == 0 and store.completed_prefix(run, "32") == 50
    store.reset_run(run)
    assert store.finished_resolutions(run) == set() and store.completed_prefix(run, "native") == 0
    assert store.run(run)["model_spec"] == "tiny"  # the run itself stays


def test_predictions_round_trip_with_skips(store):
    run = store.run_id(make_key(), {})
    labels, ok, top5 = fake_samples(130, seed=3, skip_every=4)
    store.add_chunk(run, 0, labels[:64], ok[:64], {"128": top5[:64]})
    store.add_chunk(run, 64, labels[64:], ok[64:], {"128": top5[64:]})
    got_labels, got_top5, got_ok = store.predictions(run, 128)
    np.testing.assert_array_equal(got_labels, labels)
    np.testing.assert_array_equal(got_top5, top5)
    np.testing.assert_array_equal(got_ok, ok)
    assert got_ok.dtype == bool and got_top5.shape == (130, 5)


def fill(store):
    labels, ok, top5 = fake_samples(20)
    runs = {}
    for model in ("ViT-B-32", "tiny"):
        for dataset in ("Fashion_MNIST", "cifar10"):
            run = store.run_id(make_key(model=model, dataset=dataset), {})
            runs[model, dataset] = run
            resolutions = ("16", "native", "128", "32")
            store.add_chunk(run, 0, labels, ok, {r: top5 for r in resolutions})
            for resolution in resolutions:
                store.finish_resolution(run, resolution, N_CLASSES, 28 if resolution == "native" else int(resolution))
    return runs


def test_results_filters_and_order(store):
    fill(store)
    rows = store.results()
    assert len(rows) == 16 and set(rows[0]) == set(RESULT_COLUMNS)
    assert [(r["model_spec"], r["dataset"]) for r in rows[::4]] == [
        ("ViT-B-32", "Fashion_MNIST"), ("ViT-B-32", "cifar10"), ("tiny", "Fashion_MNIST"), ("tiny", "cifar10")]
    assert [r["resolution"] for r in rows[:4]] == ["native", "128", "32", "16"]
    assert [r["pixels"] for r in rows[:4]] == [28, 128, 32, 16]
    only = store.results(model="vit", dataset="MNIST")
    assert {(r["model_spec"], r["dataset"]) for r in only} == {("ViT-B-32", "Fashion_MNIST")}
    assert store.results(dataset="_mn") and not store.results(dataset="%")  # literal, not LIKE patterns
    assert store.results(model="nothing") == []


@pytest.mark.parametrize("kind", ["csv", "parquet", "json"])
def test_export_round_trip(store, tmp_path, kind):
    fill(store)
    out = store.export(tmp_path / "out" / f"table.{kind}", kind, model="tiny")
    assert out.is_file()
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left behind
    if kind == "csv":
        frame = pd.read_csv(out, dtype={"resolution": str, "model_fingerprint": str})
    elif kind == "parquet":
        frame = pd.read_parquet(out)
    else:
        frame = pd.DataFrame(json.loads(out.read_text()))
    expected = pd.DataFrame(store.results(model="tiny"))
    assert list(frame.columns) == list(RESULT_COLUMNS) and len(frame) == 8
    for column in RESULT_COLUMNS:
        if column in ("top1", "top5", "mean_per_class_recall"):
            assert list(frame[column]) == pytest.approx(list(expected[column]))
        else:
            assert list(frame[column].astype(str)) == list(expected[column].astype(str))


def test_export_empty_and_bad_format(store, tmp_path):
    out = store.export(tmp_path / "empty.csv", "csv")
    assert list(pd.read_csv(out).columns) == list(RESULT_COLUMNS)
    with pytest.raises(UserError, match="csv, json, parquet"):
        store.export(tmp_path / "x.xlsx", "xlsx")
    assert not (tmp_path / "x.xlsx").exists()


def test_bad_db_paths(tmp_path):
    with pytest.raises(UserError, match="directory"):
        ResultStore(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("these are not the results you are looking for\n" * 20)
    with pytest.raises(UserError, match="not an lr0fm results database"):
        ResultStore(text)
    assert text.read_text().startswith("these are not")
    foreign = tmp_path / "other.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE things (x)")
    conn.commit()
    conn.close()
    with pytest.raises(UserError, match="another program"):
        ResultStore(foreign)
    conn = sqlite3.connect(foreign)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # left untouched
    conn.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "results.sqlite"
    ResultStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(UserError, match="newer lr0fm"):
        ResultStore(path)


def test_reader_works_while_writer_holds_transaction(tmp_path):
    path = tmp_path / "results.sqlite"
    writer = ResultStore(path)
    fill(writer)
    run = writer.run_id(make_key(model="late"), {})
    labels, ok, top5 = fake_samples(10)
    writer._conn.execute("BEGIN IMMEDIATE")
    writer._conn.execute(
        "INSERT INTO results (run_id, resolution, pixels, n_classes, per_class_recall, n, n_skipped, "
        "provenance, finished_at) VALUES (?, 'native', 28, 7, '[]', 0, 0, '{}', 'now')", (run,))
    try:
        with ResultStore(path) as reader:
            assert len(reader.results()) == 16  # sees the committed state, not the open write
            assert reader.completed_prefix(run, "native") == 0
    finally:
        writer._conn.execute("ROLLBACK")
        writer.close()


def test_all_skipped_cell_has_no_accuracy(store, tmp_path):
    run = store.run_id(make_key(), {})
    labels, _, top5 = fake_samples(5)
    store.add_chunk(run, 0, labels, np.zeros(5, bool), {"16": np.full((5, 5), -1)})
    row = store.finish_resolution(run, "16", N_CLASSES, 16)
    assert row["top1"] is None and row["n"] == 0 and row["n_skipped"] == 5
    out = store.export(tmp_path / "r.json", "json")
    assert json.loads(out.read_text())[0]["top1"] is None
