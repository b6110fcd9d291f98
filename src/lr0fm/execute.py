"""Executors: run a Plan's work units into the results store.

An `Executor` turns a `plan.Plan` into an `EvalResult`. `LocalExecutor` runs in this process, model by
model: it loads each model once, builds its text classifier once (cached on disk), and for each unit
streams the images of its range through DataLoader workers that decode each image once and make all its
views together (`degrade.ViewMaker`). `predict_range` is the compute of one range and touches no store, so
an executor for many machines can run it on its workers and leave the writing to one process. Predictions
are committed in whole chunks, so a killed run resumes from the last chunk and never duplicates a row.

Error policy (`plan.policy`): `stop` raises the first UserError; `skip` records it as a `Skip` and goes on.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape, render
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import __version__, loader
from .data import ZeroShotDataset
from .data.base import text_hash
from .degrade import ViewMaker, to_rgb
from .device import autocast, resolve_device
from .errors import UserError
from .leases import Heartbeat, Owner
from .models import ModelSpec, ZeroShotModel
from .plan import EVERY, CellOutcome, EvalConfig, Plan, Skip, WorkUnit
from .resolution import Resolution
from .store import LeaseLost, ResultStore, RunKey
from .suites import Suite
from .zeroshot import cached_classifier, logits, top_k

log = logging.getLogger("lr0fm.execute")


@dataclass
class EvalResult:
    """What one evaluation did: the stored rows of every requested cell, per-cell outcomes, and skips.

    Attributes:
        rows: the results rows (`ResultStore.results()`) of every cell computed or reused.
        outcomes: one CellOutcome per (model, dataset) that ran or was already stored.
        skipped: planned cells that could not run, with the reason (policy skip only).
        not_planned: unsupported registry models left out of `all`.
        models, datasets: the planned grid, in order; suite: the suite, if one was run.
        batch: True for a suite or `all` (policy skip); db: the results database.
    """

    rows: list[dict] = field(default_factory=list)
    outcomes: list[CellOutcome] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    not_planned: list[Skip] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    suite: Suite | None = None
    batch: bool = False
    db: Path = Path()

    @property
    def computed(self) -> int:
        """Cells (model, dataset, resolution) computed by this run."""
        return sum(len(o.computed) for o in self.outcomes)

    @property
    def reused(self) -> int:
        """Cells found finished in the database."""
        return sum(len(o.reused) for o in self.outcomes)

    @property
    def busy(self) -> list[tuple[str, str, list[str], str]]:
        """(model, dataset, resolutions, "HOST pid N") of the cells left to another process (no wait)."""
        return [(o.model, o.dataset, list(o.held), ", ".join(sorted(set(o.held.values()))))
                for o in self.outcomes if o.held]

    def unreadable_lines(self) -> list[str]:
        """One line per run that skipped unreadable images (counted in the store, examples from this pass)."""
        examples = {o.run_id: o.skipped_images for o in self.outcomes}
        skipped: dict[int, tuple[str, str, int]] = {}
        for row in self.rows:
            if row["n_skipped"]:
                skipped[row["run_id"]] = (row["model_spec"], row["dataset"], row["n_skipped"])
        lines = []
        for run_id, (model, dataset, count) in skipped.items():
            seen = examples.get(run_id) or []
            example = f" (e.g. {', '.join(seen[:3])})" if seen else ""
            lines.append(f"{model} · {dataset}: {count} unreadable image(s) skipped and counted{example}")
        return lines

    def skip_rows(self) -> list[tuple[str, str, str]]:
        """(models, datasets, reason) for the end-of-run table; left-out unsupported models grouped by reason."""
        lines = [(s.model or "all models", s.dataset or "all datasets", s.reason) for s in self.skipped]
        by_reason: dict[str, list[str]] = {}
        for s in self.not_planned:
            by_reason.setdefault(s.reason, []).append(s.model)
        lines += [(", ".join(names), "not planned", f"unsupported: {reason}") for reason, names in by_reason.items()]
        return lines


class Executor(ABC):
    """Runs a plan. Implementations decide where images are decoded and models run; the planner and the
    store stay as they are."""

    @abstractmethod
    def run(self, work: Plan, console: Console | None = None) -> EvalResult:
        """Execute every unit of `work` (rich progress on `console`, if given) and return what was done."""


@dataclass
class Chunk:
    """Predictions of images [start, start + len(labels)) at every resolution of a range."""

    start: int
    labels: np.ndarray
    ok: np.ndarray
    top5: dict[str, np.ndarray]
    unreadable: list[str]


class _Views(torch.utils.data.Dataset):
    """Samples [start, stop) of a dataset as (index, label, ok, views uint8 (V, 3, n, n))."""

    def __init__(self, dataset: ZeroShotDataset, maker: ViewMaker, start: int, stop: int):
        self.dataset, self.maker, self.start, self.stop = dataset, maker, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, position: int):
        index = self.start + position
        try:
            views = self.maker(to_rgb(self.dataset.read_image(index)))
            ok = True
        except Exception:  # corrupt, truncated or unreadable file: counted and skipped, never fatal
            native = self.maker.native
            views = torch.zeros(len(self.maker.resolutions), 3, native, native, dtype=torch.uint8)
            ok = False
        return index, self.dataset.labels[index], ok, views


def predict_range(model: ZeroShotModel, dataset: ZeroShotDataset, classifier: torch.Tensor,
                  resolutions: tuple[Resolution, ...], start: int, stop: int, config: EvalConfig,
                  device: torch.device, advance: Callable[[int], None] = lambda n: None) -> Iterator[Chunk]:
    """Top-5 predictions of images [start, stop) at every resolution, in chunks of `config.chunk_size`.

    Each image is decoded once and all its views are made together in `config.workers` DataLoader workers;
    `classifier` is the model's text classifier on `device`. Writes nothing.
    """
    maker = ViewMaker(config.protocol, model.image_size, resolutions, model.family)
    images = torch.utils.data.DataLoader(
        _Views(dataset, maker, start, stop), batch_size=config.batch_size, num_workers=config.workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
    )
    parts: dict[str, list] = {"index": [], "label": [], "ok": [], **{r: [] for r in resolutions}}
    unreadable: list[str] = []

    def chunk() -> Chunk:
        done = Chunk(int(parts["index"][0][0]), np.concatenate(parts["label"]), np.concatenate(parts["ok"]),
                     {r: np.concatenate(parts[r]) for r in resolutions}, list(unreadable))
        for values in parts.values():
            values.clear()
        unreadable.clear()
        return done

    with torch.inference_mode(), autocast(device, config.precision):
        for indices, labels, ok, views in images:
            views = views.to(device, non_blocking=True)
            for position, resolution in enumerate(resolutions):
                pixels = views[:, position].float().div_(255)
                if model.accepts_source_resolution:  # e.g. resolution-conditioned LR-TK0 tokens
                    embeddings = model.encode_image(pixels, source_resolution=resolution.side(model.image_size))
                else:
                    embeddings = model.encode_image(pixels)
                parts[resolution].append(top_k(logits(model, embeddings, classifier), 5).cpu().numpy().astype(np.int32))
            parts["index"].append(indices.numpy())
            parts["label"].append(labels.numpy())
            parts["ok"].append(ok.numpy())
            unreadable.extend(dataset.describe(int(i)) for i, good in zip(indices, ok) if not good)
            if sum(len(x) for x in parts["index"]) >= config.chunk_size:
                yield chunk()
            advance(len(indices))
        if parts["index"]:
            yield chunk()


def provenance(model: ZeroShotModel, dataset: ZeroShotDataset, config: EvalConfig, device: torch.device) -> dict:
    """The run record: what was evaluated, how, and with which library versions."""
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
    key = RunKey(model.spec, model.fingerprint(), dataset.name, dataset.fingerprint(), dataset.split, config.protocol)
    run_id = store.run_id(key, provenance(model, dataset, config, device))
    outcome = CellOutcome(model.spec, dataset.name, run_id, list(resolutions))
    claim = store.claim(run_id, resolutions, owner, force=config.force)
    if config.force and claim.mine:
        store.reset_run(run_id, claim.mine)
    pending = tuple(r for r in resolutions if r in claim.mine)
    outcome.reused = [r for r in resolutions if r in claim.finished]
    outcome.held = dict(claim.held)
    if not pending:
        return outcome

    classifier = cached_classifier(model, dataset.classnames, dataset.templates,
                                   Path(config.db).parent / "cache" / "classifiers").to(device)
    start = max(unit.start, min(store.completed_prefix(run_id, r) for r in pending))
    task = None
    if progress is not None:
        task = progress.add_task(f"{model.spec} · {dataset.name}", total=unit.stop - unit.start,
                                 completed=start - unit.start)
        progress.start()
    advance = (lambda n: progress.advance(task, n)) if task is not None else (lambda n: None)
    try:
        for chunk in predict_range(model, dataset, classifier, pending, start, unit.stop, config, device, advance):
            store.add_chunk(run_id, chunk.start, chunk.labels, chunk.ok, chunk.top5, owner=owner)
            outcome.skipped_images.extend(chunk.unreadable)
        if unit.start == 0 and unit.stop == len(dataset):
            for resolution in pending:
                store.finish_resolution(run_id, resolution, len(dataset.classnames),
                                        resolution.side(model.image_size), owner=owner)
    except LeaseLost:
        # Another process took these cells over after our heartbeats stopped: it finishes them.
        store.release(owner, run_id, pending)
        outcome.held.update({r: "another lr0fm process" for r in pending})
        return outcome
    outcome.computed = list(pending)
    if task is not None:
        progress.update(task, completed=unit.stop - unit.start)
    return outcome


class LocalExecutor(Executor):
    """Runs a plan in this process on one device, model by model.

    Cells another process is computing in the same database are left to it: with `config.wait` (the
    default) the executor waits for them at the end and computes any whose owner died; without, they are
    listed in `EvalResult.busy`.
    """

    poll_s = 2.0  # how often a waiting executor looks at the cells another process holds

    def run(self, work: Plan, console: Console | None = None) -> EvalResult:
        config = work.config
        device = resolve_device(config.device)
        result = EvalResult(skipped=list(work.skipped), not_planned=list(work.not_planned),
                            models=[str(m) for m in work.models], datasets=list(work.dataset_names), suite=work.suite,
                            batch=work.batch, db=Path(config.db))
        if not work.models:  # only unsupported models were named
            return result
        torch.manual_seed(0)
        owner = Owner.me()
        self._store: ResultStore | None = None
        self._held: list[tuple[ModelSpec, WorkUnit, CellOutcome]] = []  # cells other processes compute
        try:
            with _progress(console) as progress, _heartbeat(Path(config.db), owner):
                lines = _BatchLines(work, progress) if work.batch else None
                for spec, stored, units in work.by_model():
                    for cell in stored:
                        result.outcomes.append(cell)
                        if lines:
                            lines.say(f"{lines.step()} {escape(cell.model)} · {escape(cell.dataset)}: already stored")
                    if units:
                        self._run_model(work, spec, units, result, device, progress, lines, owner)
                if config.wait:
                    self._wait(work, result, device, progress, owner)
            self._store = self._store or (ResultStore(config.db) if Path(config.db).is_file() else None)
            if self._store is not None:
                wanted = {(o.run_id, r) for o in result.outcomes for r in o.resolutions}
                result.rows = [row for row in self._store.results() if (row["run_id"], row["resolution"]) in wanted]
        finally:
            if self._store is not None:
                with contextlib.suppress(Exception):  # a full or read-only disk must not hide the first error
                    self._store.release(owner)
                self._store.close()
        return result

    def _run_model(self, work: Plan, spec: ModelSpec, units: list[WorkUnit], result: EvalResult,
                   device: torch.device, progress: Progress | None, lines: _BatchLines | None, owner: Owner,
                   retry: list[CellOutcome] | None = None) -> None:
        """Load `spec` once and run its units; with `retry`, the units are earlier outcomes' held cells and
        what they give is merged into those outcomes."""
        config = work.config
        try:
            model = loader.load(spec, str(device))
            resolutions, dropped = work.resolutions_for(model.image_size)
        except UserError as error:
            if lines is None:
                raise
            every = len(units) == len(work.datasets)
            result.skipped.append(Skip(str(spec), EVERY if every else ", ".join(u.dataset for u in units), str(error)))
            lines.say(f"{lines.step(len(units))} {escape(str(spec))}: [yellow]skipped[/yellow] (see the end)")
            return
        if dropped and retry is None:
            result.skipped.append(Skip(str(spec), EVERY, f"{', '.join(dropped)} px "
                                       f"{'is' if len(dropped) == 1 else 'are'} not below its native "
                                       f"{model.image_size} px, so those cells stay empty"))
        for position, unit in enumerate(units):
            self._store = self._store or ResultStore(config.db)
            wanted = resolutions if retry is None else tuple(retry[position].held)
            try:
                outcome = run_unit(self._store, model, work.datasets[unit.dataset], unit, wanted,
                                   config if retry is None else replace(config, force=False), device, progress, owner)
            except UserError as error:
                if lines is None:
                    raise
                result.skipped.append(Skip(str(spec), unit.dataset, str(error)))
                lines.say(f"{lines.step()} {escape(str(spec))} · {escape(unit.dataset)}: "
                          "[yellow]skipped[/yellow] (see the end)")
                continue
            if retry is not None:
                retry[position].merge(outcome)
                continue
            result.outcomes.append(outcome)
            if outcome.held:
                self._held.append((spec, unit, outcome))
            if lines:
                again = f", {len(outcome.reused)} already stored" if outcome.reused else ""
                busy = f", {len(outcome.held)} left to another process" if outcome.held else ""
                lines.say(f"{lines.step()} {escape(str(spec))} · {escape(unit.dataset)}: "
                          f"{len(outcome.computed)} computed{again}{busy}")
        del model  # freed before the next model loads

    def _wait(self, work: Plan, result: EvalResult, device: torch.device, progress: Progress | None,
              owner: Owner) -> None:
        """Wait for the cells other processes hold: reuse those they finish, compute those whose owner
        died (its lease expired) as soon as they are free."""
        said = False
        while True:
            held = [(spec, unit, o) for spec, unit, o in self._held if o.held]
            if not held:
                return
            if not said:
                say = _say(progress)
                holders = sorted(set().union(*(o.held.values() for _, _, o in held)))
                say(f"Waiting for {sum(len(o.held) for _, _, o in held)} cell(s) that another lr0fm process is "
                    f"computing ({', '.join(holders)}); Ctrl-C leaves them to it, --no-wait does not wait.")
                said = True
            free: dict[ModelSpec, list[tuple[WorkUnit, CellOutcome]]] = {}
            for spec, unit, outcome in held:
                claim = self._store.claim(outcome.run_id, outcome.held, owner, dry_run=True)
                outcome.reused += claim.finished
                outcome.held = {r: who for r, who in outcome.held.items() if r not in claim.finished}
                if claim.mine:
                    free.setdefault(spec, []).append((unit, outcome))
            for spec, pairs in free.items():
                self._run_model(work, spec, [unit for unit, _ in pairs], result, device, progress, None, owner,
                                retry=[outcome for _, outcome in pairs])
            if not free:
                time.sleep(self.poll_s)


def _heartbeat(db: Path, owner: Owner) -> Heartbeat:
    """The heartbeat of `owner`'s leases in `db`, on its own thread with a connection of its own."""
    local: list[ResultStore] = []

    def beat() -> None:
        if not local:
            if not db.is_file():  # nothing claimed before the database exists
                return
            local.append(ResultStore(db))
        local[0].heartbeat(owner)

    def done() -> None:
        for store in local:
            store.close()

    return Heartbeat(beat, done=done)


