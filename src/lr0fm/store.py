"""The SQLite results database: runs with provenance, per-sample predictions, per-resolution metrics.

Layout (schema version 2, marked with ``PRAGMA application_id`` and ``PRAGMA user_version``):

- ``runs``: one row per (model spec, weights fingerprint, dataset, dataset fingerprint, split, protocol),
  with the provenance as JSON.
- ``chunks``: per-sample predictions of one cell (run, resolution) for samples ``[start, stop)``.
  Segments of one cell never overlap. BLOBs are zlib-compressed little-endian arrays:
  ``labels`` int32 (n,), ``ok`` uint8 (n,), ``top5`` int32 (n, 5) row-major, -1 where a model gave
  fewer than 5 classes. Labels and ok are repeated per resolution so every cell stands alone
  (reset or recompute one resolution without touching the others); that costs ~25 bytes per sample
  per resolution before compression.
- ``results``: one row per finished cell: accuracy over the readable samples, skip count, pixels,
  and a copy of the run's provenance at the time the cell was finished.
- ``leases`` (schema 2): the process computing a cell (host, pid, token, heartbeat), so two processes
  never compute one cell at once (`claim`; owners and liveness in `leases`).

Overlap policy: new data wins. ``add_chunk`` over samples already stored trims or drops the
overlapping parts of the old segments, so each sample is stored once per resolution.

Must not import torch: ``lr0fm show`` and report code open the database without a model.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import UserError
from .leases import Owner, is_live
from .metrics import accuracy_summary
from .resolution import Resolution

DEFAULT_DB = Path("lr0fm-results") / "results.sqlite"

SCHEMA_VERSION = 2
# "LR0F" in ASCII: tells our databases apart from any other SQLite file.
APPLICATION_ID = 0x4C523046
TOP_K = 5
EXPORT_FORMATS = ("csv", "json", "parquet")
BUSY_TIMEOUT_S = 60.0

RESULT_COLUMNS = (
    "model_spec", "model_fingerprint", "dataset", "split", "protocol", "resolution", "pixels",
    "top1", "top5", "mean_per_class_recall", "n", "n_skipped", "finished_at", "run_id",
)
_KEY_FIELDS = ("model_spec", "model_fingerprint", "dataset", "dataset_fingerprint", "split", "protocol")

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    model_spec TEXT NOT NULL,
    model_fingerprint TEXT NOT NULL,
    dataset TEXT NOT NULL,
    dataset_fingerprint TEXT NOT NULL,
    split TEXT NOT NULL,
    protocol TEXT NOT NULL,
    provenance TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (model_spec, model_fingerprint, dataset, dataset_fingerprint, split, protocol)
);
CREATE TABLE IF NOT EXISTS chunks (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    resolution TEXT NOT NULL,
    start INTEGER NOT NULL CHECK (start >= 0),
    stop INTEGER NOT NULL CHECK (stop > start),
    labels BLOB NOT NULL,
    ok BLOB NOT NULL,
    top5 BLOB NOT NULL,
    PRIMARY KEY (run_id, resolution, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS results (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    resolution TEXT NOT NULL,
    pixels INTEGER NOT NULL,
    n_classes INTEGER NOT NULL,
    top1 REAL,
    top5 REAL,
    mean_per_class_recall REAL,
    per_class_recall TEXT NOT NULL,
    n INTEGER NOT NULL,
    n_skipped INTEGER NOT NULL,
    provenance TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    PRIMARY KEY (run_id, resolution)
);
"""

# Migrations from version v to v + 1, applied in order on open.
_MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE IF NOT EXISTS leases (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    resolution TEXT NOT NULL,
    token TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    claimed_at TEXT NOT NULL,
    heartbeat REAL NOT NULL,
    PRIMARY KEY (run_id, resolution)
) WITHOUT ROWID
""",
}


class LeaseLost(UserError):
    """This process's claim on a cell expired and another process took the cell over."""


@dataclass
class Claim:
    """The outcome of `ResultStore.claim` for each asked resolution of one run.

    Attributes:
        mine: claimed by the caller now (or already): compute these.
        finished: already finished by someone: reuse them.
        held: live leases of other processes, resolution -> "HOST pid N".
    """

    mine: list[Resolution]
    finished: list[Resolution]
    held: dict[Resolution, str]


