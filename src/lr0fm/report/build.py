"""`lr0fm report`: read the results database, compute the tables, draw the figures, write the files.

Everything is written to a fresh folder beside `out` first and moved into place at the end, so an
interrupted or failed report never leaves half-written files.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from .. import __version__, reference
from ..errors import UserError
from ..fileio import atomic_path, fsync_folder, write_text_atomic
from ..metrics import ALPHA, BELOW_LOWEST, NATIVE
from ..store import DEFAULT_DB, ResultStore
from . import plots
from .collect import Collected, collect, order_resolutions
from .compute import DEFAULT_WEIGHT, PAPER_LOW_RESOLUTIONS, ReportTables, compute, display_dataset
from .document import Details, Document, Figure, Paragraph, Section, Table, to_html, to_latex, to_markdown
from .findings_section import draw_findings, findings_section

REPORT_FORMATS = ("md", "csv", "latex")
DEFAULT_OUT = Path("lr0fm-report")
CSV_FILES = ("accuracy.csv", "robustness.csv", "sar_war.csv", "plausibility.csv", "confusions.csv",
             "half_accuracy.csv", "lowest_correct.csv", "breaking_classes.csv", "rank_stability.csv",
             "compare_paper.csv", "compare_paper_backbones.csv")
FIGURE_FILES = ("accuracy.png", "sar_war.png", "lowest_correct.png", "compare_paper.png")
# Every file a report may write: stale ones from an earlier report in the same folder are removed.
OWNED_FILES = ("report.html", "report.md", "report.tex", *CSV_FILES, *FIGURE_FILES)


@dataclass
class ReportResult:
    folder: Path
    files: list[str]
    tables: ReportTables
    notes: list[str]


def parse_formats(formats: str | Sequence[str] | None) -> list[str]:
    """'md,csv' or ['md', 'latex'] -> validated list; None -> every format. 'tex' is accepted for latex."""
    if formats is None:
        return list(REPORT_FORMATS)
    items = [formats] if isinstance(formats, str) else list(formats)
    chosen = []
    for item in items:
        for piece in str(item).split(","):
            name = {"tex": "latex", "markdown": "md"}.get(piece.strip().lower(), piece.strip().lower())
            if not name:
                continue
            if name not in REPORT_FORMATS:
                raise UserError(f"Unknown report format {piece.strip()!r}; use md, csv or latex "
                                "(the HTML report and the PNG figures are always written).")
            if name not in chosen:
                chosen.append(name)
    return chosen or list(REPORT_FORMATS)


# ---------------------------------------------------------------------------------------------------------------
# Number formatting


def _finite(value) -> bool:
    return value is not None and not pd.isna(value) and math.isfinite(float(value))


def with_ci(estimate, low, high, scale: float = 100.0, digits: int = 2) -> str:
    """'57.02 ± 1.23': the ± is half the width of the bootstrap interval (which need not be symmetric)."""
    if not _finite(estimate):
        return "–"
    text = f"{scale * float(estimate):.{digits}f}"
    if _finite(low) and _finite(high):
        text += f" ± {scale * (float(high) - float(low)) / 2:.{digits}f}"
    return text


def _number(value, scale: float = 100.0, digits: int = 2) -> str:
    return f"{scale * float(value):.{digits}f}" if _finite(value) else "–"


def _resolution_header(resolution: str) -> str:
    return "native" if resolution == NATIVE else f"{resolution} px"


# ---------------------------------------------------------------------------------------------------------------
# The document


def _grid(frame: pd.DataFrame, column: str, resolutions: list[str], scale: float, digits: int,
          native_pixels: dict | None = None) -> tuple[list[str], list[list[str]]]:
    """Rows model × dataset, columns resolutions, cells 'estimate ± half CI'."""
    headers = ["Model", "Dataset"] + (["Native px"] if native_pixels is not None else []) + \
        [_resolution_header(r) for r in resolutions]
    rows = []
    for (model, dataset), part in frame.groupby(["model", "dataset"], sort=False):
        cells = part.set_index("resolution")
        row = [model, display_dataset(dataset)]
        if native_pixels is not None:
            row.append(str(native_pixels[(model, dataset)]))
        for r in resolutions:
            if r in cells.index:
                c = cells.loc[r]
                row.append(with_ci(c[column], c[f"{column}_low"], c[f"{column}_high"], scale, digits))
            else:
                row.append("–")
        rows.append(row)
    return headers, rows


def _overview(collected: Collected) -> Table:
    rows = []
    for run in collected.runs:
        native = run.rows[NATIVE]
        low = [r for r in run.resolutions if r != NATIVE]
        rows.append([run.model, display_dataset(run.dataset), run.split, run.protocol, str(run.native_pixels),
                     ", ".join(low), str(run.n_classes), str(native["n"]), str(native["n_skipped"]), str(run.run_id)])
    return Table(["Model", "Dataset", "Split", "Protocol", "Native px", "Low resolutions (px)", "Classes",
                  "Images", "Unreadable", "Run"], rows, align="llllrlrrrr")


def _compare_section(tables: ReportTables, files: list[str]) -> Section:
    compare = tables.compare
    section = Section("Compared with the paper's 66 backbones")
    section.blocks.append(Paragraph(
        "SAR and WAR average over datasets, so a model can only be ranked against others over the same datasets. "
        "For each of your models and each of the paper's low resolutions (128, 64, 32, 16 px) it was evaluated "
        "at, the 66 backbones' SAR and WAR are recomputed from their published accuracies restricted to the "
        "paper datasets your model has at that resolution (WAR with the paper's weights, class counts corrected), "
        "and your model is placed among them. Rank 1 is the best; a model that ties a backbone shares its rank. "
        "Datasets outside the paper's 15 do not enter this comparison."))
    if compare is None or compare.empty:
        section.blocks.append(Paragraph(
            "None of your models was evaluated at 128, 64, 32 or 16 px, so there is nothing to compare."))
        return section
    no_overlap = compare[compare["status"] == "no overlap"]
    for model, part in no_overlap.groupby("model", sort=False):
        others = sorted({d for cell in part["left_out"] for d in cell.split(";") if d})
        section.blocks.append(Paragraph(
            f"**No ranking for {model}** at {', '.join(f'{r} px' for r in part['resolution'])}: it was evaluated "
            f"only on datasets the paper did not use ({', '.join(others)}), and robustness on different datasets "
            "is not comparable, so no placing among the paper's backbones is given."))
    ranked = compare[compare["status"] == "ranked"]
    if ranked.empty:
        return section
    rows = []
    for _, row in ranked.iterrows():
        total = int(row["n_backbones"]) + 1
        rows.append([row["model"], f"{row['resolution']} px", str(row["n_datasets"]),
                     ", ".join(display_dataset(d) for d in row["datasets"].split(";")),
                     _number(row["SAR"]), f"{row['SAR_rank']} / {total}", _number(row["WAR"]),
                     f"{row['WAR_rank']} / {total}", row["WAR_above"] or "–", row["WAR_below"] or "–"])
    section.blocks.append(Table(["Model", "Resolution", "Shared", "Datasets", "SAR ×100", "SAR rank", "WAR ×100",
                                 "WAR rank", "Next better (WAR)", "Next worse (WAR)"], rows,
                                caption="Rank among the paper's backbones plus your model.", align="llrlrrrrll"))
    left = ranked[ranked["left_out"] != ""]
    if not left.empty:
        names = sorted({d for cell in left["left_out"] for d in cell.split(";") if d})
        section.blocks.append(Paragraph(f"Left out of this comparison (not among the paper's datasets): "
                                        f"{', '.join(names)}."))
    if "compare_paper.png" in files:
        section.blocks.append(Figure("compare_paper.png", "The paper's backbones (grey) sorted by SAR and WAR "
                                     "over the datasets shared with your model; your models in red."))
    return section


def _px(value, lowest) -> str:
    """A resolution in pixels; BELOW_LOWEST reads '< lowest px', NaN a dash."""
    if not _finite(value):
        return "–"
    return f"< {int(lowest)}" if float(value) == BELOW_LOWEST else f"{float(value):.1f}"


def _px_interval(row) -> str:
    if not (_finite(row["half_px_low"]) and _finite(row["half_px_high"])):
        return "–"
    return f"[{_px(row['half_px_low'], row['lowest_px'])}, {_px(row['half_px_high'], row['lowest_px'])}]"


def _profile_sections(tables: ReportTables, files: list[str]) -> list[Section]:
    """Half-accuracy resolution, lowest correct resolution per image (and the classes that break first),
    rank stability."""
    level = round(100 * tables.level)
    sections = []

    section = Section("Half-accuracy resolution")
    section.blocks.append(Paragraph(
        "The resolution at which a model keeps half of its native top-1 accuracy: walking down from native, the "
        "first measured resolution below half and the one above it bracket the crossing, interpolated linearly "
        "in accuracy on a log2 scale of pixels. *Raw* halves the top-1 itself; *above chance* halves the part "
        "above guessing, 1 / classes + (native − 1 / classes) / 2, which is the fairer target on datasets with "
        "few classes. A model that never falls below half reads \"< lowest measured px\": the crossing is below "
        "the measured range and is not extrapolated. Over datasets the value is the median on a log2 scale "
        "(censored datasets count as the lowest), because a geometric mean would need a number for them. "
        f"Intervals: {level}% bootstrap over images, the same resamples as above; a bound among censored "
        "resamples is itself \"< lowest\"."))
    rows = []
    half = tables.half_accuracy
    for (model, dataset), part in half.groupby(["model", "dataset"], sort=False, dropna=False):
        cells = part.set_index("accuracy")
        first = part.iloc[0]
        name = (f"median of {int(first['n_datasets'])} datasets" if pd.isna(dataset) else display_dataset(dataset))
        native = "–" if pd.isna(first["native_px"]) else str(int(first["native_px"]))
        row = [model, name, native, str(int(first["lowest_px"]))]
        for kind in ("top1", "above_chance"):
            if kind in cells.index:
                row += [_px(cells.loc[kind, "half_px"], first["lowest_px"]), _px_interval(cells.loc[kind])]
            else:
                row += ["–", "–"]
        rows.append(row)
    if rows:
        section.blocks.append(Table(["Model", "Dataset", "Native px", "Lowest px", "Raw (px)", f"{level}% CI",
                                     "Above chance (px)", f"{level}% CI"], rows,
                                    caption="Resolution keeping half the native top-1 accuracy", align="llrrrrrr"))
    else:
        section.blocks.append(Paragraph("No model has results below its native resolution."))
    sections.append(section)

    section = Section("Lowest resolution still correct, per image")
    section.blocks.append(Paragraph(
        "For each image, the lowest resolution at which it is still classified correctly *and* stays correct at "
        "every higher measured resolution up to native; a correct answer again at a lower resolution after a "
        "miss does not count. The lowest resolution's column (≤) holds the images correct at every resolution; "
        "images already wrong at native are counted apart. Shares of the readable images (%), "
        f"± half the {level}% bootstrap interval."))
    if "lowest_correct.png" in files:
        section.blocks.append(Figure("lowest_correct.png", "Images by the lowest resolution down to which they "
                                     "stay correct, per model and dataset."))
    frame = tables.lowest_correct
    layouts: dict[tuple, list[list[str]]] = {}
    for (model, dataset), part in frame.groupby(["model", "dataset"], sort=False):
        layout = tuple(part["category"])
        layouts.setdefault(layout, []).append(
            [model, display_dataset(dataset), str(int(part["n_images"].iloc[0]))] +
            [with_ci(r["fraction"], r["fraction_low"], r["fraction_high"], 100, 1) for _, r in part.iterrows()])
    for layout, rows in layouts.items():
        headers = ["Model", "Dataset", "Images"] + [
            c if c == "wrong at native" else "native" if c == NATIVE else f"{c} px" for c in layout]
        section.blocks.append(Table(headers, rows, caption="Share of images by their lowest correct resolution (%)",
                                    align="llr" + "r" * len(layout)))
    breaking = tables.breaking_classes
    if not breaking.empty:
        details = Details("Which classes break first")
        details.blocks.append(Paragraph(
            "Per class, over its images correct at native: the share broken by each low resolution (wrong there "
            "or at some higher one) and the median breaking resolution, the highest resolution by which half of "
            "them have broken (\"<\" when fewer than half break in the measured range), the shares ± half "
            f"their {level}% bootstrap interval. Classes that break first are listed first; all classes are in "
            "breaking_classes.csv."))
        for (model, dataset), part in breaking.groupby(["model", "dataset"], sort=False):
            resolutions = list(dict.fromkeys(part["resolution"]))
            lowest = int(part["pixels"].min())
            rows = []
            for (rank, name), one in part.groupby(["rank", "class_name"], sort=False):
                if rank > 5:
                    break
                first = one.iloc[0]
                median = _px(first["median_breaking_px"], lowest)
                rows.append([str(rank), name, str(first["n_correct_native"]),
                             median if median.startswith("<") else f"{float(first['median_breaking_px']):.0f}"] +
                            [with_ci(r["broken"], r["broken_low"], r["broken_high"], 100, 1) for _, r in one.iterrows()])
            details.blocks.append(Table(
                ["Rank", "Class", "Correct at native", "Median breaking (px)"] +
                [f"Broken by {r} px (%)" for r in resolutions], rows,
                caption=f"{model} · {display_dataset(dataset)}", align="rlrr" + "r" * len(resolutions)))
        section.blocks.append(details)
    sections.append(section)

    section = Section("Do model rankings survive low resolution?")
    section.blocks.append(Paragraph(
        "Spearman's ρ between the ranking of the models by native top-1 and by top-1 at each low resolution, "
        "per dataset, over models evaluated on the same images (3 or more). ρ = 1: the order of the models "
        f"is unchanged; tied models share their average rank. {level}% bootstrap intervals resample the images "
        "jointly for every model."))
    stability = tables.rank_stability
    if stability.empty:
        section.blocks.append(Paragraph(
            "No dataset has 3 or more models evaluated on the same images, so there is no ranking to compare."))
    else:
        rows = [[display_dataset(r["dataset"]), str(r["n_images"]), str(r["n_models"]), f"{r['resolution']} px",
                 _number(r["rho"], 1, 3), f"[{_number(r['rho_low'], 1, 3)}, {_number(r['rho_high'], 1, 3)}]"]
                for _, r in stability.iterrows()]
        section.blocks.append(Table(["Dataset", "Images", "Models", "Resolution", "ρ", f"{level}% CI"], rows,
                                    caption="Rank stability against native resolution", align="lrrlrr"))
    sections.append(section)
    return sections


def build_document(collected: Collected, tables: ReportTables, files: list[str], db: Path,
                   findings=None) -> Document:
    level = round(100 * tables.level)
    models = collected.models
    sections = []

    intro = Section("Summary")
    intro.blocks.append(Paragraph(
        f"Zero-shot classification at native and low resolution, from the results database `{db.name}` "
        f"({len(models)} model{'s' * (len(models) != 1)}, {len(collected.runs)} model × dataset "
        f"run{'s' * (len(collected.runs) != 1)}). Every number is computed from the stored per-sample "
        f"predictions; no model was run. Intervals are {level}% percentile bootstrap intervals over test images "
        f"({tables.resamples} resamples, seed {tables.seed}; the same resamples for every resolution of a "
        "dataset), written as estimate ± half their width. lr0fm " + __version__ + "."))
    scores = tables.sar_war.dropna(subset=["WAR"])
    if not scores.empty:
        # The paper's headline resolution, 16 px, where a model has it; otherwise its lowest.
        lines = []
        for model, part in scores.groupby("model", sort=False):
            resolution = "16" if "16" in set(part["resolution"]) else order_resolutions(set(part["resolution"]))[-1]
            r = part[part["resolution"] == resolution].iloc[0]
            lines.append(f"{model} at {resolution} px: SAR {with_ci(r['SAR'], r['SAR_low'], r['SAR_high'])}, "
                         f"WAR {with_ci(r['WAR'], r['WAR_low'], r['WAR_high'])} over {int(r['n_datasets'])} "
                         f"dataset{'' if int(r['n_datasets']) == 1 else 's'}")
        intro.blocks.append(Paragraph(f"Robustness (×100): {'; '.join(lines)}."))
    intro.blocks.append(_overview(collected))
    sections.append(intro)

    accuracy = tables.accuracy
    resolutions = order_resolutions(set(accuracy["resolution"]))
    pixels = {(r.model, r.dataset): r.native_pixels for r in collected.runs}
    section = Section("Accuracy")
    section.blocks.append(Figure("accuracy.png", f"Top-1 accuracy against resolution with {level}% bootstrap "
                                 "intervals; the square marks each model's native resolution, the dotted line "
                                 "chance (1 / classes)."))
    headers, rows = _grid(accuracy, "top1", resolutions, 100, 2, pixels)
    section.blocks.append(Table(headers, rows, caption="Top-1 accuracy (%)", align="ll" + "r" * (len(headers) - 2)))
    headers, rows = _grid(accuracy, "top5", resolutions, 100, 2, pixels)
    section.blocks.append(Table(headers, rows, caption="Top-5 accuracy (%)", align="ll" + "r" * (len(headers) - 2)))
    sections.append(section)

    robustness = tables.robustness
    low = [r for r in resolutions if r != NATIVE]
    section = Section("Robustness γ and Γ")
    section.blocks.append(Paragraph(
        "Relative robustness γ = top-1 at the low resolution / top-1 at native resolution (it can exceed 1). "
        f"Improved relative robustness Γ = γ · (1 − exp(−{ALPHA:g} ε²)) with ε = native top-1 − 1 / classes: "
        "it discounts datasets where the model is near chance even at native resolution."))
    for column, caption in (("gamma", "Relative robustness γ"), ("Gamma", "Improved relative robustness Γ")):
        headers, rows = _grid(robustness, column, low, 1, 3)
        section.blocks.append(Table(headers, rows, caption=caption, align="ll" + "r" * (len(headers) - 2)))
    sections.append(section)

    section = Section("SAR and WAR")
    weights = [f"{display_dataset(d)} {reference.WAR_WEIGHTS[d]:.3g}" for d in reference.DATASETS
               if d in set(robustness["dataset"])]
    text = ("SAR is the mean of γ over a model's datasets at one resolution; WAR is the weighted mean of Γ, "
            "sum(w·Γ) / sum(w). ")
    if weights:
        text += f"Weights from the paper: {', '.join(weights)}. "
    if tables.default_weight_datasets:
        text += (f"**{', '.join(display_dataset(d) for d in tables.default_weight_datasets)} "
                 f"{'has' if len(tables.default_weight_datasets) == 1 else 'have'} no weight in the paper** "
                 f"(its weights were fitted to its 15 datasets), so {'it counts' if len(tables.default_weight_datasets) == 1 else 'they count'} "
                 f"with the default weight {DEFAULT_WEIGHT:g}; `lr0fm weights fit` can derive weights for your own "
                 "datasets. ")
    text += "Ranks compare only models evaluated on the same datasets at that resolution."
    section.blocks.append(Paragraph(text))
    if tables.sar_war.empty:
        section.blocks.append(Paragraph("No model has results below its native resolution: nothing to score."))
    if "sar_war.png" in files:
        section.blocks.append(Figure("sar_war.png", f"SAR and WAR (×100) per low resolution, {level}% bootstrap "
                                     "intervals."))
    rows = []
    for _, row in tables.sar_war.iterrows():
        rows.append([row["model"], f"{row['resolution']} px", with_ci(row["SAR"], row["SAR_low"], row["SAR_high"]),
                     with_ci(row["WAR"], row["WAR_low"], row["WAR_high"]), str(row["n_datasets"]),
                     f"{row['rank_SAR']} / {row['ranked_among']}", f"{row['rank_WAR']} / {row['ranked_among']}"])
    section.blocks.append(Table(["Model", "Resolution", "SAR ×100", "WAR ×100", "Datasets", "SAR rank", "WAR rank"],
                                rows, caption="SAR and WAR (×100)", align="llrrrrr"))
    if len(models) > 1:
        for resolution in order_resolutions(set(tables.sar_war["resolution"])):
            part = tables.sar_war[tables.sar_war["resolution"] == resolution].sort_values(
                ["datasets", "rank_WAR", "model"])
            if len(part) < 2:
                continue
            section.blocks.append(Table(
                ["WAR rank", "Model", "WAR ×100", "SAR rank", "SAR ×100", "Datasets"],
                [[str(r["rank_WAR"]), r["model"], _number(r["WAR"]), str(r["rank_SAR"]), _number(r["SAR"]),
                  ", ".join(display_dataset(d) for d in r["datasets"].split(";"))] for _, r in part.iterrows()],
                caption=f"Ranking at {resolution} px", align="rlrrrl"))
    sections.append(section)

    section = Section("Are low-resolution mistakes plausible?")
    section.blocks.append(Paragraph(
        "For each low resolution: of the readable images whose low-resolution top-1 answer is wrong, the share "
        "whose wrong answer is among the native-resolution top-5 of the same image, i.e. a class the model already "
        "found close at full resolution. Chance is the share a wrong answer drawn uniformly from the other classes "
        "would reach."))
    rows = [[r["model"], display_dataset(r["dataset"]), f"{r['resolution']} px", str(r["n"]), str(r["n_wrong"]),
             _number(r["share_in_native_top5"], 100, 1), _number(r["chance_share"], 100, 1)]
            for _, r in tables.plausibility.iterrows()]
    section.blocks.append(Table(["Model", "Dataset", "Resolution", "Images", "Wrong", "In native top-5 (%)",
                                 "Chance (%)"], rows, align="lllrrrr"))
    if not tables.confusions.empty:
        details = Details("Most frequent confusions (true → predicted)")
        for (model, dataset), part in tables.confusions.groupby(["model", "dataset"], sort=False):
            details.blocks.append(Table(
                ["Resolution", "True", "Predicted", "Count", "Share of wrong (%)"],
                [[f"{r['resolution']} px", r["true_name"], r["predicted_name"], str(r["count"]),
                  _number(r["share_of_wrong"], 100, 1)] for _, r in part.iterrows()],
                caption=f"{model} · {display_dataset(dataset)}", align="lllrr"))
        section.blocks.append(details)
    sections.append(section)
    sections += _profile_sections(tables, files)

    if tables.compare is not None:
        sections.append(_compare_section(tables, files))

    if findings is not None:
        sections.append(findings_section(findings, files))

    notes = Section("Notes")
    for note in collected.notes:
        notes.blocks.append(Paragraph(note))
    notes.blocks.append(Paragraph(
        "Metrics follow LR0.FM (Pathak et al., ICLR 2025, arXiv:2502.03950): γ, Γ with α = 200, SAR, WAR with the "
        "authors' weights. Accuracies here are over the stored test images of each run (fewer than the full "
        "split if it was evaluated with --limit)."))
    notes.blocks.append(Paragraph("Files: " + ", ".join(f for f in files if f != "report.html") + "."))
    sections.append(notes)
    return Document("lr0fm low-resolution report", sections)


# ---------------------------------------------------------------------------------------------------------------
# Writing


def _write_csvs(tables: ReportTables, folder: Path) -> list[str]:
    written = []
    frames = {"accuracy.csv": tables.accuracy, "robustness.csv": tables.robustness, "sar_war.csv": tables.sar_war,
              "plausibility.csv": tables.plausibility, "confusions.csv": tables.confusions,
              "half_accuracy.csv": tables.half_accuracy, "lowest_correct.csv": tables.lowest_correct,
              "breaking_classes.csv": tables.breaking_classes, "rank_stability.csv": tables.rank_stability}
    if tables.compare is not None:
        frames["compare_paper.csv"] = tables.compare
        backbones = [scores.assign(resolution=resolution, datasets=";".join(datasets))
                     for (resolution, datasets), scores in tables.paper_scores.items()]
        if backbones:
            frames["compare_paper_backbones.csv"] = pd.concat(backbones, ignore_index=True)[
                ["resolution", "datasets", "backbone", "family", "SAR", "WAR", "n_datasets"]]
    for name, frame in frames.items():
        with atomic_path(folder / name) as tmp:
            frame.to_csv(tmp, index=False)
        written.append(name)
    return written


def _move_into(staging: Path, out: Path, files: list[str]) -> None:
    """Put the finished files in `out`: a rename of the whole folder when `out` is new, else file by file
    (each os.replace is atomic), dropping stale files an earlier report wrote there."""
    if not out.exists():
        try:
            os.replace(staging, out)
        except OSError:
            if not out.is_dir():
                raise
        else:
            fsync_folder(out.parent)
            return
    for name in files:
        os.replace(staging / name, out / name)
    for name in set(OWNED_FILES) - set(files):
        (out / name).unlink(missing_ok=True)
    fsync_folder(out)


def build_report(db: str | Path = DEFAULT_DB, out: str | Path = DEFAULT_OUT,
                 formats: str | Sequence[str] | None = None, *, compare_paper: bool = False, seed: int = 0,
                 resamples: int = 1000, level: float = 0.95, model: str | None = None, dataset: str | None = None,
                 top_confusions: int = 5) -> ReportResult:
    """Write a report of the results database `db` into the folder `out`.

    Always report.html (self-contained) and the PNG figures; per `formats` also report.md, the CSV tables
    and report.tex. `model`/`dataset` filter runs by substring, as in `lr0fm show`. The bootstrap is seeded,
    so the same database, seed and resamples give the same report.
    """
    chosen = parse_formats(formats)
    if resamples < 1:
        raise UserError(f"--resamples must be at least 1, got {resamples}.")
    if top_confusions < 0:
        raise UserError(f"--top-confusions must be zero or more, got {top_confusions}.")
    db, out = Path(db).expanduser(), Path(out).expanduser()
    if not db.is_file():
        raise UserError(f"No results database at {db}; run `lr0fm eval` first or pass --db PATH.")
    if out.exists() and not out.is_dir():
        raise UserError(f"The report folder {out} is a file; pass a folder path to --out.")
    with ResultStore(db) as store:
        collected = collect(store, model=model, dataset=dataset)
    if not collected.runs:
        filters = " matching the filters" if model or dataset else ""
        raise UserError(f"No finished results with a native resolution{filters} in {db}; run `lr0fm eval` first.")
    tables = compute(collected, seed=seed, resamples=resamples, level=level, compare_paper=compare_paper,
                     top_confusions=top_confusions)

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as error:
        raise UserError(f"Cannot create the report folder {out} ({error}); pass a writable path to --out.") from None
    try:
        staging.chmod(0o755)
        drawn = [plots.accuracy_plot(tables, staging / "accuracy.png"),
                 plots.sar_war_plot(tables, staging / "sar_war.png"),
                 plots.lowest_correct_plot(tables, staging / "lowest_correct.png"),
                 plots.compare_plot(tables, staging / "compare_paper.png")]
        files = [path.name for path in drawn if path is not None]
        found, found_files = draw_findings(db, staging, seed=seed, resamples=resamples)
        files += found_files
        if "csv" in chosen:
            files += _write_csvs(tables, staging)
        listed = ["report.html", *(["report.md"] if "md" in chosen else []),
                  *(["report.tex"] if "latex" in chosen else []), *files]
        document = build_document(collected, tables, listed, db, found)
        if "md" in chosen:
            write_text_atomic(staging / "report.md", to_markdown(document))
        if "latex" in chosen:
            write_text_atomic(staging / "report.tex", to_latex(document))
        write_text_atomic(staging / "report.html", to_html(document, staging))
        _move_into(staging, out, listed)
    except OSError as error:
        raise UserError(f"Cannot write the report to {out} ({error}); pass a writable path to --out.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ReportResult(out, listed, tables, collected.notes)


__all__ = ["DEFAULT_OUT", "REPORT_FORMATS", "ReportResult", "build_report", "parse_formats", "PAPER_LOW_RESOLUTIONS"]
