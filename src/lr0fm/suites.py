"""Benchmark suites and batch runs: a fixed grid of datasets × resolutions × protocol over many models.

`--suite lr0fm` is the grid of the LR0.FM paper: its 15 datasets in their published splits with the
paper's prompts, native/128/64/32/16 px, and the `paper` protocol, so stored numbers are comparable with
the published ones. A batch (a suite, or `--model all`) plans every cell up front, reuses what the
database already holds without loading the model, and keeps going past a dataset that is missing or a
model whose weights cannot be had; each such cell is reported as a `Skip`.

    >>> from lr0fm.suites import run_batch
    >>> from lr0fm.runner import EvalConfig
    >>> done = run_batch(EvalConfig(models=["eva02-b16"], suite="lr0fm", data_root="/datasets"))
    >>> done.skipped  # [] when every cell ran or was already stored
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch
from rich.console import Console
from rich.markup import escape, render

from . import runner
from .data import ZeroShotDataset, load_dataset
from .data.lr0fm_suite import SUITE
from .degrade import parse_resolutions
from .errors import UserError
from .models.base import ZeroShotModel
from .reference import RESOLUTIONS as PAPER_RESOLUTIONS
from .runner import CellOutcome, EvalConfig
from .store import ResultStore

log = logging.getLogger("lr0fm.suites")

ALL_MODELS = "all"  # --model all: every supported registry model
EVERY = ""  # Skip.model or Skip.dataset when a skip concerns every model or every dataset


@dataclass(frozen=True)
class Suite:
    name: str
    datasets: tuple[str, ...]
    resolutions: tuple[str, ...]  # "native" first, then pixel sizes
    protocol: str
    description: str


SUITES: dict[str, Suite] = {
    "lr0fm": Suite(
        "lr0fm", tuple(SUITE), tuple(PAPER_RESOLUTIONS), "paper",
        "the LR0.FM paper's grid: its 15 datasets (published splits and prompts), native/128/64/32/16 px, paper protocol",
    ),
}


@dataclass(frozen=True)
class Skip:
    """Cells that were not evaluated, and why (EVERY in model or dataset: all of them)."""

    model: str
    dataset: str
    reason: str


@dataclass
class BatchResult:
    rows: list[dict] = field(default_factory=list)  # stored result rows of every cell evaluated or reused
    outcomes: list[CellOutcome] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)  # planned cells that could not run
    not_planned: list[Skip] = field(default_factory=list)  # unsupported registry models left out of `all`
    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    suite: Suite | None = None


def get_suite(name: str) -> Suite:
    suite = SUITES.get(name.strip().lower())
    if suite is None:
        raise UserError(f"Unknown suite {name!r}; use one of: {', '.join(SUITES)}.")
    return suite


def is_batch(config: EvalConfig) -> bool:
    """A suite or `all` models: keep going past missing data instead of stopping at the first error."""
    return bool(config.suite) or any(spec.strip().lower() == ALL_MODELS for spec in config.models)


def expand_models(specs, batch: bool = True) -> tuple[list[str], list[Skip], list[Skip]]:
    """(specs to run, explicitly named unsupported models, unsupported models left out of `all`).

    `all` becomes every supported registry model, in registry order. Outside a batch an unsupported
    name is left in, so that validation stops on it with its reason.
    """
    from .models.registry import entries, find

    models: list[str] = []
    skipped: list[Skip] = []
    not_planned: list[Skip] = []
    for spec in specs:
        spec = spec.strip()
        if spec.lower() == ALL_MODELS:
            for entry in entries():
                if entry.supported:
                    models.append(entry.name)
                elif all(s.model != entry.name for s in not_planned):
                    not_planned.append(Skip(entry.name, EVERY, entry.reason))
            continue
        entry = find(spec) if batch and ":" not in spec else None
        if entry is not None and not entry.supported:
            skipped.append(Skip(entry.name, EVERY, f"cannot be loaded by lr0fm: {entry.reason}"))
        else:
            models.append(spec)
    return list(dict.fromkeys(models)), skipped, not_planned


def resolve_config(config: EvalConfig) -> tuple[EvalConfig, list[Skip], list[Skip]]:
    """Fill in the defaults and the suite's grid; flags that contradict the suite are a UserError."""
    models, skipped, not_planned = expand_models(config.models, is_batch(config))
    if config.limit is not None and config.limit <= 0:
        raise UserError(f"--limit must be a positive number of images, not {config.limit}.")
    if config.suite is None:
        return replace(config, models=models, datasets=list(config.datasets) or ["fashion_mnist"],
                       protocol=config.protocol or "canonical"), skipped, not_planned
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
    return replace(config, models=models, datasets=datasets, protocol=suite.protocol, suite=suite.name), skipped, not_planned


