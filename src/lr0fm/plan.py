"""The evaluation grid as a plan of work units, decided before any model is loaded or any cell written.

`plan(config)` expands a suite and `all`, parses every model spec and the resolutions once, loads the
datasets (their file lists, not their images), subtracts the cells the database already holds (a model
whose cells are all stored is never loaded) and returns the work: one `WorkUnit` per (model, dataset,
pending resolutions, image range). Today each cell is one range; an executor for many machines may split
large datasets into several. Every check that needs no weights happens here, so a bad flag or an unknown
name stops before anything is written.

Two error policies, decided once here: `stop` (a plain eval: the first missing dataset or unloadable model
is a UserError) and `skip` (a suite or `--model all`: such cells are recorded as `Skip`s and the rest runs).

    >>> work = plan(EvalConfig(models=["eva02-b16"], suite="lr0fm", data_root="/datasets"))
    >>> work.policy, len(work.units), work.skipped
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Sequence

from .data import ZeroShotDataset, load_dataset
from .degrade import PROTOCOLS
from .device import parse_precision, resolve_device
from .errors import UserError
from .models import ModelSpec, parse_spec
from .models import registry
from .resolution import Resolution, ResolutionError, for_model, parse_resolutions, split_below
from .store import DEFAULT_DB, ResultStore
from .suites import Suite, get_suite

ALL_MODELS = "all"  # --model all: every supported registry model
EVERY = ""  # Skip.model or Skip.dataset when a skip concerns every model or every dataset
CHUNK_SIZE = 1024  # samples per committed chunk: the most a killed run can lose
EVAL_PRECISIONS = ("fp32", "bf16", "fp16")  # autocast dtypes of a forward pass (fp16 on GPU only)
EXECUTORS = ("local", "ray")  # this process, or a Ray cluster (execute/)

Policy = Literal["stop", "skip"]


@dataclass
class EvalConfig:
    """What to evaluate, as the user said it (the CLI's flags, the API's arguments); `plan` checks it.

    Attributes:
        models: specs or registry names, or "all" (every supported registry model).
        datasets: names or folder:PATH; empty: fashion_mnist, or every dataset of the suite.
        resolutions: "native,128,64" or a list; None: native + each model's default sweep.
        protocol: "canonical" or "paper"; None: canonical, or the suite's.
        suite: a fixed grid (`suites.SUITES`), e.g. "lr0fm".
        weights: a local weights file for the single model.
        data_root, split, download, limit: where and which images (limit: the first N only).
        db: the results database; force: recompute stored cells.
        wait: wait for cells another process is computing in `db` (False: leave them to it and say so).
        batch_size, workers, device, precision, chunk_size: how to run (on a cluster, `device` and
            `workers` are those of each worker).
        executor: "local" (this process) or "ray" (a Ray cluster).
        address: with ray, the cluster to join ("auto", "HOST:PORT", "ray://HOST:PORT"; None: the one
            RAY_ADDRESS names, else a new one on this machine).
        gpus_per_worker: with ray, GPUs per model worker (None: 1 where the cluster has GPUs, else 0).
        model_workers: with ray, how many model workers (None: one per GPU share, or one per node on a
            CPU-only cluster).
    """

    models: Sequence[str] = ("lr0fm-tiny",)
    datasets: Sequence[str] = ()
    resolutions: str | Sequence[int | str] | None = None
    protocol: str | None = None
    suite: str | None = None
    weights: str | None = None
    data_root: str | None = None
    split: str | None = None
    download: bool = False
    limit: int | None = None
    db: str | Path = DEFAULT_DB
    force: bool = False
    wait: bool = True
    batch_size: int = 64
    workers: int = 2
    device: str = "auto"
    precision: str = "fp32"
    chunk_size: int = CHUNK_SIZE
    executor: str = "local"
    address: str | None = None
    gpus_per_worker: float | None = None
    model_workers: int | None = None


@dataclass(frozen=True)
class Skip:
    """Cells that were not evaluated, and why (EVERY in model or dataset: all of them)."""

    model: str
    dataset: str
    reason: str


@dataclass
class CellOutcome:
    """What happened to one (model, dataset) cell: resolutions computed now, or reused from the store."""

    model: str
    dataset: str
    run_id: int = -1
    resolutions: list[str] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    skipped_images: list[str] = field(default_factory=list)  # descriptions of images that could not be decoded
    held: dict[str, str] = field(default_factory=dict)  # resolution -> "HOST pid N" of the process computing it

    def merge(self, later: CellOutcome) -> None:
        """Add what a later pass over this cell's held resolutions did."""
        self.computed += later.computed
        self.reused += later.reused
        self.skipped_images += later.skipped_images
        self.held = dict(later.held)


