"""Plan the models × datasets × resolutions grid and execute it, cell by cell, into the results store.

One pass over a dataset serves every pending resolution: each image is decoded once, all its views are
made together (degrade.ViewMaker) in DataLoader workers, and predictions are committed in whole chunks,
so a killed run resumes from the last chunk and never duplicates a row.
"""

from __future__ import annotations

import contextlib
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import __version__
from .data import ZeroShotDataset, load_dataset
from .data.base import text_hash
from .degrade import PROTOCOLS, ViewMaker, parse_resolutions, to_rgb
from .errors import UserError
from .models import ZeroShotModel, check_spec, load_model, native_size
from .store import DEFAULT_DB, ResultStore, RunKey
from .zeroshot import cached_classifier, logits, top_k

CHUNK_SIZE = 1024  # samples per committed chunk: the most a killed run can lose


@dataclass
class EvalConfig:
    models: Sequence[str] = ("lr0fm-tiny",)
    datasets: Sequence[str] = ()  # empty: fashion_mnist, or every dataset of the suite
    resolutions: str | Sequence[int | str] | None = None  # None: native + the model's default sweep
    protocol: str | None = None  # None: canonical, or the suite's protocol
    weights: str | None = None
    data_root: str | None = None
    split: str | None = None
    download: bool = False
    limit: int | None = None
    db: str | Path = DEFAULT_DB
    force: bool = False
    batch_size: int = 64
    workers: int = 2
    device: str = "auto"
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 only on GPU)
    chunk_size: int = CHUNK_SIZE
    suite: str | None = None  # a fixed benchmark grid (see suites.py), e.g. "lr0fm"


@dataclass
class CellOutcome:
    model: str
    dataset: str
    run_id: int = -1
    resolutions: list[str] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped_images: list[str] = field(default_factory=list)  # descriptions of images that could not be decoded


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise UserError(f"Unknown device {device!r}; use auto, cpu, cuda or cuda:N.") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"Device {device} was requested but no CUDA GPU is available; use --device cpu.")
    return resolved


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)


def validate(config: EvalConfig) -> None:
    """Every check that needs no model weights and no images, before anything is written."""
    if config.protocol not in PROTOCOLS:
        raise UserError(f"Unknown protocol {config.protocol!r}; use one of: {', '.join(PROTOCOLS)}.")
    if config.precision not in ("fp32", "bf16", "fp16"):
        raise UserError(f"Unknown precision {config.precision!r}; use fp32, bf16 or fp16.")
    if config.batch_size <= 0 or config.workers < 0:
        raise UserError("--batch-size must be positive and --workers zero or more.")
    if not config.models or not config.datasets:
        raise UserError("Give at least one --model and one --dataset.")
    if config.resolutions is not None:
        parse_resolutions(config.resolutions, native=10**9, default=())  # syntax only; sizes are checked per model
    if config.weights and len(config.models) != 1:
        raise UserError("--weights applies to exactly one --model; evaluate the other models in a separate command.")
    for spec in config.models:
        check_spec(spec)
    db = Path(config.db)
    if db.exists() and db.is_dir():
        raise UserError(f"--db {db} is a directory; give the path of a .sqlite file.")


def _check_resolutions_fit(config: EvalConfig) -> None:
    """With several models, a resolution too large for a later one must fail before the first writes a cell.
    Sizes known without weights are checked here; the rest when each model loads."""
    if config.resolutions is None or len(config.models) < 2:
        return  # one model: it is checked as soon as it loads, before anything is written
    for spec in config.models:
        native = native_size(spec)
        if native is None:
            continue
        try:
            parse_resolutions(config.resolutions, native, ())
        except UserError as error:
            raise UserError(f"{spec}: {error}") from None


class _Views(torch.utils.data.Dataset):
    """Samples [start, len) of a dataset as (index, label, ok, views uint8 (V, 3, n, n))."""

    def __init__(self, dataset: ZeroShotDataset, maker: ViewMaker, start: int, native: int):
        self.dataset, self.maker, self.start, self.native = dataset, maker, start, native

    def __len__(self) -> int:
        return len(self.dataset) - self.start

    def __getitem__(self, position: int):
        index = self.start + position
        try:
            views = self.maker(to_rgb(self.dataset.load_image(index)))
            ok = True
        except Exception:  # corrupt, truncated or unreadable file: counted and skipped, never fatal
            views = torch.zeros(len(self.maker.resolutions), 3, self.native, self.native, dtype=torch.uint8)
            ok = False
        return index, self.dataset.labels[index], ok, views


