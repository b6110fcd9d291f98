"""The `lr0fm` command: a thin skin over lr0fm's Python API."""

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
from rich.table import Table

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


def _percent(value) -> str:
    return "–" if value is None or value != value else f"{100 * value:.2f}"


def results_tables(rows: list[dict]) -> list[Table]:
    """One table per run (model · dataset · split · protocol), one row per resolution.

    γ is the relative robustness: top-1 at that resolution / top-1 at native resolution of the same run.
    """
    runs: dict[int, list[dict]] = {}
    for row in rows:
        runs.setdefault(row["run_id"], []).append(row)
    tables = []
    for run_rows in runs.values():
        first = run_rows[0]
        table = Table(
            title=f"{first['model_spec']} · {first['dataset']} ({first['split']}) · {first['protocol']} protocol",
            header_style="bold", title_justify="left",
        )
        for column in ("Resolution", "Top-1 %", "Top-5 %", "Mean recall %", "γ", "Images", "Skipped"):
            table.add_column(column, justify="right")
        native = next((r["top1"] for r in run_rows if r["resolution"] == "native"), None)
        for row in run_rows:
            gamma = "–" if not native or row["top1"] is None else f"{row['top1'] / native:.3f}"
            resolution = f"native {row['pixels']} px" if row["resolution"] == "native" else f"{row['resolution']} px"
            table.add_row(
                resolution, _percent(row["top1"]), _percent(row["top5"]), _percent(row["mean_per_class_recall"]),
                gamma, str(row["n"]), str(row["n_skipped"]),
            )
        tables.append(table)
    return tables


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
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Images per forward pass."),
    workers: int = typer.Option(2, "--workers", "-w", help="DataLoader worker processes that decode and degrade images."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, bf16 or fp16 (autocast)."),
):
    """Evaluate models zero-shot at native and low resolutions; finished cells are skipped (resumable).

    With --suite or --model all the run keeps going past a missing dataset or unavailable weights, lists
    what it skipped at the end and exits with status 1 if it skipped anything.

    Example: lr0fm eval --model openclip:ViT-B-32 --weights vitb32.safetensors --dataset folder:/data/pets -r native,64,32,16

    Example: lr0fm eval --suite lr0fm --data-root /datasets --model eva02-b16 --model metaclip-b16-2.5b
    """
    from .runner import EvalConfig, run, summarize_skips
    from .suites import is_batch

    if suite and not model:
        raise UserError(f"--suite {suite} needs models: name them with --model (see `lr0fm list models`) or pass --model all.")
    config = EvalConfig(
        models=model or ["lr0fm-tiny"], datasets=dataset, resolutions=resolutions, protocol=protocol, weights=weights,
        data_root=data_root, split=split, download=download, limit=limit, db=db, force=force,
        batch_size=batch_size, workers=workers, device=device, precision=precision, suite=suite,
    )
    if is_batch(config):
        _eval_batch(config, db)
        return
    rows, outcomes = run(config, console=err_console)
    for table in results_tables(rows):
        console.print(table)
    reused = sum(len(o.reused) for o in outcomes)
    computed = sum(len(o.computed) for o in outcomes)
    err_console.print(f"{computed} cell(s) computed, {reused} reused from {db} (use --force to recompute).")
    for line in summarize_skips(rows, outcomes):
        err_console.print(f"[yellow]{line}[/yellow]")


def _eval_batch(config, db: Path) -> None:
    """A suite or --model all: one top-1 table, then what was skipped and why; exit status 1 if anything was."""
    from .runner import summarize_skips
    from .suites import run_batch, skip_table_rows

    result = run_batch(config, console=err_console)
    if result.rows:
        console.print(batch_table(result))
    reused = sum(len(o.reused) for o in result.outcomes)
    computed = sum(len(o.computed) for o in result.outcomes)
    err_console.print(f"{computed} cell(s) computed, {reused} reused from {db} (use --force to recompute).")
    for line in summarize_skips(result.rows, result.outcomes):
        err_console.print(f"[yellow]{escape(line)}[/yellow]")
    lines = skip_table_rows(result)
    if lines:
        table = Table(title="Not evaluated", header_style="bold", title_justify="left")
        table.add_column("Model", overflow="fold")
        table.add_column("Dataset", overflow="fold")
        table.add_column("Why", overflow="fold")
        for row in lines:
            table.add_row(*(escape(cell) for cell in row))
        err_console.print(table)
    if result.suite is not None and result.rows:
        err_console.print(f"Compare with the paper's 66 backbones: lr0fm report --compare-paper --db {db}")
    if result.skipped:
        # Unsupported models left out of `all` are listed but were never planned: they do not count.
        err_console.print(f"[yellow]{len(result.skipped)} skip(s) in the table; fix them and rerun the same command "
                          f"to fill in the missing cells (stored ones are reused).[/yellow]")
        raise typer.Exit(1)