@dataclass(frozen=True)
class WorkUnit:
    """Images [start, stop) of one dataset, for one model, at the given resolutions (None: decided when the
    model is loaded, for models whose native size only the weights tell)."""

    model: ModelSpec
    dataset: str
    resolutions: tuple[Resolution, ...] | None
    start: int
    stop: int

    def ranges(self, size: int) -> list[tuple[int, int]]:
        """[start, stop) of the unit cut at multiples of `size` (counted from image 0, so a rerun cuts the
        same ranges): the pieces an executor for many workers computes, retries and commits one by one."""
        edges = [self.start, *range((self.start // size + 1) * size, self.stop, size), self.stop]
        return list(zip(edges, edges[1:]))


@dataclass
class Plan:
    """The work of one evaluation. Executors run `units` model by model (`by_model`)."""

    config: EvalConfig  # with defaults and the suite filled in
    policy: Policy
    suite: Suite | None
    models: list[ModelSpec]
    datasets: dict[str, ZeroShotDataset]  # the loadable ones, in order
    requested: tuple[Resolution, ...] | None  # the user's list (None: each model's default sweep)
    units: list[WorkUnit] = field(default_factory=list)
    stored: list[CellOutcome] = field(default_factory=list)  # cells found complete in the store
    skipped: list[Skip] = field(default_factory=list)  # planned cells that cannot run
    not_planned: list[Skip] = field(default_factory=list)  # unsupported registry models left out of `all`
    dataset_names: list[str] = field(default_factory=list)  # every dataset of the grid, loadable or not

    @property
    def batch(self) -> bool:
        return self.policy == "skip"

    def resolutions_for(self, native: int) -> tuple[tuple[Resolution, ...], tuple[Resolution, ...]]:
        """(resolutions to evaluate on a model of `native` px, suite resolutions dropped as not below it).

        Raises:
            ResolutionError: a requested resolution is not below `native`.
        """
        if self.suite is not None:
            return split_below(self.suite.resolutions, native)
        return for_model(self.requested, native), ()

    def by_model(self) -> list[tuple[ModelSpec, list[CellOutcome], list[WorkUnit]]]:
        """(model, its stored cells, its units) in planned order."""
        return [(spec, [c for c in self.stored if c.model == str(spec)], [u for u in self.units if u.model == spec])
                for spec in self.models]


def plan(config: EvalConfig) -> Plan:
    """Resolve names, defaults and the suite of `config`, check everything that needs no weights, and
    subtract what the database holds.

    Args:
        config: the user's request.

    Returns:
        The Plan: work units, stored cells, skips (policy `skip`) and models left out of `all`.

    Raises:
        UserError: a bad flag, an unknown name, an unusable database; with policy `stop` also a missing
            dataset or a resolution a model cannot use.
    """
    policy: Policy = "skip" if config.suite or any(m.strip().lower() == ALL_MODELS for m in config.models) else "stop"
    config, suite = _with_defaults(config)
    _check_options(config)
    requested = parse_resolutions(config.resolutions)
    models, skipped, not_planned = _expand_models(config, policy)
    work = Plan(config, policy, suite, models, {}, requested, skipped=skipped, not_planned=not_planned,
                dataset_names=list(config.datasets))
    if not models:  # only unsupported models were named
        return work
    _check_fit(work)

    for name in config.datasets:
        try:
            work.datasets[name] = load_dataset(name, config.data_root, config.split, config.download).limit(config.limit)
        except UserError as error:
            if policy == "stop":
                raise
            work.skipped.append(Skip(EVERY, name, str(error)))

    db = Path(config.db)
    store = ResultStore(db) if db.is_file() else None
    # Hashing a file list is not free (ImageNet: 50,000 paths); once per dataset, not once per model.
    fingerprints = {name: dataset.fingerprint() for name, dataset in work.datasets.items()} if store else {}
    try:
        for spec in models:
            pinned = store is not None and spec.pinned and not config.force
            stored = _stored_cells(store, spec, work, fingerprints) if pinned else {}
            for name, dataset in work.datasets.items():
                if name in stored:
                    work.stored.append(stored[name])
                else:
                    native = spec.native
                    resolutions = work.resolutions_for(native)[0] if native else None
                    work.units.append(WorkUnit(spec, name, resolutions, 0, len(dataset)))
    finally:
        if store is not None:
            store.close()
    return work


def _with_defaults(config: EvalConfig) -> tuple[EvalConfig, Suite | None]:
    """Fill in the defaults and the suite's grid; flags that contradict the suite are a UserError."""
    if config.limit is not None and config.limit <= 0:
        raise UserError(f"--limit must be a positive number of images, not {config.limit}.")
    if config.suite is None:
        return replace(config, datasets=[d.strip() for d in config.datasets] or ["fashion_mnist"],
                       protocol=config.protocol or "canonical"), None
    suite = get_suite(config.suite)
    grid = ",".join(suite.resolutions)
    if config.resolutions is not None:
        raise UserError(f"--suite {suite.name} evaluates at {grid}; drop --resolutions, or drop --suite to pick your own.")
    if config.protocol not in (None, suite.protocol):
        raise UserError(f"--suite {suite.name} uses the {suite.protocol} protocol; drop --protocol {config.protocol}, "
                        f"or drop --suite to use it.")
    if config.split is not None:
        raise UserError(f"--suite {suite.name} uses each dataset's published split; drop --split, or drop --suite "
                        f"and name the datasets with --dataset.")
    wanted = [name.strip() for name in config.datasets]
    outside = [name for name in wanted if name not in suite.datasets]
    if outside:
        raise UserError(f"{', '.join(outside)} {'is' if len(outside) == 1 else 'are'} not in the {suite.name} suite; "
                        f"--dataset with --suite picks from: {', '.join(suite.datasets)}.")
    datasets = [name for name in suite.datasets if not wanted or name in wanted]  # the suite's order
    return replace(config, datasets=datasets, protocol=suite.protocol, suite=suite.name), suite


def _check_options(config: EvalConfig) -> None:
    if config.protocol not in PROTOCOLS:
        raise UserError(f"Unknown protocol {config.protocol!r}; use one of: {', '.join(PROTOCOLS)}.")
    if config.executor not in EXECUTORS:
        raise UserError(f"Unknown executor {config.executor!r}; use one of: {', '.join(EXECUTORS)}.")
    if config.executor == "local":
        cluster = [flag for flag, value in (("--address", config.address), ("--gpus-per-worker", config.gpus_per_worker),
                                            ("--model-workers", config.model_workers)) if value is not None]
        if cluster:
            raise UserError(f"{', '.join(cluster)} only apply to a cluster; add --executor ray, or drop them.")
        parse_precision(config.precision, EVAL_PRECISIONS, resolve_device(config.device))
    else:  # the device is each worker's, checked there; here only what can be told without one
        parse_precision(config.precision, EVAL_PRECISIONS, _device_name(config.device))
        if config.gpus_per_worker is not None and config.gpus_per_worker < 0:
            raise UserError(f"--gpus-per-worker must be 0 or more, not {config.gpus_per_worker:g}.")
        if config.model_workers is not None and config.model_workers <= 0:
            raise UserError(f"--model-workers must be a positive number, not {config.model_workers}.")
    if config.batch_size <= 0 or config.workers < 0:
        raise UserError("--batch-size must be positive and --workers zero or more.")
    if not config.models or not config.datasets:
        raise UserError("Give at least one --model and one --dataset.")
    db = Path(config.db)
    if db.exists() and db.is_dir():
        raise UserError(f"--db {db} is a directory; give the path of a .sqlite file.")


def _device_name(device: str):
    """The device a name means, without asking this machine whether it has one ("auto" counts as CUDA)."""
    import torch

    try:
        return torch.device("cuda" if device == "auto" else device)
    except RuntimeError as error:
        raise UserError(f"Unknown device {device!r}; use auto, cpu, cuda or cuda:N.") from error


def _expand_models(config: EvalConfig, policy: Policy) -> tuple[list[ModelSpec], list[Skip], list[Skip]]:
    """(parsed specs to run, named unsupported models, unsupported models left out of `all`).

    `all` becomes every supported registry model, in registry order. With policy `stop` an unsupported
    name is a UserError with its reason; with `skip` it is skipped with it.
    """
    from .loader import check

    names: list[str] = []
    skipped: list[Skip] = []
    not_planned: list[Skip] = []
    for text in config.models:
        text = text.strip()
        if text.lower() == ALL_MODELS:
            for entry in registry.entries():
                if entry.supported:
                    names.append(entry.name)
                elif all(s.model != entry.name for s in not_planned):
                    not_planned.append(Skip(entry.name, EVERY, entry.reason))
            continue
        entry = registry.find(text) if ":" not in text else None
        if policy == "skip" and entry is not None and not entry.supported:
            skipped.append(Skip(entry.name, EVERY, f"cannot be loaded by lr0fm: {entry.reason}"))
        else:
            names.append(text)
    names = list(dict.fromkeys(names))
    if config.weights and len(names) + len(skipped) != 1:
        raise UserError("--weights applies to exactly one --model; evaluate the other models in a separate command.")
    specs = list(dict.fromkeys(parse_spec(name, config.weights) for name in names))
    for spec in specs:
        check(spec)
        if spec.sr and config.protocol != "canonical":
            raise UserError(f"{spec}: a super-resolution front end (+sr=) takes the canonical protocol's square r x r "
                            f"images, not the {config.protocol} protocol's; evaluate it with --protocol canonical.")
    return specs, skipped, not_planned


def _check_fit(work: Plan) -> None:
    """A resolution too large for a model whose native size is known without weights fails now, before the
    first cell is written (policy stop), or skips that model (policy skip)."""
    for spec in list(work.models):
        if not spec.native:
            continue
        try:
            work.resolutions_for(spec.native)
        except ResolutionError as error:
            if work.policy == "stop":
                raise ResolutionError(f"{spec}: {error}" if len(work.models) > 1 else str(error)) from None
            work.skipped.append(Skip(str(spec), EVERY, str(error)))
            work.models.remove(spec)


def _stored_cells(store: ResultStore, spec: ModelSpec, work: Plan,
                  fingerprints: dict[str, str]) -> dict[str, CellOutcome]:
    """Datasets whose cells for `spec` are all stored already, found without loading the model (runs with
    any weights fingerprint under the same spec text, newest first)."""
    found = {}
    for name, dataset in work.datasets.items():
        runs = store.finished_runs(str(spec), dataset.name, fingerprints[name], dataset.split, work.config.protocol)
        for run_id, provenance, finished in runs:
            native = provenance.get("native_pixels")
            if provenance.get("weights_file") or not native:
                continue
            try:
                resolutions, _ = work.resolutions_for(int(native))
            except ResolutionError:
                continue
            if set(resolutions) <= finished:
                found[name] = CellOutcome(str(spec), dataset.name, run_id, list(resolutions), reused=list(resolutions))
                break
    return found


__all__ = ["ALL_MODELS", "CHUNK_SIZE", "CellOutcome", "EVERY", "EXECUTORS", "EvalConfig", "Plan", "Skip", "WorkUnit", "plan"]
