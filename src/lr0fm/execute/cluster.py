"""The Ray executor: a plan on a Ray cluster, the driver the one writer of the results database.

Built on Ray Core (remote tasks and actors) rather than Ray Data. The unit of work, of retry and of
commit here is one *range* of a dataset (`WorkUnit.ranges(config.chunk_size)`, cut at the same image
numbers on every run), and each finished range is exactly one chunk the driver commits. With Core a range
is one future the driver waits for, retries when its worker dies and commits when it arrives; Ray Data's
`map_batches` would regroup the rows into blocks of its own, and the driver would have to put ranges back
together and track which rows of which range a lost block held.

One model at a time (model-major, as the in-process executor):

* **Model workers**: actors, one per GPU share (``--gpus-per-worker``, default 1 where the cluster has GPUs;
  on a CPU-only cluster one per node, or ``--model-workers``). Each loads the model once; the text
  classifier of a dataset is built once, by the first worker, and shared through the object store. A
  worker that dies is restarted by Ray (it loads the model again) and its ranges are sent again.
* **Decode tasks**: CPU tasks anywhere in the cluster, one per batch of a range, that read the images
  (from a path every node sees: shared storage) and make their views in uint8; for the canonical protocol
  on CUDA workers only the native crop, the low resolutions being resampled batched on the GPU
  (`ViewMaker.split`). Up to `IN_FLIGHT` ranges per worker are queued, so the CPUs decode the next range
  while the GPU runs the current one.
* **The driver** claims the cells (leases, as every executor does), skips the ranges the database holds
  already (resume per range, not only per prefix: a killed run leaves ranges committed out of order),
  commits each range the moment it arrives, and finishes a cell when its last range is in. A crash of the
  driver loses at most the ranges in flight.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from rich.progress import Progress

from .. import loader
from ..data import ZeroShotDataset
from ..degrade import DeviceViews, ViewMaker
from ..device import autocast, parse_precision, resolve_device
from ..errors import UserError
from ..leases import Owner
from ..models import ModelSpec
from ..plan import EVAL_PRECISIONS, CellOutcome, EvalConfig, Plan, WorkUnit
from ..resolution import Resolution
from ..store import LeaseLost
from ..zeroshot import cached_classifier
from .base import (BatchLines, CellExecutor, Chunk, ChunkParts, EvalResult, ImageViews, ModelFacts, add_bar,
                   finish_cell, open_cell, score_views)

log = logging.getLogger("lr0fm.execute")

IN_FLIGHT = 2  # ranges queued per model worker: one computing, one being decoded
MAX_TRIES = 3  # times a range is sent again after its worker died, before the run stops
KILL_HOOK = "LR0FM_TEST_KILL_WORKER"  # tests: a marker path; the first worker past it dies mid-range, once


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'lr0fm[ray]' (or pip install ray), then rerun.") from None
    return ray


# --------------------------------------------------------------------------------------------------
# What runs on the cluster

def decode_batch(dataset: ZeroShotDataset, maker: ViewMaker, start: int, stop: int) -> tuple:
    """Images [start, stop) decoded once each, with all their views: (indices, labels, ok, views uint8
    (B, V, 3, n, n), descriptions of the unreadable ones). A CPU task."""
    items = ImageViews(dataset, maker, start, stop)
    indices, labels, ok, views = torch.utils.data.default_collate([items[i] for i in range(len(items))])
    unreadable = [dataset.describe(int(i)) for i, good in zip(indices, ok) if not good]
    return indices.numpy(), labels.numpy(), ok.numpy(), views, unreadable


class ModelWorker:
    """One model loaded once on one worker's device; scores the decoded batches of a range.

    A model that cannot be loaded is not an actor failure: `facts` returns the error's sentence, so the
    driver can skip the model as the in-process executor does.
    """

    def __init__(self, spec: ModelSpec, config: EvalConfig):
        self.config = config
        self.classifiers: dict[str, torch.Tensor] = {}
        self.model = None
        try:
            self.device = resolve_device(config.device)
            parse_precision(config.precision, EVAL_PRECISIONS, self.device)
            self.model = loader.load(spec, str(self.device))
            self.error = ""
        except UserError as error:
            self.error = str(error)

    def facts(self) -> ModelFacts | str:
        return ModelFacts.of(self.model, self.device) if self.model is not None else self.error

    def classifier(self, classnames: list[str], templates: list[str], cache: str) -> torch.Tensor:
        """The text classifier of a dataset's class names and templates (on the CPU, for the object store)."""
        return cached_classifier(self.model, classnames, templates, Path(cache)).cpu()

    def predict(self, key: str, classifier: list, resolutions: tuple[Resolution, ...], finish: DeviceViews,
                batches: list) -> Chunk:
        """Top-5 of one range at `resolutions`, from its decode tasks' results (`batches`, in order), whose
        views `finish` completes on this worker's device (`ViewMaker.split`).

        `classifier` is a one-element list holding the classifier's object reference (a list, so Ray passes
        the reference and this worker fetches it once per dataset, not once per range)."""
        ray = _ray()
        if key not in self.classifiers:
            self.classifiers[key] = ray.get(classifier[0]).to(self.device)
        parts = ChunkParts(resolutions)
        with torch.inference_mode(), autocast(self.device, self.config.precision):
            for position, batch in enumerate(batches):
                indices, labels, ok, views, unreadable = ray.get(batch)
                views = finish(views.to(self.device, non_blocking=True))
                top5 = score_views(self.model, self.classifiers[key], views, resolutions)
                parts.add(indices, labels, ok, top5, unreadable)
                if position == 0:
                    _kill_hook(int(indices[0]))
        return parts.take()


