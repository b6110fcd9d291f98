"""The public Python API; the `lr0fm` command is a thin skin over these functions."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from .data import load_dataset
from .errors import UserError
from .models import load_model
from .runner import EvalConfig, run
from .store import DEFAULT_DB, ResultStore


def evaluate(
    models: str | Sequence[str] = "lr0fm-tiny",
    datasets: str | Sequence[str] = "fashion_mnist",
    resolutions: str | Sequence[int | str] | None = None,
    protocol: str = "canonical",
    db: str | Path = DEFAULT_DB,
    **options,
) -> pd.DataFrame:
    """Zero-shot accuracy of each model on each dataset at native and low resolutions.

    Finished cells already in `db` are reused (pass force=True to recompute). Other options are the
    fields of runner.EvalConfig: weights, data_root, split, download, limit, batch_size, workers, device,
    precision. Returns one row per (model, dataset, resolution) with top1/top5 as fractions.

    >>> lr0fm.evaluate("lr0fm-tiny", "fashion_mnist", resolutions="native,16,8")
    """
    models = [models] if isinstance(models, str) else list(models)
    datasets = [datasets] if isinstance(datasets, str) else list(datasets)
    rows, _ = run(EvalConfig(models=models, datasets=datasets, resolutions=resolutions, protocol=protocol, db=db, **options))
    return pd.DataFrame(rows)


def open_results(db: str | Path = DEFAULT_DB) -> ResultStore:
    """The results database at `db`, which must exist (run `evaluate` first)."""
    if not Path(db).is_file():
        raise UserError(f"No results database at {db}; run `lr0fm eval` first or pass --db PATH.")
    return ResultStore(db)


__all__ = ["evaluate", "load_dataset", "load_model", "open_results"]