def _say(progress: Progress | None) -> Callable[[str], None]:
    """Where a line of rich markup goes: above the progress bars, or, with no console (the Python API), to
    the log as plain text."""
    if progress is not None:
        return progress.console.print
    return lambda line: log.info(render(line).plain)


class _BatchLines:
    """The one line per (model, dataset) of a batch: "[3/15] model · dataset: 5 computed"."""

    def __init__(self, work: Plan, progress: Progress | None):
        self.total = len(work.models) * len(work.datasets)
        self.done = 0
        self.say = _say(progress)
        suite = work.suite
        grid = ",".join(suite.resolutions) if suite else "resolutions as given"
        title = f"Suite {suite.name}" if suite else "Batch"
        missing = len(work.dataset_names) - len(work.datasets)
        self.say(f"{title}: {len(work.models)} model(s) × {len(work.datasets)} dataset(s) = {self.total} cell(s) at "
                 f"{grid}, {work.config.protocol} protocol"
                 + (f"; {missing} dataset(s) missing, listed at the end" if missing else ""))

    def step(self, count: int = 1) -> str:
        first, self.done = self.done + 1, self.done + count
        width = len(str(self.total))
        return f"[{first:>{width}}/{self.total}]" if count == 1 else f"[{first}-{self.done}/{self.total}]"


@contextlib.contextmanager
def _progress(console: Console | None) -> Iterator[Progress | None]:
    """Progress bars on `console` (None: none). The display starts with the first bar (`run_unit`), so a
    run that fails before any image is read leaves no empty line above its error."""
    if console is None:
        yield None
        return
    progress = _bars(console)
    try:
        yield progress
    finally:
        if progress.live.is_started:  # a display never started would still print a newline when stopped
            progress.stop()


def _bars(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("images"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


__all__ = ["Chunk", "EvalResult", "Executor", "LocalExecutor", "predict_range", "provenance", "run_unit"]
