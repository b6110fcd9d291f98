"""What the `lr0fm` command prints: rich tables and notes built from the API's rows and results.

Every function takes plain rows or an API result and returns a `Shown`: the renderables for standard
output (tables) and those for standard error (notes, hints, warnings). Nothing here computes a metric,
reads a database or writes a file; γ comes from `metrics.relative_robustness`, resolution order from
`resolution.order`. Listings also come as plain CSV or JSON text for `lr0fm list --format csv|json`.
"""

from __future__ import annotations

import csv
import io
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from .metrics import relative_robustness
from .resolution import order as resolution_order

LIST_FORMATS = ("table", "csv", "json")
DASH = "–"


@dataclass
class Shown:
    """Renderables for standard output (`out`) and for standard error (`err`), printed in order."""

    out: list[RenderableType] = field(default_factory=list)
    err: list[RenderableType] = field(default_factory=list)


def _table(title: str, *columns: str, right: tuple[str, ...] = (), **options) -> Table:
    """A table with a left-aligned title and bold header; `right` names the right-aligned columns."""
    table = Table(title=Text(title), header_style="bold", title_justify="left", **options)
    for column in columns:
        table.add_column(Text(column), justify="right" if column in right else "left", overflow="fold")
    return table


def _add(table: Table, *cells: str, **options) -> None:
    """Add a row of plain text: names, specs and paths are never read as rich markup."""
    table.add_row(*(Text(cell) for cell in cells), **options)


def _percent(value) -> str:
    return DASH if value is None or value != value else f"{100 * value:.2f}"


def _number(value, digits: int = 3) -> str:
    return DASH if value is None or value != value else f"{value:.{digits}f}"


def _warning(text: str) -> Text:
    return Text(text, style="yellow")


def _notes(title: str, notes: list[tuple[str, str]]) -> Table:
    """Key/text pairs below a table, the text indented under its own column when it wraps."""
    grid = Table(title=Text(title), title_justify="left", title_style="bold", show_header=False, box=None,
                 padding=(0, 1), pad_edge=False)
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for key, text in notes:
        _add(grid, key, text)
    return grid


# -------------------------------------------------------------------------------------------- evaluation


def results_tables(rows: list[dict]) -> list[Table]:
    """One table per run (model · dataset · split · protocol), one row per resolution, with γ = top-1 at that
    resolution / top-1 at native of the same run."""
    runs: dict[int, list[dict]] = {}
    for row in rows:
        runs.setdefault(row["run_id"], []).append(row)
    tables = []
    for run_rows in runs.values():
        first = run_rows[0]
        table = _table(f"{first['model_spec']} · {first['dataset']} ({first['split']}) · {first['protocol']} protocol",
                       "Resolution", "Top-1 %", "Top-5 %", "Mean recall %", "γ", "Images", "Skipped",
                       right=("Resolution", "Top-1 %", "Top-5 %", "Mean recall %", "γ", "Images", "Skipped"))
        native = next((r["top1"] for r in run_rows if r["resolution"] == "native"), None)
        gammas = relative_robustness([r["top1"] for r in run_rows], native).reshape(-1)
        for row, gamma in zip(run_rows, gammas):
            resolution = f"native {row['pixels']} px" if row["resolution"] == "native" else f"{row['resolution']} px"
            _add(table, resolution, _percent(row["top1"]), _percent(row["top5"]),
                 _percent(row["mean_per_class_recall"]), _number(gamma), str(row["n"]), str(row["n_skipped"]))
        tables.append(table)
    return tables


def batch_table(result) -> Table:
    """Top-1 % of every (model, dataset) of a batch, one column per resolution, in the planned order."""
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for row in result.rows:
        cells.setdefault((row["model_spec"], row["dataset"]), {})[row["resolution"]] = _percent(row["top1"])
    columns = resolution_order({row["resolution"] for row in result.rows})
    models = {name: i for i, name in enumerate(result.models)}
    datasets = {name: i for i, name in enumerate(result.datasets)}
    protocols = ", ".join(sorted({row["protocol"] for row in result.rows}))
    suite = f" · {result.suite.name} suite" if result.suite else ""
    headers = [r if r.is_native else f"{r} px" for r in columns]
    table = _table(f"Top-1 %{suite} · {protocols} protocol", "Model", "Dataset", *headers, right=tuple(headers))
    order = sorted(cells, key=lambda key: (models.get(key[0], len(models)), key[0],
                                           datasets.get(key[1], len(datasets)), key[1]))
    for model, dataset in order:
        _add(table, model, dataset, *(cells[(model, dataset)].get(r, DASH) for r in columns))
    return table