def batch_table(result) -> Table:
    """Top-1 % of every (model, dataset) of a batch, one column per resolution, in the planned order."""
    columns: list[str] = []
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for row in result.rows:
        if row["resolution"] not in columns:
            columns.append(row["resolution"])
        cells.setdefault((row["model_spec"], row["dataset"]), {})[row["resolution"]] = _percent(row["top1"])
    columns.sort(key=lambda r: (r != "native", -int(r) if r.isdigit() else 0))
    models = {name: i for i, name in enumerate(result.models)}
    datasets = {name: i for i, name in enumerate(result.datasets)}
    protocols = ", ".join(sorted({row["protocol"] for row in result.rows}))
    suite = f" · {result.suite.name} suite" if result.suite else ""
    table = Table(title=f"Top-1 %{suite} · {protocols} protocol", header_style="bold", title_justify="left")
    table.add_column("Model", overflow="fold")
    table.add_column("Dataset", overflow="fold")
    for resolution in columns:
        table.add_column(resolution if resolution == "native" else f"{resolution} px", justify="right")
    order = sorted(cells, key=lambda key: (models.get(key[0], len(models)), key[0], datasets.get(key[1], len(datasets)), key[1]))
    for model, dataset in order:
        table.add_row(escape(model), escape(dataset), *(cells[(model, dataset)].get(r, "–") for r in columns))
    return table


class ListWhat(str, Enum):
    models = "models"
    datasets = "datasets"
    protocols = "protocols"
    suites = "suites"


