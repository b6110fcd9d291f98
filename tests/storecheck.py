"""What a results database holds, for tests that compare runs sample by sample."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from lr0fm.store import ResultStore


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def cells(db: Path) -> dict:
    """(resolution) -> (labels, top5, ok) of the one run in `db`, over every stored sample, and the rows."""
    with ResultStore(db) as store:
        rows = store.results()
        run_ids = {row["run_id"] for row in rows}
        assert len(run_ids) == 1, rows
        run_id = run_ids.pop()
        return {row["resolution"]: store.predictions(run_id, row["resolution"]) for row in rows}, rows


def coverage(db: Path) -> dict:
    """resolution -> (samples stored, the most rows any one sample has)."""
    with sqlite3.connect(db) as conn:
        found = {}
        for resolution, start, stop in conn.execute("SELECT resolution, start, stop FROM chunks"):
            found.setdefault(resolution, []).extend(range(start, stop))
    return {r: (len(v), int(np.bincount(v).max())) for r, v in found.items()}


def assert_same_predictions(db: Path, reference: Path) -> None:
    got, got_rows = cells(db)
    want, want_rows = cells(reference)
    assert got.keys() == want.keys()
    for resolution in want:
        for a, b in zip(got[resolution], want[resolution]):
            np.testing.assert_array_equal(a, b)
    keys = ("resolution", "top1", "top5", "mean_per_class_recall", "n", "n_skipped")
    assert [[r[k] for k in keys] for r in got_rows] == [[r[k] for k in keys] for r in want_rows]