def skip_table(rows: list[tuple[str, str, str]]) -> Table:
    """The "Not evaluated" table of a batch: (models, datasets, why) per line."""
    table = _table("Not evaluated", "Model", "Dataset", "Why")
    for row in rows:
        _add(table, *row)
    return table


def evaluation(result) -> Shown:
    """An `execute.EvalResult`: a table per run, or one top-1 table for a batch (`result.batch`), then the
    cell counts, unreadable images and, for a batch, what was not evaluated and why."""
    shown = Shown()
    if result.batch:
        shown.out = [batch_table(result)] if result.rows else []
    else:
        shown.out = results_tables(result.rows)
    shown.err.append(Text(f"{result.computed} cell(s) computed, {result.reused} reused from {result.db} "
                          f"(use --force to recompute)."))
    shown.err += [_warning(line) for line in result.unreadable_lines()]
    for model, dataset, resolutions, holder in result.busy:
        shown.err.append(_warning(f"{model} · {dataset} at {', '.join(resolutions)}: another lr0fm process ({holder}) is "
                                  f"computing {'it' if len(resolutions) == 1 else 'them'}; rerun the same command when "
                                  f"it has finished to see the results."))
    if not result.batch:
        return shown
    skipped = result.skip_rows()
    if skipped:
        shown.err.append(skip_table(skipped))
    if result.suite is not None and result.rows:
        shown.err.append(Text(f"Compare with the paper's 66 backbones: lr0fm report --compare-paper --db {result.db}"))
    if result.skipped:
        # Unsupported models left out of `all` are listed but were never planned: they do not count.
        shown.err.append(_warning(f"{len(result.skipped)} skip(s) in the table; fix them and rerun the same command "
                                  f"to fill in the missing cells (stored ones are reused)."))
    return shown


def stored_results(rows: list[dict], db) -> Shown:
    """`lr0fm show`: a table per run, or a note that nothing matched."""
    if not rows:
        return Shown(err=[Text(f"No stored results match in {db}.")])
    return Shown(out=results_tables(rows))


# -------------------------------------------------------------------------------------------- listings


def as_csv(rows: list[dict]) -> str:
    """Rows as CSV text with a header line (the keys of the first row); None is an empty field."""
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def as_json(rows: list[dict]) -> str:
    """Rows as a JSON list of objects (None is null)."""
    return json.dumps(rows, indent=2) + "\n"


def as_text(rows: list[dict], format: str) -> str:
    """Rows as "csv" or "json" text for scripts (no markup, every field)."""
    return as_csv(rows) if format == "csv" else as_json(rows)


def _yes(value: bool) -> str:
    return "yes" if value else "no"


MORE_ABOUT_MODELS = ("Model specs (lr0fm-tiny, openclip:, hf:): lr0fm list backends · "
                     "open_clip's pretrained tags: lr0fm list models --openclip-tags")


def models_listing(rows: list[dict], wide: bool = False) -> Shown:
    """`lr0fm list models`: name, family, native, pipeline and supported, with the reasons and caveats
    numbered below the table (each text once); `wide` puts spec, paper name and the texts in columns."""
    supported = sum(row["supported"] for row in rows)
    families = {row["family"] for row in rows}
    of_family = f" of family {next(iter(families))}" if len(families) == 1 else ""
    title = f"Named models{of_family}: {supported} supported, {len(rows) - supported} not"
    if wide:
        table = _table(title, "Name", "Family", "Spec", "Native", "Pipeline", "Supported", "Paper name",
                       "Reason or note", right=("Native",))
        for row in rows:
            _add(table, row["name"], row["family"], row["spec"] or DASH, str(row["native"] or DASH), row["pipeline"],
                 _yes(row["supported"]), row["paper_name"] or DASH, row["reason"] or row["note"])
        return Shown(out=[table], err=[Text(MORE_ABOUT_MODELS)])
    table = _table(title, "Name", "Family", "Native", "Pipeline", "Supported", right=("Native",))
    numbers: dict[str, int] = {}  # note text -> its number, in order of first use
    for row in rows:
        texts = [f"no: {row['reason']}" if row["reason"] else "", row["note"]]
        marks = "".join(f" [{numbers.setdefault(text, len(numbers) + 1)}]" for text in texts if text)
        _add(table, row["name"], row["family"], str(row["native"] or DASH), row["pipeline"],
             _yes(row["supported"]) + marks)
    shown = Shown(out=[table], err=[Text("Specs and the other fields: lr0fm list models --wide, or --format csv"),
                                    Text(MORE_ABOUT_MODELS)])
    if numbers:
        shown.out.append(_notes("Notes", [(f"[{n}]", text) for text, n in numbers.items()]))
    return shown