@app.command("list")
def list_command(
    what: ListWhat = typer.Argument(..., help="models, datasets, protocols or suites."),
    family: Optional[str] = typer.Option(None, "--family", help="With models: only this family (clip, eva, siglip, ...)."),
    openclip_tags: bool = typer.Option(False, "--openclip-tags", help="With models: list open_clip's pretrained tags instead (openclip:ARCH/TAG)."),
):
    """List the named models (the paper's 66 backbones and your own), datasets, resolution protocols or suites.

    Example: lr0fm list models --family eva

    Example: lr0fm list datasets
    """
    if (family or openclip_tags) and what is not ListWhat.models:
        raise UserError("--family and --openclip-tags apply to `lr0fm list models`.")
    if what is ListWhat.models and openclip_tags:
        import open_clip

        tags = Table(title="open_clip pretrained weights (use as openclip:ARCH/TAG)", header_style="bold")
        tags.add_column("ARCH")
        tags.add_column("TAGS")
        by_arch: dict[str, list[str]] = {}
        for arch, tag in open_clip.list_pretrained():
            by_arch.setdefault(arch, []).append(tag)
        for arch, arch_tags in by_arch.items():
            tags.add_row(arch, ", ".join(arch_tags))
        console.print(tags)
    elif what is ListWhat.models:
        from .models import BACKENDS
        from .models.registry import list_models

        rows = list_models(family)
        supported = sum(row["supported"] for row in rows)
        table = Table(title=f"Named models{f' of family {family}' if family else ''}: {supported} supported, "
                            f"{len(rows) - supported} not", header_style="bold", title_justify="left")
        table.add_column("Name", no_wrap=True)
        table.add_column("Family")
        table.add_column("Spec", overflow="fold")
        table.add_column("Native", justify="right")
        table.add_column("Pipeline")
        table.add_column("Supported", overflow="fold")
        for row in rows:
            status = "yes" if row["supported"] else f"no: {row['reason']}"
            table.add_row(row["name"], row["family"], escape(row["spec"] or "–"), str(row["native"] or "–"),
                          row["pipeline"], escape(status))
        console.print(table)
        if family:
            return
        backends = Table(title="Model specs", header_style="bold", title_justify="left")
        backends.add_column("Backend")
        backends.add_column("Spec")
        for name, description in BACKENDS.items():
            backends.add_row(name, escape(description))
        console.print(backends)
        err_console.print("open_clip's pretrained tags: lr0fm list models --openclip-tags")
    elif what is ListWhat.datasets:
        from .data import DATASETS
        from .data.lr0fm_suite import SUITE

        table = Table(title="Datasets (the first 15 make up --suite lr0fm; lay them out under one --data-root)",
                      header_style="bold", title_justify="left", show_lines=True)
        table.add_column("Name", no_wrap=True)
        table.add_column("Split")
        table.add_column("Classes", justify="right")
        table.add_column("Test images", justify="right")
        table.add_column("Expected layout under --data-root", overflow="fold")
        for name, info in SUITE.items():
            fetch = f"--download: {info.download}" if info.download else f"get it from {info.source}"
            table.add_row(name, info.split, str(info.classes), f"{info.images:,}",
                          escape(f"{info.title}: ROOT/{info.layout}") + f"\n[dim]{escape(fetch)}[/dim]")
        for name, description in DATASETS.items():
            if name not in SUITE:
                table.add_row(escape(name), "–", "–", "–", escape(description))
        console.print(table)
    elif what is ListWhat.suites:
        from .suites import SUITES

        table = Table(title="Suites (lr0fm eval --suite NAME --model ...)", header_style="bold", title_justify="left")
        table.add_column("Suite")
        table.add_column("Grid", overflow="fold")
        for name, suite in SUITES.items():
            table.add_row(name, escape(f"{suite.description}: {', '.join(suite.datasets)}"))
        console.print(table)
    else:  # protocols
        from .degrade import PAPER_PIPELINES, PROTOCOLS

        table = Table(title="Resolution protocols", header_style="bold")
        table.add_column("Protocol")
        table.add_column("Description")
        for name, description in PROTOCOLS.items():
            table.add_row(name, description)
        console.print(table)
        families = Table(title="paper protocol: pipeline per model family", header_style="bold")
        families.add_column("Family")
        families.add_column("Pipeline")
        for family, pipeline in PAPER_PIPELINES.items():
            families.add_row(family, pipeline)
        console.print(families)


@app.command("show")
def show_command(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Only models whose spec contains this text."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only datasets whose name contains this text."),
    db: Path = DB_OPTION,
):
    """Show the stored results as a table.

    Example: lr0fm show --model tiny --dataset fashion
    """
    from .api import open_results

    with open_results(db) as store:
        rows = store.results(model=model, dataset=dataset)
    if not rows:
        err_console.print(f"No stored results match in {db}.")
        return
    for table in results_tables(rows):
        console.print(table)