def _kill_hook(start: int) -> None:
    """For tests: with LR0FM_TEST_KILL_WORKER=PATH set, the first worker to score a batch past image 0
    writes PATH and dies at once (os._exit), in the middle of its range; later workers find PATH and go on."""
    marker = os.environ.get(KILL_HOOK)
    if marker and start > 0 and not os.path.exists(marker):
        Path(marker).write_text(f"killed at image {start}\n")
        os._exit(1)


# --------------------------------------------------------------------------------------------------
# The driver

@dataclass
class _Cell:
    """One unit being computed: its outcome, the resolutions claimed, the ranges still to come."""

    unit: WorkUnit
    dataset: ZeroShotDataset
    outcome: CellOutcome
    pending: tuple[Resolution, ...]
    retry: CellOutcome | None
    ranges: list[tuple[int, int]] = field(default_factory=list)
    left: int = 0
    maker: ViewMaker | None = None  # what the decode tasks make of each image
    finish: DeviceViews | None = None  # what the model worker makes of each decoded batch
    stopped: bool = False  # no more ranges sent or committed: its lease was lost, or a worker raised `error`
    error: UserError | None = None


class RayExecutor(CellExecutor):
    """Runs a plan on a Ray cluster: CPU tasks decode and make views, model workers forward, this process
    commits (see the module docstring)."""

    @contextlib.contextmanager
    def _session(self, work: Plan) -> Iterator[None]:
        ray = _ray()
        config = work.config
        started = not ray.is_initialized()
        if started:
            # Without an address, a new cluster on this machine: never a stale one `ray start` left behind.
            address = config.address or os.environ.get("RAY_ADDRESS") or "local"
            _probe(address)
            try:
                ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR,
                         log_to_driver=False, configure_logging=True)
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = config.address or os.environ.get("RAY_ADDRESS") or "this machine"
                raise UserError(f"Cannot join the Ray cluster at {where} ({_first_line(error)}); start one with "
                                "`ray start --head` (or fix --address), or set RAY_AUTH_MODE=token if the cluster "
                                "uses token authentication, then rerun.") from None
        self._datasets: dict[str, Any] = {}  # dataset name -> object reference, put once per run
        self._plan_bar: Callable[[int], None] | None = None
        try:
            with super()._session(work):
                yield
        finally:
            if started:
                ray.shutdown()

    def _workers(self, spec: ModelSpec, config: EvalConfig) -> list:
        """Start the model workers of `spec`: one per GPU share, or one per node on a CPU-only cluster."""
        ray = _ray()
        gpus = ray.cluster_resources().get("GPU", 0.0)
        share = config.gpus_per_worker if config.gpus_per_worker is not None else (1.0 if gpus else 0.0)
        if share > 0 and gpus < share:
            raise UserError(f"--gpus-per-worker {share:g} needs GPUs and the Ray cluster has {gpus:g}; pass "
                            "--gpus-per-worker 0 to run the models on CPUs.")
        count = config.model_workers or (int(gpus // share) if share > 0 else
                                         max(1, sum(1 for node in ray.nodes() if node.get("Alive"))))
        if share == 0 and config.device == "auto":
            config = replace(config, device="cpu")  # a worker given no GPU must not take one
        actor = ray.remote(ModelWorker).options(num_cpus=1, num_gpus=share, max_restarts=MAX_TRIES, max_task_retries=0)
        return [actor.remote(spec, config) for _ in range(count)]

    def _dataset(self, dataset: ZeroShotDataset):
        if dataset.name not in self._datasets:
            self._datasets[dataset.name] = _ray().put(dataset)
        return self._datasets[dataset.name]

    def _run_model(self, work: Plan, spec: ModelSpec, units: list[WorkUnit], result: EvalResult,
                   progress: Progress | None, lines: BatchLines | None, owner: Owner,
                   retry: list[CellOutcome] | None = None) -> None:
        ray = _ray()
        config = work.config
        workers: list = []
        try:
            workers = self._workers(spec, config)
            facts = ray.get(workers[0].facts.remote())
            if isinstance(facts, str):
                raise UserError(facts)
            resolutions, dropped = work.resolutions_for(facts.image_size)
        except UserError as error:
            _stop(workers)
            self.record_model_skip(work, spec, units, result, lines, error)
            return
        except ray.exceptions.RayError as error:
            _stop(workers)
            raise UserError(f"The Ray worker loading {spec} failed ({_first_line(error)}); see the Ray logs "
                            "(`ray logs` or /tmp/ray/session_latest/logs) and rerun.") from None
        if retry is None:
            self.record_dropped(spec, facts.image_size, dropped, result)
        try:
            cells = self._open(work, spec, facts, units, resolutions, result, lines, owner, retry)
            self._stream(work, spec, facts, workers, cells, progress, owner, first_pass=retry is None)
        finally:
            _stop(workers)
        for cell in cells:
            self.record_unit(spec, cell.unit, cell.error or cell.outcome, result, lines, cell.retry)

    def _open(self, work: Plan, spec: ModelSpec, facts: ModelFacts, units: list[WorkUnit],
              resolutions: tuple[Resolution, ...], result: EvalResult, lines: BatchLines | None, owner: Owner,
              retry: list[CellOutcome] | None) -> list[_Cell]:
        """Claim the cells of each unit and list the ranges the database does not hold for them."""
        cells = []
        for unit, again, wanted, config in self.passes(units, resolutions, work.config, retry):
            dataset = work.datasets[unit.dataset]
            try:
                outcome, pending = open_cell(self.store, facts, dataset, wanted, config, owner)
            except UserError as error:
                self.record_unit(spec, unit, error, result, lines, again)
                continue
            cell = _Cell(unit, dataset, outcome, pending, again)
            if pending:
                covered = {r: self.store.covered(outcome.run_id, r) for r in pending}
                cell.ranges = [(a, b) for a, b in unit.ranges(config.chunk_size)
                               if not all(_inside(a, b, covered[r]) for r in pending)]
                cell.left = len(cell.ranges)
                cell.maker, cell.finish = ViewMaker(config.protocol, facts.image_size, pending, facts.family).split(
                    facts.device.startswith("cuda"), upsample=not facts.upsamples_low_views)
            cells.append(cell)
        return cells

    def _stream(self, work: Plan, spec: ModelSpec, facts: ModelFacts, workers: list, cells: list[_Cell],
                progress: Progress | None, owner: Owner, first_pass: bool) -> None:
        """Send every missing range to the workers, commit each as it comes back, finish each cell.

        The bar of the whole plan counts the first pass over each unit (`first_pass`); a pass over cells
        another process left behind has its model's bar only."""
        ray = _ray()
        config = work.config
        if self._plan_bar is None:
            self._plan_bar = add_bar(progress, "all models", sum(u.stop - u.start for u in work.units))
        plan_bar = self._plan_bar if first_pass else (lambda n: None)
        todo = sum(b - a for cell in cells for a, b in cell.ranges)
        total = sum(cell.unit.stop - cell.unit.start for cell in cells)
        model_bar = add_bar(progress, str(spec), total, total - todo) if todo else (lambda n: None)
        plan_bar(total - todo)
        for cell in cells:
            if cell.pending and not cell.ranges:  # everything committed before: only the scores were missing
                finish_cell(self.store, cell.outcome, cell.pending, cell.dataset, facts.image_size, cell.unit, owner)
        decode = ray.remote(num_cpus=1)(decode_batch)
        cache = str(Path(config.db).resolve().parent / "cache" / "classifiers")
        classifiers = {name: workers[0].classifier.remote(d.classnames, d.templates, cache)
                       for name, d in {c.dataset.name: c.dataset for c in cells if c.ranges}.items()}
        queue = deque((cell, a, b, 0) for cell in cells for a, b in cell.ranges)
        flights: dict[Any, tuple[int, _Cell, int, int, int]] = {}
        load = [0] * len(workers)
        while queue or flights:
            while queue and min(load) < IN_FLIGHT:
                cell, a, b, tries = queue.popleft()
                if cell.stopped:
                    continue
                index = load.index(min(load))
                data = self._dataset(cell.dataset)
                batches = [decode.remote(data, cell.maker, s, min(s + config.batch_size, b))
                           for s in range(a, b, config.batch_size)]
                ref = workers[index].predict.remote(cell.dataset.name, [classifiers[cell.dataset.name]],
                                                    cell.pending, cell.finish, batches)
                flights[ref], load[index] = (index, cell, a, b, tries), load[index] + 1
            if not flights:
                break
            [ready], _ = ray.wait(list(flights), num_returns=1)
            index, cell, a, b, tries = flights.pop(ready)
            load[index] -= 1
            try:
                chunk = ray.get(ready)
            except ray.exceptions.RayTaskError as error:  # raised by our code on the worker
                if not isinstance(error.cause, UserError):
                    raise
                cell.error, cell.stopped = UserError(str(error.cause)), True
                continue
            except ray.exceptions.ActorUnavailableError:  # restarting after a death: send the range again soon
                queue.appendleft((cell, a, b, tries))
                time.sleep(0.5)
                continue
            except ray.exceptions.RayError as error:  # the worker (or its node) died: send the range again
                if tries + 1 >= MAX_TRIES:
                    raise UserError(f"Images {a}-{b} of {cell.dataset.name} failed {MAX_TRIES} times on the Ray "
                                    f"workers of {spec} ({_first_line(error)}); see the Ray logs and rerun: "
                                    "what was committed is kept.") from None
                log.warning("a Ray worker of %s died on images %d-%d of %s; sending them again", spec, a, b,
                            cell.dataset.name)
                queue.appendleft((cell, a, b, tries + 1))
                continue
            if not cell.stopped:
                self._commit(cell, chunk, facts, owner)
            model_bar(b - a)
            plan_bar(b - a)

    def _commit(self, cell: _Cell, chunk: Chunk, facts: ModelFacts, owner: Owner) -> None:
        """Store one range; finish the cell with its last range."""
        try:
            self.store.add_chunk(cell.outcome.run_id, chunk.start, chunk.labels, chunk.ok, chunk.top5, owner=owner)
            cell.outcome.skipped_images.extend(chunk.unreadable)
            cell.left -= 1
            if cell.left == 0:
                finish_cell(self.store, cell.outcome, cell.pending, cell.dataset, facts.image_size, cell.unit, owner)
        except LeaseLost:
            # Another process took these cells over after our heartbeats stopped: it finishes them.
            self.store.release(owner, cell.outcome.run_id, cell.pending)
            cell.outcome.held.update({r: "another lr0fm process" for r in cell.pending})
            cell.stopped = True


def _probe(address: str | None) -> None:
    """A HOST:PORT (or ray://HOST:PORT) address that accepts no connection is one sentence now, not a
    minutes-long wait in Ray's reconnection loop."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit() or not host:
        raise UserError(f"--address {address} is not auto, HOST:PORT or ray://HOST:PORT; fix it and rerun.")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as error:
        raise UserError(f"Cannot reach a Ray cluster at {address} ({error.strerror or error}); start one with "
                        "`ray start --head` there (or fix --address), then rerun.") from None


def _inside(start: int, stop: int, covered: list[tuple[int, int]]) -> bool:
    return any(a <= start and stop <= b for a, b in covered)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _stop(workers: list) -> None:
    """Free the model workers (and their devices) before the next model starts."""
    if workers:
        ray = _ray()
        for worker in workers:
            with contextlib.suppress(Exception):
                ray.kill(worker, no_restart=True)


__all__ = ["IN_FLIGHT", "KILL_HOOK", "MAX_TRIES", "ModelWorker", "RayExecutor", "decode_batch"]
