"""The `lr0fm` command: each verb parses its options, calls `lr0fm.api` and prints what `lr0fm.present` builds.

The API is imported inside each verb, so `lr0fm --help` and usage errors do not load torch.
"""

from __future__ import annotations

import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from . import present
from .errors import UserError
from .store import DEFAULT_DB, EXPORT_FORMATS

app = typer.Typer(
    help="LR0.FM: zero-shot classification of vision-language models at low resolution.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

DB_OPTION = typer.Option(DEFAULT_DB, "--db", help="Results database (SQLite).")


def _show(shown: present.Shown, soft_wrap: bool = False) -> None:
    """Print the tables of `shown` on standard output and its notes on standard error."""
    for item in shown.out:
        console.print(item)
    for item in shown.err:
        err_console.print(item, soft_wrap=soft_wrap)


@app.command("eval")
def eval_command(
    model: list[str] = typer.Option([], "--model", "-m", help="Model spec or registry name, or all (every supported registry model); repeat for several (default: lr0fm-tiny)."),
    dataset: list[str] = typer.Option([], "--dataset", "-d", help="Dataset name or folder:PATH; repeat for several (default: fashion_mnist; with --suite: a subset of the suite)."),
    suite: Optional[str] = typer.Option(None, "--suite", help="A fixed benchmark grid: lr0fm = the paper's 15 datasets at native,128,64,32,16 with the paper protocol; keeps going past missing data."),
    resolutions: Optional[str] = typer.Option(None, "--resolutions", "-r", help="Comma list, e.g. native,128,64,32,16 (default: native + the model's sweep)."),
    protocol: Optional[str] = typer.Option(None, "--protocol", "-p", help="Resolution protocol: canonical (default) or paper (a suite's)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Local weights file (.safetensors or .pt) for a single openclip:ARCH or lr0fm-tiny model."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Folder holding the dataset files."),
    split: Optional[str] = typer.Option(None, "--split", help="Dataset split (default: the benchmark's test split)."),
    download: bool = typer.Option(False, "--download", help="Download the dataset if it is missing (needs network)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate only the first N images (a quick look)."),
    db: Path = DB_OPTION,
    force: bool = typer.Option(False, "--force", help="Recompute cells that are already in the database."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for cells another lr0fm process is computing in the same database (--no-wait: leave them to it, list them and exit with status 1)."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Images per forward pass."),
    workers: int = typer.Option(2, "--workers", "-w", help="DataLoader worker processes that decode and degrade images."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, bf16 or fp16 (autocast)."),
    executor: str = typer.Option("local", "--executor", help="local (this process) or ray (a Ray cluster: CPU tasks decode, GPU workers run the models; pip install 'lr0fm[ray]')."),
    address: Optional[str] = typer.Option(None, "--address", help="With --executor ray: the cluster, auto or HOST:PORT or ray://HOST:PORT (default: RAY_ADDRESS, else a new cluster on this machine)."),
    gpus_per_worker: Optional[float] = typer.Option(None, "--gpus-per-worker", help="With --executor ray: GPUs per model worker (default 1 where the cluster has GPUs, else 0; 0.5 puts two on a GPU)."),
    model_workers: Optional[int] = typer.Option(None, "--model-workers", help="With --executor ray: how many model workers (default: one per GPU share, or one per node on a CPU-only cluster)."),
):
    """Evaluate models zero-shot at native and low resolutions; finished cells are skipped (resumable).

    With --suite or --model all the run keeps going past a missing dataset or unavailable weights, lists
    what it skipped at the end and exits with status 1 if it skipped anything.

    Several processes may share one --db: each claims the cells it computes, and a cell another process
    is computing is waited for (or, with --no-wait, left to it), never computed twice.

    Example: lr0fm eval --model openclip:ViT-B-32 --weights vitb32.safetensors --dataset folder:/data/pets -r native,64,32,16

    Example: lr0fm eval --suite lr0fm --data-root /datasets --model eva02-b16 --model metaclip-b16-2.5b

    Example: lr0fm eval --suite lr0fm --model all --executor ray --address auto --data-root /shared/datasets
    """
    from . import api
    from .plan import EvalConfig

    if suite and not model:
        raise UserError(f"--suite {suite} needs models: name them with --model (see `lr0fm list models`) or pass --model all.")
    config = EvalConfig(
        models=model or ["lr0fm-tiny"], datasets=dataset, resolutions=resolutions, protocol=protocol, weights=weights,
        data_root=data_root, split=split, download=download, limit=limit, db=db, force=force, wait=wait,
        batch_size=batch_size, workers=workers, device=device, precision=precision, suite=suite,
        executor=executor, address=address, gpus_per_worker=gpus_per_worker, model_workers=model_workers,
    )
    result = api.run_evaluation(config, console=err_console)
    _show(present.evaluation(result))
    if (result.batch and result.skipped) or result.busy:
        raise typer.Exit(1)


class ListWhat(str, Enum):
    models = "models"
    backends = "backends"
    datasets = "datasets"
    protocols = "protocols"
    pipelines = "pipelines"
    suites = "suites"


def _listings() -> dict:
    """What `lr0fm list` can show: name -> (API function giving the rows, presentation of the rows)."""
    from . import api

    return {
        "models": (api.list_models, present.models_listing),
        "openclip-tags": (api.list_openclip_tags, present.openclip_tags_listing),
        "backends": (api.list_backends, present.backends_listing),
        "datasets": (api.list_datasets, present.datasets_listing),
        "protocols": (api.list_protocols, present.protocols_listing),
        "pipelines": (api.list_paper_pipelines, present.pipelines_listing),
        "suites": (api.list_suites, present.suites_listing),
    }


@app.command("list")
def list_command(
    what: ListWhat = typer.Argument(..., help="models, backends (model specs), datasets, protocols, pipelines (the paper protocol per family) or suites."),
    family: Optional[str] = typer.Option(None, "--family", help="With models: only this family (clip, eva, siglip, ...)."),
    openclip_tags: bool = typer.Option(False, "--openclip-tags", help="With models: list open_clip's pretrained tags instead (openclip:ARCH/TAG)."),
    wide: bool = typer.Option(False, "--wide", help="Every field in its own column, for wide terminals (default: short columns, long texts below)."),
    format: str = typer.Option("table", "--format", "-f", help="table, or csv or json: every field of every row on standard output, for scripts."),
):
    """List the named models (the paper's 66 backbones and your own), model specs, datasets, resolution
    protocols, the paper's pipeline per family, or suites.

    Example: lr0fm list models --family eva

    Example: lr0fm list datasets --format csv > datasets.csv
    """
    if (family or openclip_tags) and what is not ListWhat.models:
        raise UserError("--family and --openclip-tags apply to `lr0fm list models`.")
    if format not in present.LIST_FORMATS:
        raise UserError(f"Unknown list format {format!r}; use one of: {', '.join(present.LIST_FORMATS)}.")
    fetch, render = _listings()["openclip-tags" if openclip_tags else what.value]
    rows = fetch(family) if family else fetch()
    if format == "table":
        _show(render(rows, wide))
    else:
        typer.echo(present.as_text(rows, format), nl=False)


@app.command("show")
def show_command(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Only models whose spec contains this text."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only datasets whose name contains this text."),
    db: Path = DB_OPTION,
):
    """Show the stored results as a table.

    Example: lr0fm show --model tiny --dataset fashion
    """
    from . import api

    _show(present.stored_results(api.results(db, model=model, dataset=dataset), db))


@app.command("export")
def export_command(
    format: str = typer.Option("csv", "--format", "-f", help=f"One of: {', '.join(EXPORT_FORMATS)}."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file, or - for standard output (default: lr0fm-results.FORMAT)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Only models whose spec contains this text."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only datasets whose name contains this text."),
    db: Path = DB_OPTION,
):
    """Export the stored results (one row per model × dataset × resolution) to CSV, Parquet or JSON.

    Example: lr0fm export --format parquet --out results.parquet

    Example: lr0fm export --out - | head
    """
    from . import api

    _show(present.wrote(api.export(db, out or Path(f"lr0fm-results.{format}"), format, model=model, dataset=dataset)))


@app.command("report")
def report_command(
    db: Path = DB_OPTION,
    out: Path = typer.Option(Path("lr0fm-report"), "--out", "-o", help="Report folder (created or updated)."),
    format: list[str] = typer.Option(["md", "csv", "latex"], "--format", "-f", help="md, csv and/or latex; repeat or give a comma list. report.html and the PNG figures are always written."),
    compare_paper: bool = typer.Option(False, "--compare-paper", help="Rank each model among the paper's 66 backbones at 128/64/32/16 px (over the shared datasets)."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed: the same seed gives the same intervals."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap resamples per dataset."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Only models whose spec contains this text."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only datasets whose name contains this text."),
    top_confusions: int = typer.Option(5, "--top-confusions", help="Most frequent (true -> predicted) confusions listed per resolution."),
):
    """Report the stored results: accuracy with bootstrap CIs, γ/Γ, SAR/WAR, plots and one self-contained HTML file.

    Reads the results database only (no model is run). Writes report.html and PNG figures, plus report.md,
    CSV tables and report.tex as chosen with --format.

    Example: lr0fm report --compare-paper --format md,csv --out report/
    """
    from . import api

    result = api.report(db, out, format, compare_paper=compare_paper, seed=seed, resamples=resamples, model=model,
                        dataset=dataset, top_confusions=top_confusions)
    _show(present.report(result))


weights_app = typer.Typer(help="WAR dataset weights: re-derive them from a results table.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")


@weights_app.command("fit")
def weights_fit_command(
    resolution: int = typer.Option(16, "--resolution", "-r", help="Resolution (px) whose rankings the weights are fitted to."),
    from_db: bool = typer.Option(False, "--from-db", help="Fit to the models in the results database instead of the paper's table."),
    db: Path = DB_OPTION,
    table: Optional[Path] = typer.Option(None, "--table", help="Fit to a CSV with columns model,dataset,resolution,top1[,n_classes]."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the weights and correlations as JSON."),
    objective: list[str] = typer.Option([], "--objective", help="Dataset whose agreement to maximise; repeat (default: those SAR ranks poorly)."),
    floor: float = typer.Option(0.95, "--floor", help="No dataset's agreement may drop below this share of its SAR agreement."),
    seed: int = typer.Option(0, "--seed", help="Seed of the search (deterministic)."),
    maxiter: int = typer.Option(1000, "--maxiter", help="Generations of the differential-evolution search."),
):
    """Re-derive WAR dataset weights: make the WAR ranking of models agree with the datasets SAR overlooks.

    Prints the fitted weights and, per dataset, the Spearman agreement of each dataset's own ranking with
    SAR, with WAR under the fitted weights and (for the paper's datasets) under the paper's weights.
    Input: the paper's 66-backbone table by default, --from-db, or --table FILE.csv.

    Example: lr0fm weights fit --resolution 16 --out weights.json
    """
    from . import api

    if from_db and table is not None:
        raise UserError("Give either --from-db or --table, not both.")
    source = "db" if from_db else "csv" if table is not None else "paper"
    fit = api.fit_weights(resolution, source=source, db=db, table=table, objective=objective, floor=floor, seed=seed,
                          maxiter=maxiter, out=out)
    _show(present.weights_fit(fit))


analyze_app = typer.Typer(help="Analyses: of a model on images, or of the paper's findings (nothing is stored in the results database).",
                          no_args_is_help=True)
app.add_typer(analyze_app, name="analyze")


@analyze_app.command("layers")
def analyze_layers_command(
    model: str = typer.Option(..., "--model", "-m", help="Model spec with a ViT image tower: lr0fm-tiny, openclip: ViTs and EVA02 (timm trunks), hf: CLIP, SigLIP or BLIP (hub id or saved folder), or a registry name."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name or folder:PATH."),
    resolutions: Optional[str] = typer.Option(None, "--resolutions", "-r", help="Low resolutions, comma list (default: the model's sweep)."),
    limit: int = typer.Option(256, "--limit", help="Images to average over (the first N)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Local weights file for openclip:ARCH or lr0fm-tiny."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Folder holding the dataset files."),
    split: Optional[str] = typer.Option(None, "--split", help="Dataset split (default: the benchmark's test split)."),
    protocol: str = typer.Option("canonical", "--protocol", "-p", help="Resolution protocol: canonical or paper."),
    pooling: str = typer.Option("mean", "--pooling", help="mean: cosine of mean-pooled patch tokens (the paper's); token: per-patch cosine, averaged."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", help="Images per forward pass (each with all its views)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw the similarities as a PNG."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the table as CSV."),
):
    """Cosine similarity of native vs low-resolution patch-token features after the patch embedding and each block.

    Works on every ViT tower LR-TK0 supports (open_clip, timm/EVA trunks, transformers CLIP/SigLIP/BLIP);
    class and register tokens are left out.

    Example: lr0fm analyze layers --model lr0fm-tiny --dataset fashion_mnist --limit 256 --plot layers.png
    Example: lr0fm analyze layers --model hf:google/siglip-base-patch16-224 --dataset imagenet -r 64,16 --out layers.csv
    """
    from . import api

    result = api.layer_similarity(model, dataset, resolutions, limit=limit, weights=weights, data_root=data_root,
                                  split=split, protocol=protocol, pooling=pooling, batch_size=batch_size, device=device,
                                  out=out, plot=plot)
    _show(present.layer_table(result, out, plot))


@analyze_app.command("findings")
def analyze_findings_command(
    resolution: list[str] = typer.Option([], "--resolution", "-r", help="Low resolution to test: 128, 64, 32, 16 or mean (the 128-16 average); repeat or comma list; the verdicts use the first (default: 16)."),
    db: Optional[Path] = typer.Option(None, "--db", help=f"Results database whose models with metadata join (default: {DEFAULT_DB} when it exists)."),
    no_paper: bool = typer.Option(False, "--no-paper", help="Leave out the paper's 66 backbones: only your models."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap resamples (over models, and over pairs)."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed: the same seed gives the same intervals."),
    plot_dir: Optional[Path] = typer.Option(None, "--plot-dir", help="Also draw the figures (PNG) into this folder."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the numbers: FILE.csv (statistics) or FILE.json (everything)."),
):
    """Test the paper's findings on its 66 backbones plus your models: size, data quality vs size, fine-tuning, native resolution.

    Spearman ρ of SAR/WAR with log image parameters and with pre-training set size, paired differences
    (fine-tuned − base, higher − lower native resolution, curated − web data, larger − smaller data) with
    bootstrap intervals and Wilcoxon p-values, and a verdict per claim computed from them. Reads
    reference/backbone_meta.csv and the results database; no model is run.

    Example: lr0fm analyze findings --resolution 16 --plot-dir findings/ --out findings.json
    """
    from . import api

    result = api.findings(db, resolution or None, resamples=resamples, seed=seed, paper=not no_paper, out=out,
                          plot_dir=plot_dir)
    _show(present.findings(result))


@app.command("synth")
def synth_command(
    captions: list[Path] = typer.Option(..., "--captions", "-c", help="Text file, one caption per line (stripped; blank lines skipped); repeat to continue the ids. The paper's 7,000: github.com/shyammarjit/LR0.FM, Captions/."),
    out: Path = typer.Option(..., "--out", "-o", help="Pool folder: images, manifest.jsonl and synth.json (created or resumed)."),
    per_caption: int = typer.Option(30, "--per-caption", "-n", help="Images per caption (the paper trains on 30)."),
    model: str = typer.Option("PixArt-alpha/PixArt-XL-2-1024-MS", "--model", "-m", help="PixArt-α pipeline: hub id or local folder saved with save_pretrained()."),
    steps: int = typer.Option(20, "--steps", help="Denoising steps (the pipeline's default)."),
    guidance: float = typer.Option(4.5, "--guidance", help="Classifier-free guidance scale (the pipeline's default)."),
    batch_size: int = typer.Option(4, "--batch-size", "-b", help="Images per pipeline call."),
    seed: int = typer.Option(0, "--seed", help="Base seed; every (caption, image) pair gets its own seed derived from it."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    precision: str = typer.Option("auto", "--precision", help="auto (fp16 on GPU, fp32 on CPU), fp32, fp16 or bf16."),
    size: Optional[int] = typer.Option(None, "--size", help="Generation resolution in px (default: the model's, 1024)."),
    store_size: Optional[int] = typer.Option(None, "--store-size", help="Save images down-sized to this shorter side (e.g. 512) to save disk."),
    limit_captions: Optional[int] = typer.Option(None, "--limit-captions", help="Use only the first N captions."),
):
    """Generate the synthetic HR pool for LR-TK0: PixArt-α images per caption, seeded per image, resumable.

    Images already in --out are kept, so rerunning the same command after a crash writes only the missing
    ones. manifest.jsonl lists each image (file, group = caption id, index, caption, seed).

    Example: lr0fm synth --captions caption_2k.txt --captions caption_5k.txt --per-caption 30 --store-size 512 --out pool/
    """
    from . import api

    result = api.synthesize(captions, out, per_caption, model=model, steps=steps, guidance=guidance,
                            batch_size=batch_size, seed=seed, device=device, precision=precision, size=size,
                            store_size=store_size, limit_captions=limit_captions, console=err_console)
    _show(present.synthesized(result))


tokens_app = typer.Typer(help="LR-TK0: learnable low-resolution tokens for a frozen ViT (train, inspect).",
                         no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")


@tokens_app.command("train")
def tokens_train_command(
    model: str = typer.Option(..., "--model", "-m", help="Base model spec (a ViT: openclip:, hf:, a registry name or lr0fm-tiny)."),
    pool: str = typer.Option(..., "--pool", help="Images: a folder (optionally with manifest.jsonl of {file, group}, e.g. from lr0fm synth), a .jsonl manifest, or DATASET:SPLIT such as fashion_mnist:train (labels unused)."),
    out: Path = typer.Option(..., "--out", "-o", help="Tokens file to write (.safetensors); the resumable checkpoint goes to OUT.ckpt."),
    steps: int = typer.Option(1000, "--steps", help="Optimizer steps."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Images per step (each also gives one low-resolution view per bucket)."),
    group_size: int = typer.Option(4, "--group-size", help="K images of one group per batch, when the pool has groups."),
    lr: float = typer.Option(5e-4, "--lr", help="Peak learning rate (AdamW, linear warm-up, then cosine)."),
    weight_decay: float = typer.Option(0.2, "--weight-decay", help="AdamW weight decay on the tokens (never on the temperature)."),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="Warm-up steps (default: a tenth of --steps, at most 2000)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the token init, batch order, crops and view sizes."),
    variant: str = typer.Option("always", "--variant", help="always (the paper's), resolution (strength learned per source resolution), vpt (VPT-deep baseline) or patch (a tuned copy of the patch embedding for images below native)."),
    first_block: int = typer.Option(0, "--first-block", help="First block that gets tokens; above 0 there is no input set."),
    prompts: Optional[int] = typer.Option(None, "--prompts", help="With --variant vpt: prompt tokens per block (default: the tokens' parameter budget)."),
    buckets: Optional[str] = typer.Option(None, "--buckets", help="Low-resolution size buckets LOW-HIGH (HIGH excluded), e.g. 4-8,8-16,16-32 (default: 16-32,32-64,64-128 for 128 px and up, native/8..native otherwise)."),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Write the resumable checkpoint every N steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run whose checkpoint is OUT.ckpt, exactly where it stopped."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start again even if OUT or OUT.ckpt exists."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Local weights file for openclip:ARCH or lr0fm-tiny."),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="Folder holding the pool's dataset files (DATASET:SPLIT pools)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 autocast on GPU, fp32 on CPU), fp32 or bf16."),
    workers: int = typer.Option(2, "--workers", "-w", help="DataLoader worker processes that decode, crop and degrade images."),
):
    """Train LR-TK0 tokens by multi-scale self-distillation: the frozen model (tokens off) on the native view
    teaches the model with tokens on the native and low-resolution views of the same crop.

    The result loads anywhere a model spec does, as SPEC+tokens=OUT.

    Example: lr0fm tokens train --model lr0fm-tiny --pool fashion_mnist:train --out tiny.tokens.safetensors --steps 300 -b 128

    Example: lr0fm eval --model "lr0fm-tiny+tokens=tiny.tokens.safetensors" --resolutions native,24,16,12,8

    Example: torchrun --nproc-per-node 4 -m lr0fm tokens train --model eva02-b16 --pool pool/ --out eva02.tokens.safetensors -b 256
    """
    import contextlib

    from . import api
    from .tokens.distributed import EveryProcessError, environment

    _, rank, _ = environment()  # under torchrun, process 0 alone shows the progress, the log and the result
    if rank:
        logging.getLogger("lr0fm").setLevel(logging.ERROR)
    progress = present.training_progress(err_console, steps) if rank == 0 else contextlib.nullcontext(lambda step, loss: None)
    try:
        with progress as advance:
            result = api.train_tokens(
                model, pool, out, steps=steps, batch_size=batch_size, group_size=group_size, lr=lr,
                weight_decay=weight_decay, warmup=warmup, seed=seed, variant=variant, first_block=first_block,
                prompts=prompts, buckets=buckets, checkpoint_every=checkpoint_every, resume=resume, overwrite=overwrite,
                weights=weights, data_root=data_root, device=device, precision=precision, workers=workers,
                callback=advance,
            )
    except EveryProcessError:
        if rank:  # process 0 has the same error and reports it
            raise typer.Exit(UserError.exit_code) from None
        raise
    if rank == 0:  # soft_wrap: the spec to evaluate stays on one line, ready to copy.
        _show(present.tokens_trained(result, model, out), soft_wrap=True)


@tokens_app.command("info")
def tokens_info_command(path: Path = typer.Argument(..., help="A tokens file written by lr0fm tokens train.")):
    """Show what a tokens file holds: base model, layout, parameter count and training settings.

    Example: lr0fm tokens info tiny.tokens.safetensors
    """
    from . import api

    _show(present.tokens_info(api.tokens_info(path)))


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(message)s",
        handlers=[RichHandler(console=err_console, show_time=False, show_path=False)],
    )
    try:
        app()
    except UserError as error:
        # soft_wrap: one line even when stderr is a pipe (rich would otherwise wrap at 80 columns).
        err_console.print(f"[bold red]error:[/bold red] {escape(str(error))}", highlight=False, soft_wrap=True)
        sys.exit(UserError.exit_code)
    except KeyboardInterrupt:
        err_console.print("Interrupted; finished chunks are saved and the same command resumes from them.")
        sys.exit(130)


if __name__ == "__main__":
    main()