def provenance(model: ZeroShotModel, dataset: ZeroShotDataset, config: EvalConfig, device: torch.device) -> dict:
    import open_clip
    import transformers

    return {
        "model_spec": model.spec,
        "weights_file": str(Path(config.weights).resolve()) if config.weights else None,
        "model_fingerprint": model.fingerprint(),
        "family": model.family,
        "native_pixels": model.image_size,
        "mean": list(model.image.mean),
        "std": list(model.image.std),
        "dataset": dataset.name,
        "split": dataset.split,
        "root": dataset.root,
        "n_images": len(dataset),
        "limit": config.limit,
        "classnames_hash": text_hash(dataset.classnames),
        "classnames": list(dataset.classnames),
        "templates_hash": text_hash(dataset.templates),
        "n_classes": len(dataset.classnames),
        "n_templates": len(dataset.templates),
        "protocol": config.protocol,
        "device": str(device),
        "precision": config.precision,
        "batch_size": config.batch_size,
        "seed": 0,
        "versions": {
            "lr0fm": __version__,
            "torch": torch.__version__,
            "open_clip": open_clip.__version__,
            "transformers": transformers.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }


def evaluate_cell(
    store: ResultStore,
    model: ZeroShotModel,
    dataset: ZeroShotDataset,
    config: EvalConfig,
    device: torch.device,
    resolutions: list[str],
    progress: Progress | None = None,
) -> CellOutcome:
    """Evaluate one (model, dataset) pair at every requested resolution, resuming what is stored."""
    key = RunKey(model.spec, model.fingerprint(), dataset.name, dataset.fingerprint(), dataset.split, config.protocol)
    run_id = store.run_id(key, provenance(model, dataset, config, device))
    outcome = CellOutcome(model.spec, dataset.name, run_id, resolutions)
    if config.force:
        store.reset_run(run_id, resolutions)
    finished = store.finished_resolutions(run_id)
    pending = [r for r in resolutions if r not in finished]
    outcome.reused = [r for r in resolutions if r in finished]
    if not pending:
        return outcome

    classifier = cached_classifier(model, dataset.classnames, dataset.templates, Path(config.db).parent / "cache" / "classifiers")
    classifier = classifier.to(device)
    start = min(store.completed_prefix(run_id, r) for r in pending)
    maker = ViewMaker(config.protocol, model.image_size, [r if r == "native" else int(r) for r in pending], model.family)
    loader = torch.utils.data.DataLoader(
        _Views(dataset, maker, start, model.image_size),
        batch_size=config.batch_size,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    task = None
    if progress is not None:
        task = progress.add_task(f"{model.spec} · {dataset.name}", total=len(dataset), completed=start)

    chunk: dict[str, list] = {"index": [], "label": [], "ok": [], **{r: [] for r in pending}}

    def flush() -> None:
        if not chunk["index"]:
            return
        store.add_chunk(
            run_id,
            int(chunk["index"][0][0]),
            np.concatenate(chunk["label"]),
            np.concatenate(chunk["ok"]),
            {r: np.concatenate(chunk[r]) for r in pending},
        )
        for values in chunk.values():
            values.clear()

    # The side in pixels each view had before it was brought to native size.
    sides = {r: model.image_size if r == "native" else int(r) for r in pending}
    with torch.inference_mode(), _autocast(device, config.precision):
        for indices, labels, ok, views in loader:
            views = views.to(device, non_blocking=True)
            for position, resolution in enumerate(pending):
                pixels = views[:, position].float().div_(255)
                if model.accepts_source_resolution:  # e.g. resolution-conditioned LR-TK0 tokens
                    embeddings = model.encode_image(pixels, source_resolution=sides[resolution])
                else:
                    embeddings = model.encode_image(pixels)
                scores = logits(model, embeddings, classifier)
                chunk[resolution].append(top_k(scores, 5).cpu().numpy().astype(np.int32))
            chunk["index"].append(indices.numpy())
            chunk["label"].append(labels.numpy())
            chunk["ok"].append(ok.numpy())
            outcome.skipped_images.extend(dataset.describe(int(i)) for i, good in zip(indices, ok) if not good)
            if sum(len(x) for x in chunk["index"]) >= config.chunk_size:
                flush()
            if task is not None:
                progress.advance(task, len(indices))
        flush()

    for resolution in pending:
        store.finish_resolution(run_id, resolution, len(dataset.classnames), sides[resolution])
    outcome.computed = pending
    if task is not None:
        progress.update(task, completed=len(dataset))
    return outcome


def _progress(console: Console | None) -> Progress | contextlib.nullcontext:
    if console is None:
        return contextlib.nullcontext()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("images"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def run(config: EvalConfig, console: Console | None = None) -> tuple[list[dict], list[CellOutcome]]:
    """Execute the grid; returns the stored result rows of every requested cell and what each cell did.

    A suite or `all` models run as a batch that keeps going past missing data (suites.run_batch).
    """
    from . import suites  # lazy: suites builds on this module

    if suites.is_batch(config):
        batch = suites.run_batch(config, console)
        return batch.rows, batch.outcomes
    config, _, _ = suites.resolve_config(config)
    validate(config)
    _check_resolutions_fit(config)
    device = resolve_device(config.device)
    # Datasets load (and fail) before any model is loaded or anything is written.
    datasets = [load_dataset(name, config.data_root, config.split, config.download).limit(config.limit) for name in config.datasets]
    torch.manual_seed(0)
    outcomes: list[CellOutcome] = []
    store: ResultStore | None = None
    try:
        with _progress(console) as progress:
            for spec in config.models:
                model = load_model(spec, config.weights, str(device))
                resolutions = [str(r) for r in parse_resolutions(config.resolutions, model.image_size, model.default_resolutions)]
                for dataset in datasets:
                    store = store or ResultStore(config.db)
                    outcomes.append(evaluate_cell(store, model, dataset, config, device, resolutions, progress))
                del model
        wanted = {(o.run_id, r) for o in outcomes for r in o.resolutions}
        rows = [row for row in (store.results() if store else []) if (row["run_id"], row["resolution"]) in wanted]
    finally:
        if store is not None:
            store.close()
    return rows, outcomes


def summarize_skips(rows: list[dict], outcomes: Iterable[CellOutcome]) -> list[str]:
    """One line per run that skipped unreadable images (counted in the store, examples from this pass)."""
    examples = {o.run_id: o.skipped_images for o in outcomes}
    skipped: dict[int, tuple[str, str, int]] = {}
    for row in rows:
        if row["n_skipped"]:
            skipped[row["run_id"]] = (row["model_spec"], row["dataset"], row["n_skipped"])
    lines = []
    for run_id, (model, dataset, count) in skipped.items():
        seen = examples.get(run_id) or []
        example = f" (e.g. {', '.join(seen[:3])})" if seen else ""
        lines.append(f"{model} · {dataset}: {count} unreadable image(s) skipped and counted{example}")
    return lines