def _default_resolutions(native: int) -> tuple[int, ...]:
    # The sweep a model of this native size picks by default (ZeroShotModel.default_resolutions).
    return ZeroShotModel.default_resolutions.fget(SimpleNamespace(image_size=native))


def wanted_resolutions(native: int, config: EvalConfig, suite: Suite | None) -> tuple[list[str], list[str]]:
    """(resolutions to evaluate, suite resolutions dropped because they are not below `native`)."""
    if suite is not None:
        low = [r for r in suite.resolutions if r != "native"]
        return ["native", *(r for r in low if int(r) < native)], [r for r in low if int(r) >= native]
    parsed = parse_resolutions(config.resolutions, native, _default_resolutions(native))
    return [str(r) for r in parsed], []


def _stored_cells(store: ResultStore | None, spec: str, datasets: list[ZeroShotDataset], fingerprints: dict[str, str],
                  config: EvalConfig, suite: Suite | None) -> dict[str, CellOutcome]:
    """Datasets whose cells for `spec` are all stored already, found without loading the model.

    A weights file or local folder may change under the same path, so `--weights`, `hf:/local/dir` (and
    `--force`) always load the model and let the runner match on the weights' fingerprint.
    """
    local = spec.startswith("hf:") and Path(spec.removeprefix("hf:")).expanduser().exists()
    if store is None or config.force or config.weights or local:
        return {}
    found = {}
    for dataset in datasets:
        runs = store.finished_runs(spec, dataset.name, fingerprints[dataset.name], dataset.split, config.protocol)
        for run_id, provenance, finished in runs:
            native = provenance.get("native_pixels")
            if provenance.get("weights_file") or not native:
                continue
            try:
                resolutions, _ = wanted_resolutions(int(native), config, suite)
            except UserError:
                continue
            if set(resolutions) <= finished:
                found[dataset.name] = CellOutcome(spec, dataset.name, run_id, resolutions, reused=list(resolutions))
                break
    return found