@app.command("export")
def export_command(
    format: str = typer.Option("csv", "--format", "-f", help=f"One of: {', '.join(EXPORT_FORMATS)}."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file (default: lr0fm-results.FORMAT)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Only models whose spec contains this text."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only datasets whose name contains this text."),
    db: Path = DB_OPTION,
):
    """Export the stored results (one row per model × dataset × resolution) to CSV, Parquet or JSON.

    Example: lr0fm export --format parquet --out results.parquet
    """
    from .api import open_results

    if format not in EXPORT_FORMATS:
        raise UserError(f"Unknown export format {format!r}; use one of: {', '.join(EXPORT_FORMATS)}.")
    with open_results(db) as store:
        path = store.export(out or Path(f"lr0fm-results.{format}"), format, model=model, dataset=dataset)
    err_console.print(f"Wrote {path}")



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
    from .report import build_report

    result = build_report(db, out, format, compare_paper=compare_paper, seed=seed, resamples=resamples,
                          model=model, dataset=dataset, top_confusions=top_confusions)
    table = Table(title="SAR and WAR (×100, ± half the 95% bootstrap interval)", header_style="bold",
                  title_justify="left")
    for column in ("Model", "Resolution", "SAR", "WAR", "Datasets"):
        table.add_column(column, justify="left" if column == "Model" else "right")
    from .report.build import with_ci

    for _, row in result.tables.sar_war.iterrows():
        table.add_row(row["model"], f"{row['resolution']} px", with_ci(row["SAR"], row["SAR_low"], row["SAR_high"]),
                      with_ci(row["WAR"], row["WAR_low"], row["WAR_high"]), str(row["n_datasets"]))
    console.print(table)
    compare = result.tables.compare
    if compare is not None and not compare.empty:
        ranks = Table(title="Rank among the paper's backbones and yours (over the shared datasets)", header_style="bold",
                      title_justify="left")
        for column in ("Model", "Resolution", "Shared datasets", "SAR rank", "WAR rank"):
            ranks.add_column(column, justify="left" if column == "Model" else "right")
        for _, row in compare.iterrows():
            ranked = row["status"] == "ranked"
            ranks.add_row(row["model"], f"{row['resolution']} px", str(row["n_datasets"]) if ranked else "0: no ranking",
                          f"{row['SAR_rank']} / {row['n_backbones'] + 1}" if ranked else "–",
                          f"{row['WAR_rank']} / {row['n_backbones'] + 1}" if ranked else "–")
        console.print(ranks)
    for note in result.notes:
        err_console.print(f"[yellow]{escape(note)}[/yellow]")
    err_console.print(f"Wrote {result.folder / 'report.html'} and {len(result.files) - 1} more file(s) in {result.folder}")


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
    from . import reference
    from .report import fit_weights, load_table, write_weights

    if from_db and table is not None:
        raise UserError("Give either --from-db or --table, not both.")
    source = "db" if from_db else "csv" if table is not None else "paper"
    frame = load_table(source, db=db, table=table)
    fit = fit_weights(frame, resolution, objective_datasets=objective, floor=floor, seed=seed, maxiter=maxiter)
    correlations = fit["correlations"]
    has_paper = "rho_war_paper" in correlations.columns
    shown = Table(title=f"WAR weights fitted at {fit['resolution']} px over {fit['n_models']} models "
                        f"(Spearman ρ of each dataset's ranking with the aggregate's)",
                  header_style="bold", title_justify="left")
    for column in ["Dataset", "Weight", *(["Paper w"] if has_paper else []), "ρ SAR", "ρ WAR",
                   *(["ρ WAR paper"] if has_paper else []), "Objective"]:
        shown.add_column(column, justify="left" if column in ("Dataset", "Objective") else "right")
    for _, row in correlations.iterrows():
        cells = [reference.DATASET_NAMES.get(row["dataset"], row["dataset"]), f"{row['weight']:.3f}"]
        if has_paper:
            cells.append(f"{row['weight_paper']:.3f}")
        cells += [f"{row['rho_sar']:.3f}", f"{row['rho_war']:.3f}"]
        if has_paper:
            cells.append(f"{row['rho_war_paper']:.3f}")
        cells.append("yes" if row["in_objective"] else "")
        shown.add_row(*cells)
    mean = ["mean", "", *([""] if has_paper else []), f"{fit['mean_rho_sar']:.3f}", f"{fit['mean_rho_war']:.3f}",
            *([f"{fit['mean_rho_war_paper']:.3f}"] if has_paper else []), ""]
    shown.add_row(*mean, style="bold")
    console.print(shown)
    if fit["dropped_models"]:
        err_console.print(f"[yellow]Left out (missing a dataset at {fit['resolution']} px): "
                          f"{escape(', '.join(fit['dropped_models']))}[/yellow]")
    if fit["violations"]:
        err_console.print(f"[yellow]Below the floor: {escape(', '.join(fit['violations']))}[/yellow]")
    if out is not None:
        err_console.print(f"Wrote {write_weights(fit, out, source)}")


analyze_app = typer.Typer(help="Analyses that run a model on images (nothing is stored in the results database).",
                          no_args_is_help=True)
app.add_typer(analyze_app, name="analyze")


