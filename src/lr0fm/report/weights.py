"""`lr0fm weights fit`: re-derive WAR dataset weights from a table of accuracies (metrics.fit_war_weights).

Sources: the paper's published table (66 backbones x 15 datasets), the results database, or a CSV file
with tidy columns model, dataset, resolution, top1 [, n_classes].
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from .. import metrics, reference
from ..errors import UserError
from ..fileio import write_text_atomic
from ..store import DEFAULT_DB, ResultStore

TABLE_COLUMNS = ("model", "dataset", "resolution", "top1")


def paper_table() -> pd.DataFrame:
    """The paper's accuracies, with the backbone as the model column."""
    return reference.paper_accuracy().rename(columns={"backbone": "model"})[
        ["model", "dataset", "resolution", "top1"]]


def database_table(db: str | Path = DEFAULT_DB) -> pd.DataFrame:
    """Stored top-1 per (model, dataset, resolution) with class counts from the runs; no predictions read."""
    from .collect import accuracy_frame, collect

    db = Path(db).expanduser()
    if not db.is_file():
        raise UserError(f"No results database at {db}; run `lr0fm eval` first or pass --db PATH.")
    with ResultStore(db) as store:
        frame = accuracy_frame(collect(store, predictions=False))
    if frame.empty:
        raise UserError(f"No finished results with a native resolution in {db}; run `lr0fm eval` first.")
    return frame[["model", "dataset", "resolution", "top1", "n_classes"]]


def csv_table(path: str | Path) -> pd.DataFrame:
    """A tidy CSV: model, dataset, resolution ('native' or pixels), top1 (percent or fractions), [n_classes]."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"No table file at {path}; pass a CSV with columns {', '.join(TABLE_COLUMNS)}.")
    try:
        frame = pd.read_csv(path, dtype={"model": str, "dataset": str, "resolution": str})
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise UserError(f"Cannot read {path} as CSV ({error}); pass a CSV with columns "
                        f"{', '.join(TABLE_COLUMNS)}.") from None
    if "model" not in frame.columns and "backbone" in frame.columns:
        frame = frame.rename(columns={"backbone": "model"})
    missing = [c for c in TABLE_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path} has no column(s) {', '.join(missing)}; it needs {', '.join(TABLE_COLUMNS)} "
                        "and optionally n_classes.")
    return frame[list(TABLE_COLUMNS) + (["n_classes"] if "n_classes" in frame.columns else [])]


def load_table(source: str = "paper", db: str | Path = DEFAULT_DB, table: str | Path | None = None) -> pd.DataFrame:
    if source == "paper":
        return paper_table()
    if source == "db":
        return database_table(db)
    if source == "csv":
        if table is None:
            raise UserError("Pass the CSV file with --table FILE.csv.")
        return csv_table(table)
    raise UserError(f"Unknown weights source {source!r}; use paper, db or csv.")


def fit_weights(frame: pd.DataFrame, resolution=16, *, objective_datasets: Sequence[str] | None = None,
                floor: float = 0.95, seed: int = 0, maxiter: int = 1000) -> dict:
    """fit_war_weights on `frame`; the correlation table gains `rho_war_paper` (WAR with the paper's weights)
    when every dataset has a paper weight, so fitted and published weights can be compared."""
    fit = metrics.fit_war_weights(frame, resolution, objective_datasets=objective_datasets or None, floor=floor,
                                  seed=seed, maxiter=maxiter, model="model")
    datasets = list(fit["correlations"]["dataset"])
    if all(d in reference.WAR_WEIGHTS for d in datasets):
        paper = metrics.war_correlations(frame, resolution=resolution, model="model")
        fit["correlations"]["weight_paper"] = [reference.WAR_WEIGHTS[d] for d in datasets]
        fit["correlations"]["rho_war_paper"] = paper.set_index("dataset").loc[datasets, "rho_war"].to_numpy()
        fit["mean_rho_war_paper"] = float(paper["rho_war"].mean())
    return fit


def write_weights(fit: dict, path: str | Path, source: str) -> Path:
    """The fit as JSON (weights, correlations, settings); written whole or not at all."""
    path = Path(path).expanduser()
    payload = {
        "weights": fit["weights"],
        "resolution": fit["resolution"],
        "source": source,
        "objective_datasets": fit["objective_datasets"],
        "seed": fit["seed"],
        "n_models": fit["n_models"],
        "dropped_models": fit["dropped_models"],
        "mean_rho_sar": fit["mean_rho_sar"],
        "mean_rho_war": fit["mean_rho_war"],
        "violations": fit["violations"],
        "correlations": fit["correlations"].to_dict(orient="records"),
    }
    if "mean_rho_war_paper" in fit:
        payload["mean_rho_war_paper"] = fit["mean_rho_war_paper"]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(payload, indent=2, default=float) + "\n")
    except OSError as error:
        raise UserError(f"Cannot write {path} ({error}); pass a writable path to --out.") from None
    return path
