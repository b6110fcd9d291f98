"""The in-process executor: one device, model by model, each image decoded once.

`LocalExecutor` loads each model once, builds its text classifier once (cached on disk), and for each unit
streams the images of its range through DataLoader workers that decode each image once and make all its
views together (`base.ImageViews`). `predict_range` is the compute of one range and touches no store.
Predictions are committed in whole chunks, so a killed run resumes from the last chunk and never
duplicates a row.

Error policy (`plan.policy`): `stop` raises the first UserError; `skip` records it as a `Skip` and goes on.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator

import torch
from rich.progress import Progress

from .. import loader
from ..data import ZeroShotDataset
from ..degrade import ViewMaker
from ..device import autocast, resolve_device
from ..errors import UserError
from ..leases import Owner
from ..models import ModelSpec, ZeroShotModel
from ..plan import CellOutcome, EvalConfig, Plan, WorkUnit
from ..resolution import Resolution
from ..store import LeaseLost, ResultStore
from ..zeroshot import cached_classifier
from .base import (BatchLines, CellExecutor, Chunk, ChunkParts, EvalResult, ImageViews, ModelFacts, add_bar,
                   finish_cell, open_cell, score_views)


def predict_range(model: ZeroShotModel, dataset: ZeroShotDataset, classifier: torch.Tensor,
                  resolutions: tuple[Resolution, ...], start: int, stop: int, config: EvalConfig,
                  device: torch.device, advance: Callable[[int], None] = lambda n: None) -> Iterator[Chunk]:
    """Top-5 predictions of images [start, stop) at every resolution, in chunks of `config.chunk_size`.

    Each image is decoded once in `config.workers` DataLoader workers, which make all its views; on a CUDA
    device with the canonical protocol they make the native crop only and the low resolutions are
    resampled batched on `device` (`ViewMaker.split`); a model that makes its own up-step (super-resolution)
    gets the r x r images there instead. `classifier` is the model's text classifier on `device`. Writes
    nothing.
    """
    maker, finish = ViewMaker(config.protocol, model.image_size, resolutions, model.family).split(
        device.type == "cuda", upsample=not model.upsamples_low_views)
    images = torch.utils.data.DataLoader(
        ImageViews(dataset, maker, start, stop), batch_size=config.batch_size, num_workers=config.workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
    )
    parts = ChunkParts(resolutions)
    with torch.inference_mode(), autocast(device, config.precision):
        for indices, labels, ok, views in images:
            top5 = score_views(model, classifier, finish(views.to(device, non_blocking=True)), resolutions)
            unreadable = [dataset.describe(int(i)) for i, good in zip(indices, ok) if not good]
            parts.add(indices.numpy(), labels.numpy(), ok.numpy(), top5, unreadable)
            if len(parts) >= config.chunk_size:
                yield parts.take()
            advance(len(indices))
        if len(parts):
            yield parts.take()


def run_unit(store: ResultStore, model: ZeroShotModel, dataset: ZeroShotDataset, unit: WorkUnit,
             resolutions: tuple[Resolution, ...], config: EvalConfig, device: torch.device,
             progress: Progress | None = None, owner: Owner | None = None) -> CellOutcome:
    """Evaluate one unit in this process, resuming from what the store holds for these weights, and finish
    its cells when the unit covers the whole dataset.

    Only cells this process claims (`ResultStore.claim`, as `owner`) are computed; those a live process
    holds are left in `CellOutcome.held`, those finished meanwhile are reused. With `config.force` the
    claimed cells are reset first.
    """
    owner = owner or Owner.me()
    outcome, pending = open_cell(store, ModelFacts.of(model, device), dataset, resolutions, config, owner)
    if not pending:
        return outcome
    classifier = cached_classifier(model, dataset.classnames, dataset.templates,
                                   Path(config.db).parent / "cache" / "classifiers").to(device)
    start = max(unit.start, min(store.completed_prefix(outcome.run_id, r) for r in pending))
    advance = add_bar(progress, f"{model.spec} · {dataset.name}", unit.stop - unit.start, start - unit.start)
    try:
        for chunk in predict_range(model, dataset, classifier, pending, start, unit.stop, config, device, advance):
            store.add_chunk(outcome.run_id, chunk.start, chunk.labels, chunk.ok, chunk.top5, owner=owner)
            outcome.skipped_images.extend(chunk.unreadable)
        finish_cell(store, outcome, pending, dataset, model.image_size, unit, owner)
    except LeaseLost:
        # Another process took these cells over after our heartbeats stopped: it finishes them.
        store.release(owner, outcome.run_id, pending)
        outcome.held.update({r: "another lr0fm process" for r in pending})
    return outcome


class LocalExecutor(CellExecutor):
    """Runs a plan in this process on one device, model by model."""

    @contextlib.contextmanager
    def _session(self, work: Plan) -> Iterator[None]:
        self.device = resolve_device(work.config.device)
        with super()._session(work):
            yield

    def _run_model(self, work: Plan, spec: ModelSpec, units: list[WorkUnit], result: EvalResult,
                   progress: Progress | None, lines: BatchLines | None, owner: Owner,
                   retry: list[CellOutcome] | None = None) -> None:
        try:
            model = loader.load(spec, str(self.device))
            resolutions, dropped = work.resolutions_for(model.image_size)
        except UserError as error:
            self.record_model_skip(work, spec, units, result, lines, error)
            return
        if retry is None:
            self.record_dropped(spec, model.image_size, dropped, result)
        for unit, again, wanted, config in self.passes(units, resolutions, work.config, retry):
            try:
                outcome = run_unit(self.store, model, work.datasets[unit.dataset], unit, wanted, config, self.device,
                                   progress, owner)
            except UserError as error:
                outcome = error
            self.record_unit(spec, unit, outcome, result, lines, again)
        del model  # freed before the next model loads


__all__ = ["LocalExecutor", "predict_range", "run_unit"]