@analyze_app.command("layers")
def analyze_layers_command(
    model: str = typer.Option(..., "--model", "-m", help="Model spec: lr0fm-tiny or an openclip: ViT."),
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

    Example: lr0fm analyze layers --model lr0fm-tiny --dataset fashion_mnist --limit 256 --plot layers.png
    """
    from .analysis import layer_similarity, plot_layer_similarity

    result = layer_similarity(model, dataset, resolutions, limit=limit, weights=weights, data_root=data_root,
                              split=split, protocol=protocol, pooling=pooling, batch_size=batch_size, device=device)
    shown = Table(title=f"{result.model} · {result.dataset}: cosine similarity to native {result.native} px "
                        f"({result.pooling} pooling, {result.n_images} images)", header_style="bold",
                  title_justify="left")
    shown.add_column("Layer")
    for resolution in result.resolutions:
        shown.add_column(f"{resolution} px", justify="right")
    for _, row in result.table.iterrows():
        shown.add_row(row["layer"], *(f"{row[str(r)]:.4f}" for r in result.resolutions))
    console.print(shown)
    if result.n_skipped:
        err_console.print(f"[yellow]{result.n_skipped} unreadable image(s) skipped[/yellow]")
    if out is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            result.table.to_csv(out, index=False)
        except OSError as error:
            raise UserError(f"Cannot write {out} ({error}); pass a writable path to --out.") from None
        err_console.print(f"Wrote {out}")
    if plot is not None:
        err_console.print(f"Wrote {plot_layer_similarity(result, plot)}")


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
    from .api import synthesize

    result = synthesize(captions, out, per_caption, model=model, steps=steps, guidance=guidance, batch_size=batch_size,
                        seed=seed, device=device, precision=precision, size=size, store_size=store_size,
                        limit_captions=limit_captions, console=err_console)
    err_console.print(f"{result.written} image(s) generated, {result.reused} already in {result.out}; "
                      f"{result.planned} planned for {result.captions} caption(s). Manifest: {result.manifest}")


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
    variant: str = typer.Option("always", "--variant", help="always (the paper's), resolution (strength learned per source resolution) or vpt (VPT-deep baseline)."),
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
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .api import train_tokens

    with Progress(TextColumn("tokens"), BarColumn(), MofNCompleteColumn(), TextColumn("steps · loss {task.fields[loss]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err_console) as progress:
        task = progress.add_task("train", total=steps, loss="–")

        def advance(step: int, loss: float) -> None:
            progress.update(task, completed=step, loss=f"{loss:.4f}")

        result = train_tokens(
            model, pool, out, steps=steps, batch_size=batch_size, group_size=group_size, lr=lr, weight_decay=weight_decay,
            warmup=warmup, seed=seed, variant=variant, first_block=first_block, prompts=prompts, buckets=buckets,
            checkpoint_every=checkpoint_every, resume=resume, overwrite=overwrite, weights=weights, data_root=data_root,
            device=device, precision=precision, workers=workers, callback=advance,
        )
    resumed = f", resumed at step {result.resumed_from}" if result.resumed_from else ""
    err_console.print(f"Wrote {result.path} ({result.token_parameters:,} token parameters, final loss {result.final_loss:.4f}, "
                      f"{result.seconds:.0f} s{resumed}). Evaluate it: lr0fm eval --model \"{model}+tokens={out}\"",
                      soft_wrap=True, highlight=False, markup=False)


@tokens_app.command("info")
def tokens_info_command(path: Path = typer.Argument(..., help="A tokens file written by lr0fm tokens train.")):
    """Show what a tokens file holds: base model, layout, parameter count and training settings.

    Example: lr0fm tokens info tiny.tokens.safetensors
    """
    from .tokens.files import read_tokens

    metadata, tensors = read_tokens(path)
    table = Table(title=f"LR-TK0 tokens {path}", header_style="bold", title_justify="left", show_header=False)
    table.add_column("Field")
    table.add_column("Value", overflow="fold")
    table.add_row("base model", escape(f"{metadata['base_spec']} (weights {metadata['base_fingerprint']})"))
    for key, value in metadata["layout"].to_dict().items():
        table.add_row(key, str(value))
    parameters = sum(t.numel() for name, t in tensors.items() if name != "logit_scale")
    table.add_row("token parameters", f"{parameters:,}")
    for key in ("pool", "steps", "batch_size", "lr", "seed", "buckets", "final_loss", "seconds"):
        if key in metadata["training"]:
            table.add_row(key, escape(str(metadata["training"][key])))
    table.add_row("lr0fm version", metadata.get("lr0fm_version", "?"))
    console.print(table)


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