def run_batch(config: EvalConfig, console: Console | None = None) -> BatchResult:
    """Run a suite or a batch of models, skipping (not stopping at) missing datasets and unloadable models.

    Bad flags, unknown names and an unusable database are still a UserError before anything runs.
    """
    config, skipped, not_planned = resolve_config(config)
    suite = get_suite(config.suite) if config.suite else None
    result = BatchResult(skipped=skipped, not_planned=not_planned, models=list(config.models),
                         datasets=list(config.datasets), suite=suite)
    if not config.models:  # only unsupported models were named
        return result
    runner.validate(config)
    device = runner.resolve_device(config.device)
    db = Path(config.db)

    datasets: list[ZeroShotDataset] = []
    for name in config.datasets:
        try:
            datasets.append(load_dataset(name, config.data_root, config.split, config.download).limit(config.limit))
        except UserError as error:
            result.skipped.append(Skip(EVERY, name, str(error)))
    fingerprints = {dataset.name: dataset.fingerprint() for dataset in datasets}

    total = len(config.models) * len(datasets)
    done = 0
    store = ResultStore(db) if db.is_file() else None
    torch.manual_seed(0)
    try:
        with runner._progress(console) as progress:
            if progress is not None:
                say: Callable[[str], None] = progress.console.print
            else:  # no console (the Python API): plain text to the log
                say = lambda line: log.info(render(line).plain)
            grid = ",".join(suite.resolutions) if suite else "resolutions as given"
            title = f"Suite {suite.name}" if suite else "Batch"
            missing = len(config.datasets) - len(datasets)
            say(f"{title}: {len(config.models)} model(s) × {len(datasets)} dataset(s) = {total} cell(s) at {grid}, "
                f"{config.protocol} protocol" + (f"; {missing} dataset(s) missing, listed at the end" if missing else ""))

            def step(count: int = 1) -> str:
                nonlocal done
                first, done = done + 1, done + count
                width = len(str(total))
                return f"[{first:>{width}}/{total}]" if count == 1 else f"[{first}-{done}/{total}]"

            for spec in config.models if datasets else []:
                stored = _stored_cells(store, spec, datasets, fingerprints, config, suite)
                for dataset in datasets:
                    if dataset.name in stored:
                        result.outcomes.append(stored[dataset.name])
                        say(f"{step()} {escape(spec)} · {escape(dataset.name)}: already stored")
                todo = [dataset for dataset in datasets if dataset.name not in stored]
                if not todo:
                    continue
                model = None  # the previous model is freed before the next one loads
                try:
                    model = runner.load_model(spec, config.weights, str(device))
                    resolutions, dropped = wanted_resolutions(model.image_size, config, suite)
                except UserError as error:
                    model = None
                    result.skipped.append(Skip(spec, EVERY if len(todo) == len(datasets) else ", ".join(d.name for d in todo),
                                               str(error)))
                    say(f"{step(len(todo))} {escape(spec)}: [yellow]skipped[/yellow] (see the end)")
                    continue
                if dropped:
                    result.skipped.append(Skip(spec, EVERY, f"{', '.join(dropped)} px {'is' if len(dropped) == 1 else 'are'} "
                                                            f"not below its native {model.image_size} px, so those cells stay empty"))
                for dataset in todo:
                    store = store or ResultStore(db)
                    try:
                        outcome = runner.evaluate_cell(store, model, dataset, config, device, resolutions, progress)
                    except UserError as error:
                        result.skipped.append(Skip(spec, dataset.name, str(error)))
                        say(f"{step()} {escape(spec)} · {escape(dataset.name)}: [yellow]skipped[/yellow] (see the end)")
                        continue
                    result.outcomes.append(outcome)
                    stored_too = f", {len(outcome.reused)} already stored" if outcome.reused else ""
                    say(f"{step()} {escape(spec)} · {escape(dataset.name)}: {len(outcome.computed)} computed{stored_too}")
                del model
        if store is not None:
            wanted = {(o.run_id, r) for o in result.outcomes for r in o.resolutions}
            result.rows = [row for row in store.results() if (row["run_id"], row["resolution"]) in wanted]
    finally:
        if store is not None:
            store.close()
    return result


def skip_table_rows(result: BatchResult) -> list[tuple[str, str, str]]:
    """(models, datasets, reason) lines for the end-of-run table; left-out unsupported models grouped by reason."""
    lines = [(s.model or "all models", s.dataset or "all datasets", s.reason) for s in result.skipped]
    by_reason: dict[str, list[str]] = {}
    for s in result.not_planned:
        by_reason.setdefault(s.reason, []).append(s.model)
    lines += [(", ".join(names), "not planned", f"unsupported: {reason}") for reason, names in by_reason.items()]
    return lines


__all__ = ["ALL_MODELS", "BatchResult", "SUITES", "Skip", "Suite", "expand_models", "get_suite", "is_batch",
           "resolve_config", "run_batch", "skip_table_rows", "wanted_resolutions"]
