"""Read what a report needs from the results database: no model is loaded, nothing is recomputed.

A report "model" is one model spec evaluated with one set of weights under one protocol; a model spec seen
with several weights fingerprints or protocols gets one report model for each, labelled apart. Within a
report model each dataset comes from one run: the most recently updated one, the others are listed as
ignored (e.g. an earlier `--limit` run of the same dataset).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..metrics import NATIVE
from ..resolution import order
from ..store import ResultStore


@dataclass
class DatasetRun:
    """One (report model, dataset) pair: stored accuracies and, optionally, per-sample predictions."""

    model: str
    dataset: str
    run_id: int
    model_spec: str
    protocol: str
    split: str
    n_classes: int
    classnames: list[str] | None  # None for runs recorded before class names were kept in the provenance
    rows: dict[str, dict]  # resolution -> stored results row (top1, top5, n, n_skipped, pixels, ...)
    dataset_fingerprint: str = ""  # the dataset's file list hash: runs sharing it (and split, n) share images
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    top5: dict[str, np.ndarray] = field(default_factory=dict)
    ok: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def resolutions(self) -> list[str]:
        return order_resolutions(self.rows)

    @property
    def native_pixels(self) -> int:
        return int(self.rows[NATIVE]["pixels"])

    def classname(self, index: int) -> str:
        if self.classnames is not None and 0 <= index < len(self.classnames):
            return self.classnames[index]
        return f"class {index}"


@dataclass
class Collected:
    runs: list[DatasetRun]
    notes: list[str]  # runs left out, and why

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.runs))

    def of(self, model: str) -> list[DatasetRun]:
        return [r for r in self.runs if r.model == model]


def order_resolutions(resolutions) -> list[str]:
    """'native' first, then pixel sizes from large to small (as plain text, for table columns)."""
    return [str(r) for r in order(resolutions)]


def _labels(keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], str]:
    """Report label per (spec, fingerprint, protocol): the spec, plus what tells same-spec models apart."""
    by_spec: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for key in keys:
        by_spec[key[0]].append(key)
    labels = {}
    for spec, same in by_spec.items():
        protocols = {k[2] for k in same}
        fingerprints = {k[1] for k in same}
        for key in same:
            extra = []
            if len(protocols) > 1:
                extra.append(key[2])
            if len(fingerprints) > 1:
                extra.append(f"weights {key[1][:8]}")
            labels[key] = f"{spec} ({', '.join(extra)})" if extra else spec
    return labels


def collect(store: ResultStore, model: str | None = None, dataset: str | None = None,
            predictions: bool = True) -> Collected:
    """Finished cells of the database (substring filters as in `ResultStore.results`), grouped for a report.

    With `predictions`, per-sample labels, top-5 and readable flags are loaded too (bootstrap CIs and the
    plausibility analysis need them).
    """
    rows = store.results(model=model, dataset=dataset)
    by_run: dict[int, dict[str, dict]] = defaultdict(dict)
    for row in rows:
        by_run[row["run_id"]][row["resolution"]] = row
    notes: list[str] = []
    records = {run_id: store.run(run_id) for run_id in by_run}
    keys = {run_id: (r["model_spec"], r["model_fingerprint"], r["protocol"]) for run_id, r in records.items()}
    labels = _labels(list(dict.fromkeys(keys.values())))

    chosen: dict[tuple[str, str], int] = {}
    for run_id, record in records.items():
        if NATIVE not in by_run[run_id]:
            notes.append(f"Run {run_id} ({record['model_spec']} on {record['dataset']}) has no native-resolution "
                         "result, which robustness is relative to; it is left out.")
            continue
        slot = (labels[keys[run_id]], record["dataset"])
        if slot in chosen:
            other = chosen[slot]
            newer, older = ((run_id, other) if (record["updated_at"], run_id) > (records[other]["updated_at"], other)
                            else (other, run_id))
            chosen[slot] = newer
            notes.append(f"Run {older} ({slot[0]} on {slot[1]}, split {records[older]['split']}) is superseded by "
                         f"the more recent run {newer} of the same model and dataset and is left out.")
        else:
            chosen[slot] = run_id

    runs = []
    for (label, name), run_id in chosen.items():
        record = records[run_id]
        provenance = record["provenance"]
        cells = by_run[run_id]
        stored = store.result(run_id, NATIVE)
        n_classes = int(provenance.get("n_classes") or stored["n_classes"])
        classnames = provenance.get("classnames")
        if classnames is not None and len(classnames) != n_classes:
            classnames = None
        run = DatasetRun(model=label, dataset=name, run_id=run_id, model_spec=record["model_spec"],
                         protocol=record["protocol"], split=record["split"], n_classes=n_classes,
                         classnames=classnames, rows=cells, dataset_fingerprint=record["dataset_fingerprint"])
        if predictions:
            for resolution in cells:
                labels_, top5, ok = store.predictions(run_id, resolution)
                run.labels[resolution], run.top5[resolution], run.ok[resolution] = labels_, top5, ok
            sizes = {len(v) for v in run.labels.values()}
            if len(sizes) > 1:
                notes.append(f"Run {run_id} ({label} on {name}) stores different sample counts per resolution; "
                             "it is left out.")
                continue
        runs.append(run)
    runs.sort(key=lambda r: (r.model, dataset_rank(r.dataset)))
    return Collected(runs, notes)


def dataset_rank(name: str) -> tuple[int, str]:
    """Sort key: the paper's 15 datasets in its table order, then any others by name."""
    from ..reference import DATASETS

    return (DATASETS.index(name), "") if name in DATASETS else (len(DATASETS), name)


def dataset_order(names) -> list[str]:
    return sorted(dict.fromkeys(names), key=dataset_rank)


def accuracy_frame(collected: Collected):
    """Tidy stored accuracies: model, dataset, resolution, pixels, top1, top5 (fractions), n, n_classes."""
    import pandas as pd

    records = []
    for run in collected.runs:
        for resolution in run.resolutions:
            row = run.rows[resolution]
            records.append({"model": run.model, "dataset": run.dataset, "resolution": resolution,
                            "pixels": int(row["pixels"]), "top1": row["top1"], "top5": row["top5"],
                            "n": int(row["n"]), "n_classes": run.n_classes})
    return pd.DataFrame(records, columns=["model", "dataset", "resolution", "pixels", "top1", "top5", "n",
                                          "n_classes"])