def backends_listing(rows: list[dict], wide: bool = False) -> Shown:
    """`lr0fm list backends`: the spec forms each backend takes."""
    table = _table("Model specs (--model SPEC)", "Backend", "Spec", "--weights")
    for row in rows:
        _add(table, row["backend"], row["description"], _yes(row["weights"]))
    return Shown(out=[table])


def openclip_tags_listing(rows: list[dict], wide: bool = False) -> Shown:
    """`lr0fm list models --openclip-tags`: one line per architecture with its tags."""
    by_arch: dict[str, list[str]] = {}
    for row in rows:
        by_arch.setdefault(row["arch"], []).append(row["tag"])
    table = _table("open_clip pretrained weights (use as openclip:ARCH/TAG)", "ARCH", "TAGS")
    for arch, tags in by_arch.items():
        _add(table, arch, ", ".join(tags))
    return Shown(out=[table])


def datasets_listing(rows: list[dict], wide: bool = False) -> Shown:
    """`lr0fm list datasets`: split, classes, images and download per dataset, the expected layout and
    source below the table; `wide` puts them in a column."""
    title = "Datasets (the first 15 make up --suite lr0fm; lay them out under one --data-root)"
    columns = ["Name", "Split", "Classes", "Test images", "--download"]
    table = _table(title, *columns, *(["Layout under --data-root"] if wide else []), right=("Classes", "Test images"),
                   show_lines=wide)
    notes = []
    for row in rows:
        if row["suite"]:
            fetch = f"--download: {row['download']}" if row["download"] else f"get it from {row['source']}"
            about = f"{row['title']}: ROOT/{row['layout']}; {fetch}"
            cells = [row["name"], row["split"], str(row["classes"]), f"{row['images']:,}", _yes(row["download"])]
        else:
            about = row["description"]
            cells = [row["name"], DASH, DASH, DASH, DASH]
        _add(table, *cells, *([about] if wide else []))
        notes.append((row["name"], about))
    shown = Shown(out=[table])
    if not wide:
        shown.out.append(_notes("Expected layout under --data-root, and where to get the files", notes))
    return shown


def protocols_listing(rows: list[dict], wide: bool = False) -> Shown:
    """`lr0fm list protocols`: what each resolution protocol does."""
    table = _table("Resolution protocols", "Protocol", "Description")
    for row in rows:
        _add(table, row["name"], row["description"])
    return Shown(out=[table], err=[Text("The paper protocol's pipeline per model family: lr0fm list pipelines")])


def pipelines_listing(rows: list[dict], wide: bool = False) -> Shown:
    """`lr0fm list pipelines`: the paper protocol's resize path per model family."""
    table = _table("Paper pipelines", "Family", "Pipeline")
    for row in rows:
        _add(table, row["family"], row["pipeline"])
    return Shown(out=[table])


def suites_listing(rows: list[dict], wide: bool = False) -> Shown:
    """`lr0fm list suites`: each suite's grid."""
    table = _table("Suites (lr0fm eval --suite NAME --model ...)", "Suite", "Grid")
    for row in rows:
        _add(table, row["name"], f"{row['description']}: {row['datasets'].replace(',', ', ')}")
    return Shown(out=[table])


# -------------------------------------------------------------------------------------------- files


def wrote(path) -> Shown:
    """"Wrote PATH" on standard error; nothing when `path` is None (the output went to standard output)."""
    return Shown(err=[] if path is None else [Text(f"Wrote {path}")])


def synthesized(result) -> Shown:
    """`lr0fm synth`: how many images were generated and reused, and where the manifest is."""
    return Shown(err=[Text(f"{result.written} image(s) generated, {result.reused} already in {result.out}; "
                           f"{result.planned} planned for {result.captions} caption(s). Manifest: {result.manifest}")])