@dataclass(frozen=True)
class RunKey:
    """What makes two evaluations the same run: the same weights on the same samples, same protocol."""

    model_spec: str
    model_fingerprint: str
    dataset: str
    dataset_fingerprint: str
    split: str
    protocol: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _json_default(value: Any) -> Any:
    # Provenance may carry numpy scalars or paths; store them as plain JSON values.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=_json_default)


def _pack(array: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(array).tobytes(), 6)


def _unpack(blob: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(zlib.decompress(blob), dtype=dtype).reshape(shape)


def _as_int32(values: np.ndarray, what: str, low: int) -> np.ndarray:
    values = np.asarray(values)
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{what} must be integers, got dtype {values.dtype}")
    if values.size and (values.min() < low or values.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{what} must lie in [{low}, 2**31), got [{values.min()}, {values.max()}]")
    return values.astype("<i4")


def _nan_to_none(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


class ResultStore:
    """One results database. Several processes may read while one writes (WAL)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise UserError(f"The results database path {self.path} is a directory; "
                            f"pass a file path such as {self.path / 'results.sqlite'} to --db.")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"Cannot create the folder for the results database {self.path} ({error}); "
                            f"pass a writable path to --db.") from None
        try:
            # isolation_level=None: transactions are opened explicitly (BEGIN IMMEDIATE), so DDL and
            # read-then-write sequences are atomic and never fail on a lock upgrade.
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as error:
            raise UserError(f"Cannot open the results database {self.path} ({error}); "
                            f"pass a writable file path to --db.") from None
        try:
            self._open_schema()
        except sqlite3.OperationalError as error:  # locked, read-only, disk full: not a format problem
            self._conn.close()
            raise UserError(f"Cannot use the results database {self.path} ({error}); "
                            f"make it writable or pass a different file to --db.") from None
        except sqlite3.DatabaseError as error:
            self._conn.close()
            raise UserError(f"{self.path} is not an lr0fm results database ({error}); "
                            f"pass a different file to --db.") from None
        except BaseException:
            self._conn.close()
            raise

    def _open_schema(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        # Read the header before changing anything: a foreign SQLite file must stay untouched.
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
        if app_id != APPLICATION_ID and (app_id != 0 or has_tables):
            raise UserError(f"{self.path} is an SQLite database of another program, not lr0fm results; "
                            f"pass a different file to --db.")
        # WAL lets `lr0fm show` read while an eval writes; NORMAL sync is crash-safe in WAL mode.
        conn.execute("PRAGMA journal_mode = WAL").fetchone()
        conn.execute("PRAGMA synchronous = NORMAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise UserError(f"{self.path} was written by a newer lr0fm (schema {version}, this one reads "
                            f"up to {SCHEMA_VERSION}); upgrade lr0fm or pass a different file to --db.")
        if version == SCHEMA_VERSION:
            return
        with self._write() as conn:
            # Re-read inside the lock: another process may have created or migrated it meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                # One statement at a time: executescript would commit the open transaction.
                for statement in _SCHEMA_V1.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                version = 1
            while version < SCHEMA_VERSION:
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                version += 1
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: the lock is taken up front, committed on success, rolled back on error.

        Raises:
            UserError: the write failed for a reason outside lr0fm (a full disk, a file size limit, a file
                made read-only, a lock held past the busy timeout); the database keeps its last commit.
        """
        try:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                yield self._conn
        except sqlite3.OperationalError as error:
            raise UserError(f"Cannot write to the results database {self.path} ({error}); check that its disk has "
                            f"space and the file is writable, then rerun the same command to resume.") from None

    # lifecycle ---------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # runs --------------------------------------------------------------------------------------------

    def run_id(self, key: RunKey, provenance: dict) -> int:
        """Find or create the run for `key`; its provenance is updated (new keys win, others kept)."""
        now = _now()
        values = tuple(getattr(key, name) for name in _KEY_FIELDS)
        where = " AND ".join(f"{name} = ?" for name in _KEY_FIELDS)
        with self._write() as conn:
            row = conn.execute(f"SELECT id, provenance FROM runs WHERE {where}", values).fetchone()
            if row is None:
                cursor = conn.execute(
                    f"INSERT INTO runs ({', '.join(_KEY_FIELDS)}, provenance, created_at, updated_at) "
                    f"VALUES ({', '.join('?' * len(_KEY_FIELDS))}, ?, ?, ?)",
                    (*values, _dumps(dict(provenance)), now, now),
                )
                return int(cursor.lastrowid)
            run_id, old = row
            # Merge so a resumed run keeps facts recorded earlier (e.g. the first start's seed).
            merged = {**json.loads(old), **json.loads(_dumps(dict(provenance)))}
            conn.execute("UPDATE runs SET provenance = ?, updated_at = ? WHERE id = ?",
                         (_dumps(merged), now, run_id))
            return int(run_id)

    def run(self, run_id: int) -> dict:
        """The run's key fields, provenance (parsed), created_at and updated_at."""
        row = self._conn.execute(
            f"SELECT id, {', '.join(_KEY_FIELDS)}, provenance, created_at, updated_at FROM runs WHERE id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise KeyError(f"no run with id {run_id}")
        record = dict(zip(("run_id", *_KEY_FIELDS, "provenance", "created_at", "updated_at"), row))
        record["provenance"] = json.loads(record["provenance"])
        return record

    def _require_run(self, conn: sqlite3.Connection, run_id: int) -> None:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise KeyError(f"no run with id {run_id}")

    def finished_resolutions(self, run_id: int) -> set[str]:
        rows = self._conn.execute("SELECT resolution FROM results WHERE run_id = ?", (run_id,))
        return {resolution for (resolution,) in rows}

    def finished_runs(self, model_spec: str, dataset: str, dataset_fingerprint: str, split: str,
                      protocol: str) -> list[tuple[int, dict, set[str]]]:
        """(run id, provenance, finished resolutions) of the runs with these key fields, under any
        model fingerprint, newest first: lets a batch see what is stored before loading the model."""
        rows = self._conn.execute(
            "SELECT id, provenance FROM runs WHERE model_spec = ? AND dataset = ? AND dataset_fingerprint = ? "
            "AND split = ? AND protocol = ? ORDER BY updated_at DESC, id DESC",
            (model_spec, dataset, dataset_fingerprint, split, protocol),
        ).fetchall()
        return [(int(run_id), json.loads(provenance), self.finished_resolutions(run_id)) for run_id, provenance in rows]

    def reset_run(self, run_id: int, resolutions: list[str] | None = None) -> None:
        """Drop stored predictions and results of the given cells (all of the run's when None)."""
        with self._write() as conn:
            if resolutions is None:
                conn.execute("DELETE FROM chunks WHERE run_id = ?", (run_id,))
                conn.execute("DELETE FROM results WHERE run_id = ?", (run_id,))
                return
            for resolution in {Resolution(r) for r in resolutions}:
                conn.execute("DELETE FROM chunks WHERE run_id = ? AND resolution = ?", (run_id, resolution))
                conn.execute("DELETE FROM results WHERE run_id = ? AND resolution = ?", (run_id, resolution))

    # leases ------------------------------------------------------------------------------------------

    def claim(self, run_id: int, resolutions, owner: Owner, *, force: bool = False,
              dry_run: bool = False) -> Claim:
        """Claim the unfinished cells of `run_id` at `resolutions` that no live process holds, in one
        transaction: a cell is never claimed by two processes, nor claimed once it is finished.

        Args:
            force: claim finished cells too (to recompute them), unless a live process holds them.
            dry_run: only tell what a claim would give; `mine` then lists the cells free to claim.
        """
        now = time.time()
        claim = Claim([], [], {})
        with self._write() as conn:
            self._require_run(conn, run_id)
            finished = set() if force else self.finished_resolutions(run_id)
            for resolution in dict.fromkeys(Resolution(r) for r in resolutions):
                if resolution in finished:
                    claim.finished.append(resolution)
                    continue
                row = conn.execute("SELECT token, host, pid, heartbeat FROM leases WHERE run_id = ? AND resolution = ?",
                                   (run_id, resolution)).fetchone()
                if row is not None and row[0] != owner.token and is_live(row[1], row[2], row[3], now):
                    claim.held[resolution] = Owner(row[1], row[2], row[0]).describe()
                    continue
                claim.mine.append(resolution)
                if dry_run:
                    continue
                conn.execute("INSERT OR REPLACE INTO leases (run_id, resolution, token, host, pid, claimed_at, "
                             "heartbeat) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (run_id, resolution, owner.token, owner.host, owner.pid, _now(), now))
        return claim

    def heartbeat(self, owner: Owner) -> int:
        """Refresh every lease of `owner`; returns how many it holds."""
        now = time.time()
        with self._write() as conn:
            return conn.execute("UPDATE leases SET heartbeat = ? WHERE token = ?", (now, owner.token)).rowcount

    def release(self, owner: Owner, run_id: int | None = None, resolutions=None) -> None:
        """Drop the leases of `owner`: all of them, those of one run, or those of some of its cells."""
        with self._write() as conn:
            if run_id is None:
                conn.execute("DELETE FROM leases WHERE token = ?", (owner.token,))
            elif resolutions is None:
                conn.execute("DELETE FROM leases WHERE token = ? AND run_id = ?", (owner.token, run_id))
            else:
                conn.executemany("DELETE FROM leases WHERE token = ? AND run_id = ? AND resolution = ?",
                                 [(owner.token, run_id, r) for r in {Resolution(r) for r in resolutions}])

    def leases(self) -> list[dict]:
        """Every lease row (run_id, resolution, host, pid, claimed_at, heartbeat), live or not."""
        columns = ("run_id", "resolution", "host", "pid", "claimed_at", "heartbeat")
        return [dict(zip(columns, row)) for row in
                self._conn.execute(f"SELECT {', '.join(columns)} FROM leases ORDER BY run_id, resolution")]

    def _check_lease(self, conn: sqlite3.Connection, run_id: int, resolutions, owner: Owner | None) -> None:
        if owner is None:
            return
        for resolution in resolutions:
            row = conn.execute("SELECT token, host, pid FROM leases WHERE run_id = ? AND resolution = ?",
                               (run_id, resolution)).fetchone()
            if row is None or row[0] != owner.token:
                holder = f" by {Owner(row[1], row[2], row[0]).describe()}" if row else ""
                raise LeaseLost(f"The cell {resolution} of run {run_id} was taken over{holder} after this "
                                f"process missed its heartbeats; that process finishes it.")

    # chunks ------------------------------------------------------------------------------------------

    def _segments(self, conn: sqlite3.Connection, run_id: int, resolution: str) -> list[tuple[int, int]]:
        return conn.execute(
            "SELECT start, stop FROM chunks WHERE run_id = ? AND resolution = ? ORDER BY start",
            (run_id, resolution),
        ).fetchall()

    @staticmethod
    def _prefix(segments: list[tuple[int, int]]) -> int:
        covered = 0
        for start, stop in segments:
            if start > covered:
                break
            covered = max(covered, stop)
        return covered

    def covered(self, run_id: int, resolution: str) -> list[tuple[int, int]]:
        """The sample ranges [start, stop) the committed chunks of one cell cover, merged, in order."""
        merged: list[list[int]] = []
        for start, stop in self._segments(self._conn, run_id, Resolution(resolution)):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], stop)
            else:
                merged.append([start, stop])
        return [(start, stop) for start, stop in merged]

    def completed_prefix(self, run_id: int, resolution: str) -> int:
        """How many samples, counted from index 0 without a gap, the committed chunks cover."""
        return self._prefix(self._segments(self._conn, run_id, Resolution(resolution)))

    def add_chunk(self, run_id: int, start: int, labels: np.ndarray, ok: np.ndarray,
                  top5_by_resolution: dict[str, np.ndarray], owner: Owner | None = None) -> None:
        """Store samples [start, start + len(labels)) for every given resolution in one transaction.

        top5 arrays are (n, k) class indices with k <= 5, best first; they are padded to 5 with -1.
        Samples already stored for a resolution are replaced (new data wins).

        Raises:
            LeaseLost: `owner` is given and no longer holds the lease of one of these cells.
        """
        labels = _as_int32(np.asarray(labels).reshape(-1), "labels", 0)
        n = len(labels)
        ok = np.asarray(ok)
        if ok.shape != (n,):
            raise ValueError(f"ok must have shape ({n},), got {ok.shape}")
        if ok.dtype != np.bool_:
            if not np.isin(ok, (0, 1)).all():
                raise ValueError("ok must be a boolean mask")
            ok = ok.astype(np.bool_)
        if int(start) < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        start, stop = int(start), int(start) + n
        prepared = {}
        for resolution, top5 in top5_by_resolution.items():
            top5 = np.asarray(top5)
            if top5.ndim != 2 or top5.shape[0] != n or not 1 <= top5.shape[1] <= TOP_K:
                raise ValueError(f"top5 for resolution {resolution!r} must have shape ({n}, k) with "
                                 f"1 <= k <= {TOP_K}, got {top5.shape}")
            padded = np.full((n, TOP_K), -1, dtype="<i4")
            padded[:, : top5.shape[1]] = _as_int32(top5, f"top5 for resolution {resolution!r}", -1)
            prepared[Resolution(resolution)] = padded
        if n == 0 or not prepared:
            return
        packed_labels, packed_ok = _pack(labels), _pack(ok.astype(np.uint8))
        with self._write() as conn:
            self._require_run(conn, run_id)
            self._check_lease(conn, run_id, prepared, owner)
            finished = self.finished_resolutions(run_id) & prepared.keys()
            if finished:
                # A finished cell's metrics would silently go stale; --force must reset it first.
                raise ValueError(f"resolutions {sorted(map(str, finished))} of run {run_id} are finished; "
                                 f"reset_run them before adding predictions")
            for resolution, top5 in prepared.items():
                self._trim(conn, run_id, resolution, start, stop)
                conn.execute(
                    "INSERT INTO chunks (run_id, resolution, start, stop, labels, ok, top5) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, resolution, start, stop, packed_labels, packed_ok, _pack(top5)),
                )

    def _trim(self, conn: sqlite3.Connection, run_id: int, resolution: str, start: int, stop: int) -> None:
        """Cut [start, stop) out of the stored segments of one cell, keeping what lies outside it."""
        overlapping = conn.execute(
            "SELECT start, stop, labels, ok, top5 FROM chunks "
            "WHERE run_id = ? AND resolution = ? AND start < ? AND stop > ?",
            (run_id, resolution, stop, start),
        ).fetchall()
        for old_start, old_stop, labels_blob, ok_blob, top5_blob in overlapping:
            conn.execute("DELETE FROM chunks WHERE run_id = ? AND resolution = ? AND start = ?",
                         (run_id, resolution, old_start))
            n = old_stop - old_start
            labels = _unpack(labels_blob, "<i4", (n,))
            ok = _unpack(ok_blob, "u1", (n,))
            top5 = _unpack(top5_blob, "<i4", (n, TOP_K))
            for keep_start, keep_stop in ((old_start, min(old_stop, start)), (max(old_start, stop), old_stop)):
                if keep_stop <= keep_start:
                    continue
                part = slice(keep_start - old_start, keep_stop - old_start)
                conn.execute(
                    "INSERT INTO chunks (run_id, resolution, start, stop, labels, ok, top5) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, resolution, keep_start, keep_stop,
                     _pack(labels[part]), _pack(ok[part]), _pack(top5[part])),
                )

    def _read_cell(self, conn: sqlite3.Connection, run_id: int,
                   resolution: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """Contiguous prefix of one cell as (labels, top5, ok), and whether data lies beyond a gap."""
        rows = conn.execute(
            "SELECT start, stop, labels, ok, top5 FROM chunks WHERE run_id = ? AND resolution = ? ORDER BY start",
            (run_id, resolution),
        ).fetchall()
        labels, top5, ok = [], [], []
        covered = 0
        for start, stop, labels_blob, ok_blob, top5_blob in rows:
            if start != covered:  # segments never overlap, so anything else is a gap
                return self._concat(labels, top5, ok) + (True,)
            n = stop - start
            labels.append(_unpack(labels_blob, "<i4", (n,)))
            ok.append(_unpack(ok_blob, "u1", (n,)).astype(bool))
            top5.append(_unpack(top5_blob, "<i4", (n, TOP_K)))
            covered = stop
        return self._concat(labels, top5, ok) + (False,)

    @staticmethod
    def _concat(labels: list, top5: list, ok: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not labels:
            return (np.zeros(0, dtype=np.int32), np.zeros((0, TOP_K), dtype=np.int32), np.zeros(0, dtype=bool))
        return np.concatenate(labels), np.concatenate(top5), np.concatenate(ok)

    def predictions(self, run_id: int, resolution: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(labels (n,), top5 (n, 5), ok (n,)) in sample order, over the contiguous prefix from 0.

        For a finished cell that is every sample; unreadable samples are included with ok False.
        """
        labels, top5, ok, _ = self._read_cell(self._conn, run_id, Resolution(resolution))
        return labels, top5, ok

    # results -----------------------------------------------------------------------------------------

    def finish_resolution(self, run_id: int, resolution: str, n_classes: int, pixels: int,
                          n_samples: int | None = None, owner: Owner | None = None) -> dict:
        """Score a cell from its stored chunks (readable samples only) and record the result; the cell's
        lease, if any, ends with it.

        `n_samples`, when given, must equal the number of stored samples (guards against a short run).

        Raises:
            LeaseLost: `owner` is given and no longer holds the cell's lease.
        """
        resolution = Resolution(resolution)
        with self._write() as conn:
            self._require_run(conn, run_id)
            self._check_lease(conn, run_id, (resolution,), owner)
            labels, top5, ok, gap = self._read_cell(conn, run_id, resolution)
            if gap:
                raise ValueError(f"run {run_id} at {resolution} has a gap after sample {len(labels)}; "
                                 f"its chunks do not cover the samples contiguously")
            if n_samples is not None and len(labels) != n_samples:
                raise ValueError(f"run {run_id} at {resolution} has {len(labels)} samples stored, "
                                 f"expected {n_samples}")
            if ok.any():
                summary = accuracy_summary(labels[ok], top5[ok], n_classes)
            else:  # every image unreadable (or none at all): accuracy_summary cannot reshape empty top5
                summary = {"n": 0, "top1": None, "top5": None, "mean_per_class_recall": None,
                           "per_class_recall": [None] * n_classes}
            provenance = conn.execute("SELECT provenance FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
            conn.execute(
                "INSERT OR REPLACE INTO results (run_id, resolution, pixels, n_classes, top1, top5, "
                "mean_per_class_recall, per_class_recall, n, n_skipped, provenance, finished_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, resolution, int(pixels), int(n_classes), _nan_to_none(summary["top1"]),
                 _nan_to_none(summary["top5"]), _nan_to_none(summary["mean_per_class_recall"]),
                 json.dumps(summary["per_class_recall"]), summary["n"], int((~ok).sum()), provenance, _now()),
            )
            conn.execute("DELETE FROM leases WHERE run_id = ? AND resolution = ?", (run_id, resolution))
            return self._result(conn, run_id, resolution)

    def result(self, run_id: int, resolution: str) -> dict | None:
        """The full results row of one cell (with per-class recall and provenance), or None."""
        return self._result(self._conn, run_id, Resolution(resolution))

    @staticmethod
    def _result(conn: sqlite3.Connection, run_id: int, resolution: str) -> dict | None:
        columns = ("run_id", "resolution", "pixels", "n_classes", "top1", "top5", "mean_per_class_recall",
                   "per_class_recall", "n", "n_skipped", "provenance", "finished_at")
        row = conn.execute(f"SELECT {', '.join(columns)} FROM results WHERE run_id = ? AND resolution = ?",
                           (run_id, resolution)).fetchone()
        if row is None:
            return None
        record = dict(zip(columns, row))
        record["per_class_recall"] = json.loads(record["per_class_recall"])
        record["provenance"] = json.loads(record["provenance"])
        return record

    def results(self, model: str | None = None, dataset: str | None = None) -> list[dict]:
        """Finished cells joined with their runs; filters are case-insensitive substrings.

        Sorted by model, dataset, protocol (then split and run), native first, then larger resolutions.
        """
        where, params = [], []
        for column, needle in (("runs.model_spec", model), ("runs.dataset", dataset)):
            if needle:
                # instr, not LIKE: '_' and '%' in names are literal characters.
                where.append(f"instr(lower({column}), lower(?)) > 0")
                params.append(needle)
        select = ", ".join(
            f"runs.{c}" if c in _KEY_FIELDS else ("runs.id" if c == "run_id" else f"results.{c}")
            for c in RESULT_COLUMNS
        )
        sql = (f"SELECT {select} FROM results JOIN runs ON runs.id = results.run_id "
               f"{'WHERE ' + ' AND '.join(where) if where else ''}")
        rows = [dict(zip(RESULT_COLUMNS, row)) for row in self._conn.execute(sql, params)]
        return sorted(rows, key=lambda r: (r["model_spec"], r["dataset"], r["protocol"], r["split"], r["run_id"],
                                           Resolution(r["resolution"]).sort_key))

    @staticmethod
    def export_frame(rows: list[dict]):
        """Rows of results() as a pandas DataFrame with the columns RESULT_COLUMNS and fixed dtypes."""
        import pandas as pd  # only exports need pandas

        frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
        return frame.astype({"pixels": "int64", "n": "int64", "n_skipped": "int64", "run_id": "int64",
                             "top1": "float64", "top5": "float64", "mean_per_class_recall": "float64"})

    @classmethod
    def _write_export(cls, rows: list[dict], kind: str, target) -> None:
        """Write `rows` as `kind` to `target`: a file path, or a text stream such as sys.stdout."""
        is_path = isinstance(target, Path)
        if kind == "json":
            # Rows straight from SQLite: missing metrics are already None, i.e. JSON null.
            text = json.dumps(rows, indent=2) + "\n"
            if is_path:
                target.write_text(text, encoding="utf-8")
            else:
                target.write(text)
        elif kind == "csv":
            cls.export_frame(rows).to_csv(target, index=False)
        else:
            try:
                cls.export_frame(rows).to_parquet(target if is_path else target.buffer, index=False)
            except ImportError:
                raise UserError("Parquet export needs pyarrow; install it (pip install pyarrow) "
                                "or export as csv or json.") from None

    def export(self, path: str | Path, format: str, model: str | None = None,
               dataset: str | None = None) -> Path | None:
        """Write results() as csv, json (list of records) or parquet to the file `path`, or to standard
        output when `path` is "-".

        A file appears whole or not at all (`fileio.atomic_path`). Returns the file's path, or None when the
        rows went to standard output. Parquet goes to standard output only when that is not a terminal.
        """
        import sys

        from .fileio import atomic_path

        kind = str(format).lower().lstrip(".")
        if kind not in EXPORT_FORMATS:
            raise UserError(f"Unknown export format {format!r}; use one of: {', '.join(EXPORT_FORMATS)}.")
        if str(path) == "-":
            if kind == "parquet" and sys.stdout.isatty():
                raise UserError("Parquet is binary and standard output is a terminal; redirect it "
                                "(lr0fm export -f parquet -o - > results.parquet) or pass a file to --out.")
            self._write_export(self.results(model=model, dataset=dataset), kind, sys.stdout)
            sys.stdout.flush()
            return None
        path = Path(path).expanduser()
        if path.is_dir():
            raise UserError(f"The export path {path} is a directory; pass a file path such as "
                            f"{path / ('results.' + kind)}.")
        rows = self.results(model=model, dataset=dataset)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"Cannot create the folder for {path} ({error}); pass a writable path.") from None
        try:
            with atomic_path(path) as tmp:
                self._write_export(rows, kind, tmp)
        except OSError as error:
            raise UserError(f"Cannot write {path} ({error}); pass a writable path.") from None
        return path
