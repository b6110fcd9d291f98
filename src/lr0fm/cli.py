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
    model: list[str] = typer.Option(["lr0fm-tiny"], "--model", "-m", help="Model spec; repeat for several."),
    dataset: list[str] = typer.Option(["fashion_mnist"], "--dataset", "-d", help="Dataset name or folder:PATH; repeat for several."),
    resolutions: Optional[str] = typer.Option(None, "--resolutions", "-r", help="Comma list, e.g. native,128,64,32,16 (default: native + the model's sweep)."),
    protocol: str = typer.Option("canonical", "--protocol", "-p", help="Resolution protocol: canonical or paper."),
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

    Example: lr0fm eval --model openclip:ViT-B-32 --weights vitb32.safetensors --dataset folder:/data/pets -r native,64,32,16
    """
    from .runner import EvalConfig, run, summarize_skips

    config = EvalConfig(
        models=model, datasets=dataset, resolutions=resolutions, protocol=protocol, weights=weights,
        data_root=data_root, split=split, download=download, limit=limit, db=db, force=force,
        batch_size=batch_size, workers=workers, device=device, precision=precision,
    )
    rows, outcomes = run(config, console=err_console)
    for table in results_tables(rows):
        console.print(table)
    reused = sum(len(o.reused) for o in outcomes)
    computed = sum(len(o.computed) for o in outcomes)
    err_console.print(f"{computed} cell(s) computed, {reused} reused from {db} (use --force to recompute).")
    for line in summarize_skips(rows, outcomes):
        err_console.print(f"[yellow]{line}[/yellow]")


class ListWhat(str, Enum):
    models = "models"
    datasets = "datasets"
    protocols = "protocols"


@app.command("list")
def list_command(what: ListWhat = typer.Argument(..., help="models, datasets or protocols.")):
    """List the model backends (and open_clip's pretrained tags), datasets, or resolution protocols.

    Example: lr0fm list protocols
    """
    if what is ListWhat.models:
        from .models import BACKENDS

        table = Table(title="Model specs", header_style="bold")
        table.add_column("Backend")
        table.add_column("Spec")
        for name, description in BACKENDS.items():
            table.add_row(name, description)
        console.print(table)
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
    elif what is ListWhat.datasets:
        from .data import DATASETS

        table = Table(title="Datasets", header_style="bold")
        table.add_column("Name")
        table.add_column("Description")
        for name, description in DATASETS.items():
            table.add_row(name, description)
        console.print(table)
    else:
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