@contextmanager
def training_progress(console: Console, steps: int) -> Iterator[Callable[[int, float], None]]:
    """A progress bar of token training on `console`; yields the `callback(step, loss)` that advances it."""
    columns = (TextColumn("tokens"), BarColumn(), MofNCompleteColumn(), TextColumn("steps · loss {task.fields[loss]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    # Started by the first step, so an error while loading the model or a checkpoint leaves no bar above it.
    progress = Progress(*columns, console=console)
    task = progress.add_task("train", total=steps, loss=DASH)

    def advance(step: int, loss: float) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=step, loss=f"{loss:.4f}")

    try:
        yield advance
    finally:
        if progress.live.is_started:
            progress.stop()


def tokens_trained(result, model: str, out) -> Shown:
    """`lr0fm tokens train`: the file written, its size, loss and time, and how to evaluate it."""
    resumed = f", resumed at step {result.resumed_from}" if result.resumed_from else ""
    return Shown(err=[Text(f"Wrote {result.path} ({result.token_parameters:,} token parameters, final loss "
                           f"{result.final_loss:.4f}, {result.seconds:.0f} s{resumed}). Evaluate it: "
                           f"lr0fm eval --model \"{model}+tokens={out}\"")])


# -------------------------------------------------------------------------------------------- reports


def report(result) -> Shown:
    """`lr0fm report`: SAR/WAR with intervals, the rank among the paper's backbones, notes, files written."""
    from .report.build import with_ci

    table = _table("SAR and WAR (×100, ± half the 95% bootstrap interval)", "Model", "Resolution", "SAR", "WAR",
                   "Datasets", right=("Resolution", "SAR", "WAR", "Datasets"))
    for _, row in result.tables.sar_war.iterrows():
        _add(table, row["model"], f"{row['resolution']} px", with_ci(row["SAR"], row["SAR_low"], row["SAR_high"]),
             with_ci(row["WAR"], row["WAR_low"], row["WAR_high"]), str(row["n_datasets"]))
    shown = Shown(out=[table])
    compare = result.tables.compare
    if compare is not None and not compare.empty:
        ranks = _table("Rank among the paper's backbones and yours (over the shared datasets)", "Model", "Resolution",
                       "Shared datasets", "SAR rank", "WAR rank",
                       right=("Resolution", "Shared datasets", "SAR rank", "WAR rank"))
        for _, row in compare.iterrows():
            ranked = row["status"] == "ranked"
            _add(ranks, row["model"], f"{row['resolution']} px", str(row["n_datasets"]) if ranked else "0: no ranking",
                 f"{row['SAR_rank']} / {row['n_backbones'] + 1}" if ranked else DASH,
                 f"{row['WAR_rank']} / {row['n_backbones'] + 1}" if ranked else DASH)
        shown.out.append(ranks)
    shown.err = [_warning(note) for note in result.notes]
    shown.err.append(Text(f"Wrote {result.folder / 'report.html'} and {len(result.files) - 1} more file(s) in "
                          f"{result.folder}"))
    return shown


def weights_fit(fit: dict) -> Shown:
    """`lr0fm weights fit`: fitted (and the paper's) weight and Spearman agreements per dataset, then the mean."""
    from . import reference

    correlations = fit["correlations"]
    has_paper = "rho_war_paper" in correlations.columns
    columns = ["Dataset", "Weight", *(["Paper w"] if has_paper else []), "ρ SAR", "ρ WAR",
               *(["ρ WAR paper"] if has_paper else []), "Objective"]
    table = _table(f"WAR weights fitted at {fit['resolution']} px over {fit['n_models']} models "
                   f"(Spearman ρ of each dataset's ranking with the aggregate's)",
                   *columns, right=tuple(c for c in columns if c not in ("Dataset", "Objective")))
    for _, row in correlations.iterrows():
        cells = [reference.DATASET_NAMES.get(row["dataset"], row["dataset"]), _number(row["weight"])]
        if has_paper:
            cells.append(_number(row["weight_paper"]))
        cells += [_number(row["rho_sar"]), _number(row["rho_war"])]
        if has_paper:
            cells.append(_number(row["rho_war_paper"]))
        cells.append("yes" if row["in_objective"] else "")
        _add(table, *cells)
    mean = ["mean", "", *([""] if has_paper else []), _number(fit["mean_rho_sar"]), _number(fit["mean_rho_war"]),
            *([_number(fit["mean_rho_war_paper"])] if has_paper else []), ""]
    _add(table, *mean, style="bold")
    shown = Shown(out=[table])
    if fit["dropped_models"]:
        shown.err.append(_warning(f"Left out (missing a dataset at {fit['resolution']} px): "
                                  f"{', '.join(fit['dropped_models'])}"))
    if fit["violations"]:
        shown.err.append(_warning(f"Below the floor: {', '.join(fit['violations'])}"))
    if fit.get("out") is not None:
        shown.err.append(Text(f"Wrote {fit['out']}"))
    return shown


def layer_table(result, out=None, plot=None) -> Shown:
    """`lr0fm analyze layers`: cosine similarity to native per layer and low resolution; `out` and `plot`
    are the files written, if any."""
    headers = [f"{r} px" for r in result.resolutions]
    table = _table(f"{result.model} · {result.dataset}: cosine similarity to native {result.native} px "
                   f"({result.pooling} pooling, {result.n_images} images)", "Layer", *headers, right=tuple(headers))
    for _, row in result.table.iterrows():
        _add(table, row["layer"], *(f"{row[str(r)]:.4f}" for r in result.resolutions))
    shown = Shown(out=[table])
    if result.n_skipped:
        shown.err.append(_warning(f"{result.n_skipped} unreadable image(s) skipped"))
    shown.err += [Text(f"Wrote {path}") for path in (out, plot) if path is not None]
    return shown


TOKEN_TRAINING_FIELDS = ("pool", "steps", "batch_size", "lr", "seed", "buckets", "final_loss", "seconds")


def tokens_info(info: dict) -> Shown:
    """`lr0fm tokens info`: base model, layout, parameter count and the main training settings."""
    table = _table(f"LR-TK0 tokens {info['path']}", "Field", "Value", show_header=False)
    _add(table, "base model", f"{info['base_spec']} (weights {info['base_fingerprint']})")
    for key, value in info["layout"].items():
        _add(table, key, str(value))
    _add(table, "token parameters", f"{info['token_parameters']:,}")
    for key in TOKEN_TRAINING_FIELDS:
        if key in info["training"]:
            _add(table, key, str(info["training"][key]))
    _add(table, "lr0fm version", info["lr0fm_version"])
    return Shown(out=[table])


def findings(result) -> Shown:
    """`lr0fm analyze findings`: the verdict per claim, then every statistic (x100 for paired differences)."""
    verdicts = _table(f"The paper's findings at {result.resolutions[0]} px"
                      if result.resolutions[0] != "mean" else "The paper's findings, averaged over 128-16 px",
                      "Claim", "Verdict", "Evidence")
    for row in result.verdicts.itertuples():
        _add(verdicts, row.title, row.verdict, row.text.split(": ", 1)[-1])
    level = round(100 * result.level)
    stats = _table(f"Statistics ({level}% percentile bootstrap intervals, {result.resamples} resamples, "
                   f"seed {result.seed}; paired differences ×100)",
                   "Claim", "Test", "Metric", "Resolution", "n", "Estimate", "CI", "p", "In direction",
                   right=("n", "Estimate", "CI", "p", "In direction"))
    for row in result.statistics.itertuples():
        scale = 100 if row.test == "paired" else 1
        interval = DASH if row.low != row.low else f"[{scale * row.low:.2f}, {scale * row.high:.2f}]"
        _add(stats, row.claim, f"{row.test}: {row.what}", row.metric, row.resolution, str(row.n),
             _number(scale * row.estimate, 2), interval, DASH if row.p_value != row.p_value else f"{row.p_value:.2g}",
             DASH if row.in_direction != row.in_direction else f"{int(row.in_direction)}/{row.n}")
    shown = Shown(out=[verdicts, stats])
    origins = result.models["origin"].value_counts()
    shown.err.append(Text(f"{origins.get('paper', 0)} paper backbones and {origins.get('database', 0)} of your "
                          "models with metadata."))
    for note in result.notes:
        shown.err.append(_warning(note))
    if result.left_out:
        shown.err.append(_notes("Left out", list(result.left_out)))
    for path in result.files:
        shown.err.append(Text(f"Wrote {path}"))
    return shown


__all__ = [
    "LIST_FORMATS", "Shown", "as_csv", "as_json", "as_text", "backends_listing", "batch_table", "datasets_listing",
    "evaluation", "findings", "layer_table", "models_listing", "openclip_tags_listing", "pipelines_listing",
    "protocols_listing", "report", "results_tables", "skip_table", "stored_results", "suites_listing", "synthesized", "tokens_info",
    "tokens_trained", "training_progress", "weights_fit", "wrote",
]
