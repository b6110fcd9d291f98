"""What every executor shares: the result of a run, the cell bookkeeping around the store, the decode and
score steps of a batch, and the run loop that claims, computes, waits for and collects cells.

An executor subclasses `CellExecutor` and says how one model's units are computed (`_run_model`): in this
process (`local.LocalExecutor`) or on a cluster (`cluster.RayExecutor`). Everything around that (cells
already stored, leases and their heartbeat, waiting for cells another process holds, the rows at the end,
batch lines and the error policy) is written once, here.
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

from .. import __version__
from ..data import ZeroShotDataset
from ..data.base import text_hash
from ..degrade import ViewMaker, to_rgb
from ..errors import UserError
from ..leases import Heartbeat, Owner
from ..models import ModelSpec, ZeroShotModel
from ..plan import EVERY, CellOutcome, EvalConfig, Plan, Skip, WorkUnit
from ..resolution import Resolution
from ..store import ResultStore, RunKey
from ..suites import Suite
from ..zeroshot import logits, top_k

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


# --------------------------------------------------------------------------------------------------
# One model, one batch: the facts a run record needs, decoding, scoring

@dataclass(frozen=True)
class ModelFacts:
    """What the run record needs to know of a loaded model, without the model (it may live on a worker).

    `upsamples_low_views`: the model makes its own up-step (`ZeroShotModel.upsamples_low_views`);
    `super_resolution`: its network's file, sha256, architecture and scale (`ZeroShotModel.super_resolution`),
    or None."""

    spec: str
    fingerprint: str
    family: str
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: str
    upsamples_low_views: bool = False
    super_resolution: dict | None = None

    @classmethod
    def of(cls, model: ZeroShotModel, device: torch.device) -> ModelFacts:
        return cls(model.spec, model.fingerprint(), model.family, model.image_size, tuple(model.image.mean),
                   tuple(model.image.std), str(device), model.upsamples_low_views,
                   model.super_resolution)


def provenance(facts: ModelFacts, dataset: ZeroShotDataset, config: EvalConfig) -> dict:
    """The run record: what was evaluated, how, and with which library versions."""
    import open_clip
    import transformers

    return {
        "model_spec": facts.spec,
        "weights_file": str(Path(config.weights).resolve()) if config.weights else None,
        "model_fingerprint": facts.fingerprint,
        **({"super_resolution": facts.super_resolution} if facts.super_resolution else {}),
        "family": facts.family,
        "native_pixels": facts.image_size,
        "mean": list(facts.mean),
        "std": list(facts.std),
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
        "device": facts.device,
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


class ImageViews(torch.utils.data.Dataset):
    """Samples [start, stop) of a dataset as (index, label, ok, views uint8 (V, 3, n, n)).

    Each image is decoded once and all its views are made together; an image that cannot be read gives
    zero views and ok False (counted and skipped, never fatal).
    """

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


def score_views(model: ZeroShotModel, classifier: torch.Tensor, views: torch.Tensor | list[torch.Tensor],
                resolutions: tuple[Resolution, ...]) -> dict[Resolution, np.ndarray]:
    """Top-5 class indices (int32, (B, 5)) per resolution of a batch of views on the model's device: uint8
    (B, V, 3, n, n), or one uint8 (B, 3, s, s) per resolution (`DeviceViews` for a model that makes its own
    up-step); call under inference mode and autocast."""
    top5 = {}
    per_resolution = views.unbind(1) if isinstance(views, torch.Tensor) else views
    for resolution, batch in zip(resolutions, per_resolution, strict=True):
        pixels = batch.float().div_(255)
        if model.accepts_source_resolution:  # e.g. resolution-conditioned LR-TK0 tokens
            embeddings = model.encode_image(pixels, source_resolution=resolution.side(model.image_size))
        else:
            embeddings = model.encode_image(pixels)
        top5[resolution] = top_k(logits(model, embeddings, classifier), 5).cpu().numpy().astype(np.int32)
    return top5


@dataclass
class Chunk:
    """Predictions of images [start, start + len(labels)) at every resolution of a range."""

    start: int
    labels: np.ndarray
    ok: np.ndarray
    top5: dict[str, np.ndarray]
    unreadable: list[str]


class ChunkParts:
    """Scored batches gathered until they make a chunk."""

    def __init__(self, resolutions: tuple[Resolution, ...]):
        self.resolutions = resolutions
        self._clear()

    def _clear(self) -> None:
        self.index: list[np.ndarray] = []
        self.label: list[np.ndarray] = []
        self.ok: list[np.ndarray] = []
        self.top5: dict[Resolution, list[np.ndarray]] = {r: [] for r in self.resolutions}
        self.unreadable: list[str] = []

    def __len__(self) -> int:
        return sum(len(part) for part in self.index)

    def add(self, indices, labels, ok, top5: dict[Resolution, np.ndarray], unreadable: list[str]) -> None:
        """One scored batch: sample indices, labels, readable mask, top-5 per resolution, and the
        descriptions of its unreadable images."""
        self.index.append(np.asarray(indices))
        self.label.append(np.asarray(labels))
        self.ok.append(np.asarray(ok, dtype=bool))
        for resolution in self.resolutions:
            self.top5[resolution].append(top5[resolution])
        self.unreadable.extend(unreadable)

    def take(self) -> Chunk:
        done = Chunk(int(self.index[0][0]), np.concatenate(self.label), np.concatenate(self.ok),
                     {r: np.concatenate(self.top5[r]) for r in self.resolutions}, list(self.unreadable))
        self._clear()
        return done


# --------------------------------------------------------------------------------------------------
# Cells in the store

def open_cell(store: ResultStore, facts: ModelFacts, dataset: ZeroShotDataset, resolutions: tuple[Resolution, ...],
              config: EvalConfig, owner: Owner) -> tuple[CellOutcome, tuple[Resolution, ...]]:
    """The run of (model, dataset) in the store and the resolutions this process claims to compute.

    Cells finished already go to `CellOutcome.reused`, those a live process holds to `CellOutcome.held`;
    with `config.force` the claimed cells are reset first.

    Returns:
        (the cell's outcome so far, the claimed resolutions in the order asked for).
    """
    key = RunKey(facts.spec, facts.fingerprint, dataset.name, dataset.fingerprint(), dataset.split, config.protocol)
    run_id = store.run_id(key, provenance(facts, dataset, config))
    outcome = CellOutcome(facts.spec, dataset.name, run_id, list(resolutions))
    claim = store.claim(run_id, resolutions, owner, force=config.force)
    if config.force and claim.mine:
        store.reset_run(run_id, claim.mine)
    outcome.reused = [r for r in resolutions if r in claim.finished]
    outcome.held = dict(claim.held)
    return outcome, tuple(r for r in resolutions if r in claim.mine)


def finish_cell(store: ResultStore, outcome: CellOutcome, pending: tuple[Resolution, ...], dataset: ZeroShotDataset,
                native: int, unit: WorkUnit, owner: Owner) -> None:
    """Score the cells of `pending` when `unit` covers the whole dataset, and mark them computed."""
    if unit.start == 0 and unit.stop == len(dataset):
        for resolution in pending:
            store.finish_resolution(outcome.run_id, resolution, len(dataset.classnames), resolution.side(native),
                                    owner=owner)
    outcome.computed = list(pending)


# --------------------------------------------------------------------------------------------------
# The run loop

class CellExecutor(Executor):
    """Runs a plan model by model into the results store; subclasses compute one model's units.

    Cells another process is computing in the same database are left to it: with `config.wait` (the
    default) the executor waits for them at the end and computes any whose owner died; without, they are
    listed in `EvalResult.busy`.
    """

    poll_s = 2.0  # how often a waiting executor looks at the cells another process holds

    def run(self, work: Plan, console: Console | None = None) -> EvalResult:
        config = work.config
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
            with self._session(work), _progress(console) as progress, _heartbeat(Path(config.db), owner):
                lines = BatchLines(work, progress) if work.batch else None
                for spec, stored, units in work.by_model():
                    for cell in stored:
                        result.outcomes.append(cell)
                        if lines:
                            lines.say(f"{lines.step()} {escape(cell.model)} · {escape(cell.dataset)}: already stored")
                    if units:
                        self._run_model(work, spec, units, result, progress, lines, owner)
                if config.wait:
                    self._wait(work, result, progress, owner)
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

    @property
    def store(self) -> ResultStore:
        """The results database, opened when the first cell is written."""
        if self._store is None:
            self._store = ResultStore(self._db)
        return self._store

    @contextlib.contextmanager
    def _session(self, work: Plan) -> Iterator[None]:
        """Whatever the executor holds for the whole run (a device, a cluster connection)."""
        self._db = Path(work.config.db)
        yield

    @abstractmethod
    def _run_model(self, work: Plan, spec: ModelSpec, units: list[WorkUnit], result: EvalResult,
                   progress: Progress | None, lines: BatchLines | None, owner: Owner,
                   retry: list[CellOutcome] | None = None) -> None:
        """Load `spec` once and compute its units, appending an outcome per unit to `result.outcomes` and
        the units with held cells to `self._held`. With `retry`, the units are earlier outcomes' held cells
        (their resolutions are `retry[i].held`) and what they give is merged into those outcomes instead.

        A UserError (weights that cannot be had, a dataset that cannot be read) stops the run outside a
        batch (`lines` None) and is a Skip within one (`record_model_skip`, `record_unit`)."""

    @staticmethod
    def passes(units: list[WorkUnit], resolutions: tuple[Resolution, ...], config: EvalConfig,
               retry: list[CellOutcome] | None) -> Iterator[tuple[WorkUnit, CellOutcome | None, tuple[Resolution, ...],
                                                                 EvalConfig]]:
        """(unit, the earlier outcome it completes, resolutions to compute, config) for each unit: a first pass
        computes `resolutions` as configured; a pass over cells another process left (`retry`) computes only
        those, and never resets them (no force)."""
        for position, unit in enumerate(units):
            if retry is None:
                yield unit, None, resolutions, config
            else:
                yield unit, retry[position], tuple(retry[position].held), replace(config, force=False)

    def record_model_skip(self, work: Plan, spec: ModelSpec, units: list[WorkUnit], result: EvalResult,
                          lines: BatchLines | None, error: UserError) -> None:
        """A model that could not be loaded: raise outside a batch, skip its units within one."""
        if lines is None:
            raise error
        every = len(units) == len(work.datasets)
        result.skipped.append(Skip(str(spec), EVERY if every else ", ".join(u.dataset for u in units), str(error)))
        lines.say(f"{lines.step(len(units))} {escape(str(spec))}: [yellow]skipped[/yellow] (see the end)")

    def record_dropped(self, spec: ModelSpec, native: int, dropped: tuple[Resolution, ...], result: EvalResult) -> None:
        if dropped:
            result.skipped.append(Skip(str(spec), EVERY, f"{', '.join(dropped)} px "
                                       f"{'is' if len(dropped) == 1 else 'are'} not below its native "
                                       f"{native} px, so those cells stay empty"))

    def record_unit(self, spec: ModelSpec, unit: WorkUnit, outcome: CellOutcome | UserError, result: EvalResult,
                    lines: BatchLines | None, retry: CellOutcome | None = None) -> None:
        """File what one unit gave: its outcome (or the error that stopped it) and its batch line."""
        if isinstance(outcome, UserError):
            if lines is None:
                raise outcome
            result.skipped.append(Skip(str(spec), unit.dataset, str(outcome)))
            lines.say(f"{lines.step()} {escape(str(spec))} · {escape(unit.dataset)}: [yellow]skipped[/yellow] (see the end)")
            return
        if retry is not None:
            retry.merge(outcome)
            return
        result.outcomes.append(outcome)
        if outcome.held:
            self._held.append((spec, unit, outcome))
        if lines:
            again = f", {len(outcome.reused)} already stored" if outcome.reused else ""
            busy = f", {len(outcome.held)} left to another process" if outcome.held else ""
            lines.say(f"{lines.step()} {escape(str(spec))} · {escape(unit.dataset)}: "
                      f"{len(outcome.computed)} computed{again}{busy}")

    def _wait(self, work: Plan, result: EvalResult, progress: Progress | None, owner: Owner) -> None:
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
                claim = self.store.claim(outcome.run_id, outcome.held, owner, dry_run=True)
                outcome.reused += claim.finished
                outcome.held = {r: who for r, who in outcome.held.items() if r not in claim.finished}
                if claim.mine:
                    free.setdefault(spec, []).append((unit, outcome))
            for spec, pairs in free.items():
                self._run_model(work, spec, [unit for unit, _ in pairs], result, progress, None, owner,
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


class BatchLines:
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
    """Progress bars on `console` (None: none). The display starts with the first bar, so a run that fails
    before any image is read leaves no empty line above its error."""
    if console is None:
        yield None
        return
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("images"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
    try:
        yield progress
    finally:
        if progress.live.is_started:  # a display never started would still print a newline when stopped
            progress.stop()


def add_bar(progress: Progress | None, description: str, total: int, completed: int = 0) -> Callable[[int], None]:
    """A progress bar (started on first use); returns the function that advances it by n images."""
    if progress is None:
        return lambda n: None
    task = progress.add_task(description, total=total, completed=completed)
    progress.start()
    return lambda n: progress.advance(task, n)


__all__ = ["BatchLines", "CellExecutor", "Chunk", "ChunkParts", "EvalResult", "Executor", "ImageViews", "ModelFacts",
           "add_bar", "finish_cell", "open_cell", "provenance", "score_views"]
