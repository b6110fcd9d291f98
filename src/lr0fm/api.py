"""The public Python API; the `lr0fm` command is a thin skin over these functions.

`evaluate` is the one entry point of evaluation for the CLI and for Python: it builds an EvalConfig, plans
it (`plan.plan`: names resolved, defaults and the suite filled in, stored cells subtracted, the batch
policy decided) and runs the plan on an executor: `execute.LocalExecutor` in this process, or
`execute.cluster.RayExecutor` on a Ray cluster (`executor="ray"`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import pandas as pd

from .data import load_dataset
from .errors import UserError
from .plan import CHUNK_SIZE, EvalConfig
from .store import DEFAULT_DB, ResultStore
from .synth.generate import synthesize

if TYPE_CHECKING:
    from rich.console import Console

    from .execute import EvalResult
    from .models import ModelSpec, ZeroShotModel
    from .tokens.train import TrainResult


def run_evaluation(config: EvalConfig, console: Console | None = None) -> EvalResult:
    """Plan `config` and execute the plan on the executor it names (this process, or a Ray cluster).

    Args:
        config: what to evaluate (`plan.EvalConfig`).
        console: a rich Console for progress bars and batch lines (None: quiet; batch lines go to the log).

    Returns:
        An `execute.EvalResult`: stored rows of every requested cell, per-cell outcomes, skips, and whether
        it ran as a batch (a suite or `all`, which keeps going past missing data).

    Raises:
        UserError: a bad option, unknown name or unusable database (before anything is written); outside
            a batch also a missing dataset or weights that cannot be had.

    Example:
        >>> result = run_evaluation(EvalConfig(models=["lr0fm-tiny"], resolutions="native,16,8"))
        >>> result.computed, result.reused
    """
    from .execute import executor_for
    from .plan import plan

    work = plan(config)
    return executor_for(work.config).run(work, console)


def evaluate(
    models: str | Sequence[str] = "lr0fm-tiny",
    datasets: str | Sequence[str] | None = None,
    resolutions: str | Sequence[int | str] | None = None,
    protocol: str | None = None,
    *,
    suite: str | None = None,
    weights: str | None = None,
    data_root: str | None = None,
    split: str | None = None,
    download: bool = False,
    limit: int | None = None,
    db: str | Path = DEFAULT_DB,
    force: bool = False,
    wait: bool = True,
    batch_size: int = 64,
    workers: int = 2,
    device: str = "auto",
    precision: str = "fp32",
    chunk_size: int = CHUNK_SIZE,
    executor: str = "local",
    address: str | None = None,
    gpus_per_worker: float | None = None,
    model_workers: int | None = None,
) -> pd.DataFrame:
    """Zero-shot accuracy of each model on each dataset at native and low resolutions.

    Finished cells already in `db` are reused; a model whose cells are all stored is not even loaded.

    Args:
        models: a spec, a registry name or "all" (every supported registry model), or a list of them.
        datasets: a name or folder:PATH, or a list (default: fashion_mnist; with `suite`: a subset of it).
        resolutions: "native,16,8" or a list (default: native plus each model's sweep).
        protocol: "canonical" (default) or "paper".
        suite: "lr0fm" runs the paper's grid (15 datasets, native/128/64/32/16, paper protocol).
        weights: a local weights file for the one model (openclip:ARCH or lr0fm-tiny).
        data_root: the folder holding the datasets; split: a dataset split (not with a suite).
        download: fetch datasets torchvision can download. limit: the first N images only.
        db: the results database. force: recompute stored cells.
        wait: wait for cells another process is computing in `db` (False: leave them to it).
        batch_size, workers, device ("auto", "cpu", "cuda[:N]"), precision ("fp32", "bf16", "fp16"),
        chunk_size (images per committed chunk): how to run.
        executor: "local" (this process) or "ray" (a Ray cluster: `pip install 'lr0fm[ray]'`; datasets must
            be at a path every node sees).
        address: with ray, the cluster ("auto", "HOST:PORT", "ray://HOST:PORT"; None: RAY_ADDRESS, else a
            new local one). gpus_per_worker: GPUs per model worker (None: 1 where the cluster has GPUs,
            else 0). model_workers: how many (None: one per GPU share, or one per node without GPUs).

    Returns:
        One row per (model, dataset, resolution): model_spec, dataset, split, protocol, resolution, pixels,
        top1, top5, mean_per_class_recall (fractions), n, n_skipped, run_id, ... A batch (a suite or "all")
        keeps going past missing datasets and unavailable weights: what it skipped is in
        `frame.attrs["skipped"]` (and logged), unsupported models left out of "all" in
        `frame.attrs["not_planned"]`. With `wait=False`, cells another process is computing are in
        `frame.attrs["busy"]`.

    Raises:
        UserError: a bad option or unknown name; outside a batch also missing data or weights.

    Example:
        >>> lr0fm.evaluate("lr0fm-tiny", "fashion_mnist", resolutions="native,16,8")
        >>> lr0fm.evaluate(["eva02-b16", "siglip-b16"], suite="lr0fm", data_root="/datasets")
        >>> lr0fm.evaluate("all", suite="lr0fm", data_root="/shared/datasets", executor="ray", address="auto")
    """
    config = EvalConfig(
        models=[models] if isinstance(models, str) else list(models),
        datasets=[] if datasets is None else [datasets] if isinstance(datasets, str) else list(datasets),
        resolutions=resolutions, protocol=protocol, suite=suite, weights=weights, data_root=data_root, split=split,
        download=download, limit=limit, db=db, force=force, wait=wait, batch_size=batch_size, workers=workers, device=device,
        precision=precision, chunk_size=chunk_size, executor=executor, address=address,
        gpus_per_worker=gpus_per_worker, model_workers=model_workers,
    )
    result = run_evaluation(config)
    for skip in result.skipped:
        logging.getLogger("lr0fm").warning("not evaluated: %s · %s: %s", skip.model or "all models",
                                           skip.dataset or "all datasets", skip.reason)
    frame = pd.DataFrame(result.rows)
    if result.batch:
        frame.attrs["skipped"] = [asdict(skip) for skip in result.skipped]
        frame.attrs["not_planned"] = [asdict(skip) for skip in result.not_planned]
    frame.attrs["busy"] = [dict(zip(("model", "dataset", "resolutions", "holder"), cell)) for cell in result.busy]
    return frame


def load_model(spec: str, weights: str | None = None, device: str = "cpu") -> ZeroShotModel:
    """Load a model from its spec, with its LR-TK0 tokens when the spec names a tokens file and its
    super-resolution front end (`superres.SRModel`) when it names an SR file.

    Args:
        spec: "lr0fm-tiny", "openclip:ARCH[/TAG]", "openclip:hf-hub:ORG/NAME", "hf:ID_OR_DIR", a registry
            name such as "eva02-b16", each optionally followed by "+tokens=FILE" and/or "+sr=FILE".
        weights: a local weights file replacing the model's own (openclip:ARCH and lr0fm-tiny).
        device: "cpu", "cuda", "cuda:N".

    Returns:
        A frozen `models.ZeroShotModel` in eval mode whose `encode_image` takes pixels in [0, 1].

    Raises:
        UserError: unknown or malformed spec, weights that cannot be had or do not fit, a tokens file that
            belongs to other weights.

    Example:
        >>> model = lr0fm.load_model("openclip:ViT-B-32", weights="vitb32.safetensors")
        >>> model.image_size, model.family
    """
    from . import loader
    from .models import parse_spec

    return loader.load(parse_spec(spec, weights), device)


def check_model(spec: str, weights: str | None = None) -> ModelSpec:
    """Parse a model spec and check everything about it that needs no weights (nothing is downloaded).

    Args:
        spec: as for `load_model`.
        weights: a local weights file, as for `load_model`.

    Returns:
        The parsed `models.ModelSpec` (backend, name, tag, weights, tokens, registry name and family).

    Raises:
        UserError: an unknown or malformed spec, an unsupported registry model, an unknown open_clip
            architecture or tag, an unreadable tokens file.

    Example:
        >>> lr0fm.api.check_model("eva02-b16").backend_text
        'openclip:EVA02-B-16/merged2b_s8b_b131k'
    """
    from . import loader
    from .models import parse_spec

    parsed = parse_spec(spec, weights)
    loader.check(parsed)
    return parsed


def open_results(db: str | Path = DEFAULT_DB) -> ResultStore:
    """The results database at `db`.

    Args:
        db: the path of an lr0fm results database.

    Returns:
        A `store.ResultStore` (a context manager; close it when done).

    Raises:
        UserError: there is no database at `db`, or it is not an lr0fm database.

    Example:
        >>> with lr0fm.open_results() as store:
        ...     labels, top5, ok = store.predictions(run_id=1, resolution="16")
    """
    if not Path(db).is_file():
        raise UserError(f"No results database at {db}; run `lr0fm eval` first or pass --db PATH.")
    return ResultStore(db)


def train_tokens(
    model: str,
    pool: str,
    out: str | Path,
    *,
    steps: int = 1000,
    batch_size: int = 64,
    group_size: int = 4,
    lr: float = 5e-4,
    weight_decay: float = 0.2,
    warmup: int | None = None,
    seed: int = 0,
    variant: str = "always",
    first_block: int = 0,
    prompts: int | None = None,
    buckets: str | Sequence | None = None,
    checkpoint_every: int = 500,
    resume: bool = False,
    overwrite: bool = False,
    weights: str | None = None,
    data_root: str | None = None,
    device: str = "auto",
    workers: int = 2,
    precision: str = "auto",
    log_every: int = 50,
    callback: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train LR-TK0 tokens for `model` on an image pool and write them to `out` (a .safetensors file).

    Args:
        model: the base model spec (a ViT), without +tokens=.
        pool: a folder of images (optionally with manifest.jsonl: {"file", "group"} per line, e.g. from
            `synthesize`), a manifest .jsonl, or DATASET:SPLIT used without labels ("fashion_mnist:train").
        out: the tokens file; the resumable checkpoint goes to OUT.ckpt.
        steps, batch_size, group_size, lr, weight_decay, warmup, seed: the optimisation (AdamW, linear
            warm-up then cosine; K = group_size images per group in a batch). Under torchrun, batch_size is
            the global batch, split evenly across the processes (see `tokens.distributed`).
        variant: "always" (the paper's), "resolution" (strength learned per source resolution), "vpt", or
            "patch" (a tuned copy of the patch embedding for images below native; no tokens).
        first_block, prompts, buckets: the token layout and the low-resolution size buckets.
        checkpoint_every, resume, overwrite: checkpointing; resume continues OUT.ckpt exactly.
        weights, data_root, device, workers, precision ("auto", "fp32", "bf16"): as for `evaluate`.
        log_every: steps between two loss lines in the log.
        callback: `callback(step, loss)` after every step.

    Returns:
        A `tokens.TrainResult` (path, final loss, per-step losses and gradient norms, seconds, ...); the
        tokens then load as the model spec f"{model}+tokens={out}". Under torchrun every process returns it
        and process 0 alone has written the files.

    Raises:
        UserError: bad options, an unusable pool or model, an existing `out` without resume or overwrite.

    Example:
        >>> lr0fm.train_tokens("lr0fm-tiny", "fashion_mnist:train", "tiny.tokens.safetensors", steps=300)
        >>> lr0fm.evaluate("lr0fm-tiny+tokens=tiny.tokens.safetensors", resolutions="native,16,8")
    """
    from .tokens.train import TokenTrainConfig, train

    config = TokenTrainConfig(
        model=model, pool=pool, out=out, weights=weights, data_root=data_root, steps=steps, batch_size=batch_size,
        group_size=group_size, lr=lr, weight_decay=weight_decay, warmup=warmup, seed=seed, variant=variant,
        first_block=first_block, prompts=prompts, buckets=buckets, checkpoint_every=checkpoint_every, resume=resume,
        overwrite=overwrite, device=device, workers=workers, precision=precision, log_every=log_every,
    )
    return train(config, callback)


# --------------------------------------------------------------------------------------------------
# Listings, stored results and reports: what the `lr0fm list`, `show`, `export`, `report`, `weights fit`,
# `analyze layers` and `tokens info` verbs call. Listings are lists of plain dict rows (one key set per
# listing), ready for a table, csv.DictWriter or json.dumps.


def list_models(family: str | None = None) -> list[dict]:
    """The named models: the paper's 66 backbones and any you registered.

    Args:
        family: only this family ("clip", "eva", "siglip", ...); None: every family.

    Returns:
        One row per model, in registration order, with the keys name, family, spec (the backend spec it
        loads, "" when there is none), native (input size in px or None), pipeline (the paper protocol's
        resize path), supported (bool), reason (why it cannot be loaded; "" when supported), paper_name
        and note (a caveat, or "").

    Raises:
        UserError: `family` is not a known family.

    Example:
        >>> [row["name"] for row in lr0fm.api.list_models("eva")][:2]
    """
    from .models import parse_spec, registry

    rows = registry.list_models(family)
    for row in rows:
        if row["native"] is None and row["supported"]:  # a user model registered without it: ask its backend
            row["native"] = parse_spec(row["name"]).native
    return rows


def list_backends() -> list[dict]:
    """The kinds of model spec lr0fm loads (lr0fm-tiny, openclip:..., hf:...).

    Returns:
        One row per backend with the keys backend (the spec prefix, or the whole spec of a bundled model),
        description (the spec forms it takes) and weights (whether `weights=FILE` applies).

    Example:
        >>> [row["backend"] for row in lr0fm.api.list_backends()]
        ['lr0fm-tiny', 'openclip', 'hf']
    """
    from .models import BACKENDS

    return [{"backend": name, "description": backend.description, "weights": backend.weights}
            for name, backend in BACKENDS.items()]


def list_openclip_tags() -> list[dict]:
    """open_clip's pretrained weights, each usable as the model spec openclip:ARCH/TAG.

    Returns:
        One row per (architecture, tag) in open_clip's order, with the keys arch, tag and spec.

    Raises:
        ImportError: open_clip is not installed.

    Example:
        >>> {row["spec"] for row in lr0fm.api.list_openclip_tags()} >= {"openclip:ViT-B-32/laion2b_s34b_b79k"}
        True
    """
    import open_clip

    return [{"arch": arch, "tag": tag, "spec": f"openclip:{arch}/{tag}"} for arch, tag in open_clip.list_pretrained()]


def list_datasets() -> list[dict]:
    """The datasets lr0fm loads by name: the 15 of the LR0.FM suite, fashion_mnist and folder:PATH.

    Returns:
        One row per dataset, suite datasets first in the paper's order, with the keys name, title, suite
        (bool: part of `suite="lr0fm"`), split (the default split), splits (every accepted split, comma
        separated), classes, images (in the default split), layout (expected files under the data root),
        source (where to get them), download (what `download=True` fetches; "" when it cannot) and
        description (one line). Fields a dataset does not have are None.

    Example:
        >>> [row["name"] for row in lr0fm.api.list_datasets() if row["suite"]][:2]
        ['imagenet', 'imagenet_a']
    """
    from .data import DATASETS
    from .data.lr0fm_suite import SUITE

    rows = [
        {"name": key, "title": info.title, "suite": True, "split": info.split, "splits": ",".join(info.splits),
         "classes": info.classes, "images": info.images, "layout": info.layout, "source": info.source,
         "download": info.download, "description": info.describe()}
        for key, info in SUITE.items()
    ]
    rows += [
        {"name": name, "title": None, "suite": False, "split": None, "splits": None, "classes": None, "images": None,
         "layout": None, "source": None, "download": None, "description": description}
        for name, description in DATASETS.items() if name not in SUITE
    ]
    return rows


def list_protocols() -> list[dict]:
    """The resolution protocols: how the native and low-resolution views of an image are made.

    Returns:
        One row per protocol with the keys name and description.

    Example:
        >>> [row["name"] for row in lr0fm.api.list_protocols()]
        ['canonical', 'paper']
    """
    from .degrade import PROTOCOLS

    return [{"name": name, "description": description} for name, description in PROTOCOLS.items()]


def list_paper_pipelines() -> list[dict]:
    """The resize path of the paper protocol for each model family (as in the authors' code).

    Returns:
        One row per family with the keys family and pipeline ("shortside" or "stretch"); families not
        listed get "stretch".

    Example:
        >>> {row["family"]: row["pipeline"] for row in lr0fm.api.list_paper_pipelines()}["clip"]
        'shortside'
    """
    from .degrade import PAPER_PIPELINES

    return [{"family": family, "pipeline": pipeline} for family, pipeline in PAPER_PIPELINES.items()]


def list_suites() -> list[dict]:
    """The benchmark suites: fixed grids of datasets, resolutions and protocol (`evaluate(suite=NAME)`).

    Returns:
        One row per suite with the keys name, description, datasets and resolutions (comma separated) and
        protocol.

    Example:
        >>> lr0fm.api.list_suites()[0]["resolutions"]
        'native,128,64,32,16'
    """
    from .suites import SUITES

    return [{"name": name, "description": suite.description, "datasets": ",".join(suite.datasets),
             "resolutions": ",".join(suite.resolutions), "protocol": suite.protocol}
            for name, suite in SUITES.items()]


def results(db: str | Path = DEFAULT_DB, model: str | None = None, dataset: str | None = None) -> list[dict]:
    """The finished cells stored in a results database.

    Args:
        db: the results database.
        model: only models whose spec contains this text (case-insensitive).
        dataset: only datasets whose name contains this text (case-insensitive).

    Returns:
        One row per (run, resolution), sorted by model, dataset, protocol, then native first and larger
        resolutions first, with the keys `store.RESULT_COLUMNS`: model_spec, dataset, split, protocol,
        resolution, pixels, top1, top5, mean_per_class_recall (fractions or None), n, n_skipped, run_id, ...

    Raises:
        UserError: there is no lr0fm results database at `db`.

    Example:
        >>> [(row["resolution"], row["top1"]) for row in lr0fm.api.results(model="tiny")]
    """
    with open_results(db) as store:
        return store.results(model=model, dataset=dataset)


def export(db: str | Path, out: str | Path, format: str = "csv", model: str | None = None,
           dataset: str | None = None) -> Path | None:
    """Write the stored results (one row per model × dataset × resolution) as CSV, JSON or Parquet.

    Args:
        db: the results database.
        out: the file to write (it appears whole or not at all), or "-" for standard output (Parquet only
            when standard output is not a terminal).
        format: "csv", "json" (a list of records) or "parquet" (needs pyarrow).
        model: only models whose spec contains this text.
        dataset: only datasets whose name contains this text.

    Returns:
        The path written, or None when the rows went to standard output.

    Raises:
        UserError: no database at `db`, an unknown format, an unwritable `out`, Parquet to a terminal.

    Example:
        >>> lr0fm.api.export("lr0fm-results/results.sqlite", "results.parquet", format="parquet")
        PosixPath('results.parquet')
    """
    with open_results(db) as store:
        return store.export(out, format, model=model, dataset=dataset)


def report(
    db: str | Path = DEFAULT_DB,
    out: str | Path = "lr0fm-report",
    formats: str | Sequence[str] | None = None,
    *,
    compare_paper: bool = False,
    seed: int = 0,
    resamples: int = 1000,
    level: float = 0.95,
    model: str | None = None,
    dataset: str | None = None,
    top_confusions: int = 5,
):
    """Write a report of the stored results: accuracy with bootstrap intervals, γ/Γ, SAR/WAR, plots, HTML.

    Reads the database only (no model is run).

    Args:
        db: the results database.
        out: the report folder (created or updated).
        formats: "md", "csv" and/or "latex", as a list or a comma list; None: all three. report.html and
            the PNG figures are always written.
        compare_paper: rank each model among the paper's 66 backbones (over the shared datasets).
        seed, resamples, level: the bootstrap (the same seed gives the same intervals).
        model, dataset: only runs whose model spec / dataset name contains this text.
        top_confusions: most frequent (true -> predicted) confusions listed per resolution.

    Returns:
        A `report.ReportResult`: folder, files written, tables (`sar_war`, `compare`, ...) and notes.

    Raises:
        UserError: no database or no finished results with a native resolution, a bad format or option.

    Example:
        >>> result = lr0fm.api.report(out="report/", formats="md,csv", compare_paper=True)
        >>> result.tables.sar_war.head()
    """
    from .report import build_report

    return build_report(db, out, formats, compare_paper=compare_paper, seed=seed, resamples=resamples, level=level,
                        model=model, dataset=dataset, top_confusions=top_confusions)


def robustness_profile(
    db: str | Path = DEFAULT_DB,
    model: str | None = None,
    dataset: str | None = None,
    *,
    seed: int = 0,
    resamples: int = 1000,
    level: float = 0.95,
) -> dict[str, pd.DataFrame]:
    """How the stored models degrade beyond SAR/WAR, with bootstrap intervals (the report's sections of the
    same names, as tables). Reads the database only.

    Args:
        db: the results database.
        model, dataset: only runs whose model spec / dataset name contains this text.
        seed, resamples, level: the bootstrap; the same seed resamples the same images as `report`.

    Returns:
        DataFrames (fractions and pixels) by name:
        "half_accuracy": per model and dataset (and over datasets: dataset None, the median on a log2
        scale), for raw top-1 and top-1 above chance, the resolution keeping half the native accuracy
        (half_px, half_px_low, half_px_high; 0 with status "below lowest" when it never falls that far);
        "lowest_correct": per model and dataset, the share of images by the lowest resolution down to which
        they stay correct (category "wrong at native", "native", ..., "≤ LOWEST");
        "breaking_classes": per class, the share of its native-correct images broken by each low resolution
        and its median breaking resolution, ranked (1 breaks first);
        "rank_stability": per dataset with 3 or more models on the same images, Spearman rho between their
        native and low-resolution rankings.

    Raises:
        UserError: no database at `db`, or no finished results (with a native resolution) matching the filters.

    Example:
        >>> profile = lr0fm.api.robustness_profile(dataset="fashion_mnist")
        >>> profile["half_accuracy"][["model", "dataset", "accuracy", "half_px", "status"]]
    """
    from .report import collect
    from .report.compute import profile_tables

    with open_results(db) as store:
        collected = collect(store, model=model, dataset=dataset)
    if not collected.runs:
        filters = " matching the filters" if model or dataset else ""
        raise UserError(f"No finished results with a native resolution{filters} in {db}; run `lr0fm eval` first.")
    if resamples < 1:
        raise UserError(f"resamples must be at least 1, got {resamples}.")
    return profile_tables(collected, seed=seed, resamples=resamples, level=level)


def fit_weights(
    resolution: int = 16,
    *,
    source: str = "paper",
    db: str | Path = DEFAULT_DB,
    table: str | Path | None = None,
    objective: Sequence[str] = (),
    floor: float = 0.95,
    seed: int = 0,
    maxiter: int = 1000,
    out: str | Path | None = None,
) -> dict:
    """Re-derive WAR dataset weights so that the WAR ranking of models agrees with the datasets SAR overlooks.

    Args:
        resolution: the resolution (px) whose model rankings the weights are fitted to.
        source: "paper" (the paper's 66-backbone table), "db" (the results database `db`) or "csv" (the
            file `table` with columns model, dataset, resolution, top1 and optionally n_classes).
        db: the results database, for source="db".
        table: the CSV file, for source="csv".
        objective: datasets whose agreement to maximise (default: those SAR ranks poorly).
        floor: no dataset's agreement may drop below this share of its SAR agreement.
        seed, maxiter: the differential-evolution search (deterministic for a seed).
        out: also write the weights and correlations as JSON to this file.

    Returns:
        The fit: weights, resolution, n_models, dropped_models, violations, mean_rho_sar, mean_rho_war,
        correlations (a DataFrame per dataset: weight, rho_sar, rho_war, in_objective, and weight_paper,
        rho_war_paper for the paper's datasets), ..., and "out": the JSON file written or None.

    Raises:
        UserError: an unknown source, a missing or malformed table, no results at `db`, an unwritable `out`.

    Example:
        >>> fit = lr0fm.api.fit_weights(16, out="weights.json")
        >>> fit["weights"]["imagenet"]
    """
    from .report import load_table, write_weights
    from .report import fit_weights as fit_table

    frame = load_table(source, db=db, table=table)
    fit = fit_table(frame, resolution, objective_datasets=list(objective), floor=floor, seed=seed, maxiter=maxiter)
    fit["out"] = None if out is None else write_weights(fit, out, source)
    return fit


def findings(
    db: str | Path | None = None,
    resolutions: str | Sequence[int | str] | None = None,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    paper: bool = True,
    out: str | Path | None = None,
    plot_dir: str | Path | None = None,
):
    """Test the paper's findings (model size, data quality vs size, fine-tuning, native resolution) on its
    66 backbones plus the models of a results database whose registry name has metadata.

    Args:
        db: a results database; None uses the default one when it exists (else the paper's table alone).
        resolutions: low resolutions to test (128, 64, 32, 16 or "mean"); the verdicts use the first (16).
        resamples, level, seed: the bootstrap over models and over pairs (seeded: same numbers every run).
        paper: include the paper's backbones.
        out: also write the numbers to this .csv (statistics) or .json (everything) file.
        plot_dir: also draw the figures (PNG) into this folder.

    Returns:
        A `findings.Findings`: models, scores, statistics, pairs, verdicts, left_out, files written.

    Raises:
        UserError: an unknown resolution, a missing or empty database, an unwritable `out` or `plot_dir`.

    Example:
        >>> result = lr0fm.api.findings(resolutions="16", plot_dir="findings/")
        >>> result.verdicts[["claim", "verdict"]]
    """
    from .findings import findings as compute, plot_findings, write_numbers

    result = compute(db, resolutions, resamples=resamples, level=level, seed=seed, paper=paper)
    if plot_dir is not None:
        result.files += plot_findings(result, plot_dir)
    if out is not None:
        result.files.append(write_numbers(result, out))
    return result


def layer_similarity(
    model: str,
    dataset: str,
    resolutions: str | Sequence[int | str] | None = None,
    *,
    limit: int | None = 256,
    weights: str | None = None,
    data_root: str | None = None,
    split: str | None = None,
    protocol: str = "canonical",
    pooling: str = "mean",
    batch_size: int = 32,
    device: str = "auto",
    out: str | Path | None = None,
    plot: str | Path | None = None,
):
    """Cosine similarity of native vs low-resolution patch-token features after the patch embedding and
    after each transformer block (nothing is stored in the results database).

    Args:
        model: a spec with a ViT image tower: lr0fm-tiny, openclip: ViTs and timm ViT/EVA trunks
            (openclip:EVA02-*), hf: CLIP, SigLIP and BLIP (hub id or saved folder), or a registry name
            that resolves to one of them.
        dataset: a dataset name or folder:PATH.
        resolutions: low resolutions, e.g. "16,8" (default: the model's sweep); native is the reference.
        limit: average over the first N images (None: all).
        weights, data_root, split: as for `evaluate`.
        protocol: "canonical" or "paper".
        pooling: "mean" (cosine of mean-pooled patch tokens, the paper's) or "token" (per-patch cosine).
        batch_size, device: how to run.
        out: also write the table as CSV to this file.
        plot: also draw the similarities as a PNG at this path.

    Returns:
        An `analysis.LayerSimilarity`: table (layer, depth, one column per low resolution), model, dataset,
        native, resolutions, n_images, n_skipped, pooling, protocol.

    Raises:
        UserError: a model without a ViT image tower (e.g. ResNet or ConvNeXt towers), bad options, no
            readable image, an unwritable `out` or `plot`.

    Example:
        >>> result = lr0fm.api.layer_similarity("lr0fm-tiny", "fashion_mnist", "16,8", limit=64)
        >>> result.table
    """
    from .analysis import layer_similarity as measure
    from .analysis import plot_layer_similarity
    from .fileio import atomic_path

    result = measure(model, dataset, resolutions, limit=limit, weights=weights, data_root=data_root, split=split,
                     protocol=protocol, pooling=pooling, batch_size=batch_size, device=device)
    if out is not None:
        out = Path(out).expanduser()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(out) as tmp:
                result.table.to_csv(tmp, index=False)
        except OSError as error:
            raise UserError(f"Cannot write {out} ({error}); pass a writable path to --out.") from None
    if plot is not None:
        plot_layer_similarity(result, plot)
    return result


def tokens_info(path: str | Path) -> dict:
    """What an LR-TK0 tokens file holds: its base model, token layout, parameter count and training settings.

    Args:
        path: a tokens file written by `train_tokens` (.safetensors).

    Returns:
        A dict with the keys path, base_spec, base_fingerprint, layout (dict), token_parameters (int),
        training (dict of the training settings) and lr0fm_version ("?" when unknown).

    Raises:
        UserError: the file is missing, unreadable, not a tokens file, or of another format version.

    Example:
        >>> lr0fm.api.tokens_info("tiny.tokens.safetensors")["token_parameters"]
    """
    from .tokens.files import read_tokens

    metadata, tensors = read_tokens(path)
    return {
        "path": str(path),
        "base_spec": metadata["base_spec"],
        "base_fingerprint": metadata["base_fingerprint"],
        "layout": metadata["layout"].to_dict(),
        "token_parameters": sum(t.numel() for name, t in tensors.items() if name != "logit_scale"),
        "training": metadata["training"],
        "lr0fm_version": metadata.get("lr0fm_version", "?"),
    }


__all__ = [
    "check_model", "evaluate", "export", "findings", "fit_weights", "layer_similarity", "list_backends",
    "list_datasets", "list_models", "list_openclip_tags", "list_paper_pipelines", "list_protocols", "list_suites",
    "load_dataset", "load_model", "open_results", "report", "results", "robustness_profile", "run_evaluation",
    "synthesize", "tokens_info", "train_tokens",
]
