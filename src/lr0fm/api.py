"""The public Python API; the `lr0fm` command is a thin skin over these functions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import pandas as pd

from .data import load_dataset
from .errors import UserError
from .models import load_model
from .runner import EvalConfig, run
from .store import DEFAULT_DB, ResultStore
from .synth.generate import synthesize


def evaluate(
    models: str | Sequence[str] = "lr0fm-tiny",
    datasets: str | Sequence[str] | None = None,
    resolutions: str | Sequence[int | str] | None = None,
    protocol: str | None = None,
    db: str | Path = DEFAULT_DB,
    suite: str | None = None,
    **options,
) -> pd.DataFrame:
    """Zero-shot accuracy of each model on each dataset at native and low resolutions.

    Finished cells already in `db` are reused (pass force=True to recompute). Other options are the
    fields of runner.EvalConfig: weights, data_root, split, download, limit, batch_size, workers, device,
    precision. Returns one row per (model, dataset, resolution) with top1/top5 as fractions. Defaults:
    fashion_mnist, the canonical protocol.

    `suite="lr0fm"` runs the paper's grid (its 15 datasets, native/128/64/32/16, paper protocol; `datasets`
    may pick a subset); `models="all"` means every supported registry model. Such a batch keeps going past
    missing datasets and unavailable weights: what it skipped is in `frame.attrs["skipped"]` (and logged),
    unsupported models left out of "all" in `frame.attrs["not_planned"]`.

    >>> lr0fm.evaluate("lr0fm-tiny", "fashion_mnist", resolutions="native,16,8")
    >>> lr0fm.evaluate(["eva02-b16", "siglip-b16"], suite="lr0fm", data_root="/datasets")
    """
    from dataclasses import asdict

    from .suites import is_batch, run_batch

    models = [models] if isinstance(models, str) else list(models)
    datasets = [] if datasets is None else [datasets] if isinstance(datasets, str) else list(datasets)
    config = EvalConfig(models=models, datasets=datasets, resolutions=resolutions, protocol=protocol, db=db,
                        suite=suite, **options)
    if not is_batch(config):
        rows, _ = run(config)
        return pd.DataFrame(rows)
    batch = run_batch(config)
    for skip in batch.skipped:
        logging.getLogger("lr0fm").warning("not evaluated: %s · %s: %s", skip.model or "all models",
                                           skip.dataset or "all datasets", skip.reason)
    frame = pd.DataFrame(batch.rows)
    frame.attrs["skipped"] = [asdict(skip) for skip in batch.skipped]
    frame.attrs["not_planned"] = [asdict(skip) for skip in batch.not_planned]
    return frame


def open_results(db: str | Path = DEFAULT_DB) -> ResultStore:
    """The results database at `db`, which must exist (run `evaluate` first)."""
    if not Path(db).is_file():
        raise UserError(f"No results database at {db}; run `lr0fm eval` first or pass --db PATH.")
    return ResultStore(db)


def train_tokens(model: str, pool: str, out: str | Path, **options):
    """Train LR-TK0 tokens for `model` on an image pool and write them to `out` (a .safetensors file).

    `pool`: a folder of images (optionally with manifest.jsonl: {"file", "group"} per line, e.g. from
    `synthesize`), a manifest .jsonl, or DATASET:SPLIT used without labels (e.g. "fashion_mnist:train").
    Other options are the fields of tokens.TokenTrainConfig: steps, batch_size, group_size, lr, weight_decay,
    warmup, seed, variant ("always", "resolution", "vpt"), first_block, prompts, buckets, checkpoint_every,
    resume, overwrite, device, workers, precision, weights, data_root; `callback(step, loss)` runs after each
    step. Returns a tokens.TrainResult; the tokens then load as the model spec f"{model}+tokens={out}".

    >>> lr0fm.train_tokens("lr0fm-tiny", "fashion_mnist:train", "tiny.tokens.safetensors", steps=300, batch_size=128)
    >>> lr0fm.evaluate("lr0fm-tiny+tokens=tiny.tokens.safetensors", resolutions="native,16,8")
    """
    from .tokens.train import TokenTrainConfig, train

    callback = options.pop("callback", None)
    return train(TokenTrainConfig(model=model, pool=pool, out=out, **options), callback)


__all__ = ["evaluate", "load_dataset", "load_model", "open_results", "synthesize", "train_tokens"]
