"""The report's "Findings" section: `lr0fm.findings` over the paper's backbones plus the report's models."""

from __future__ import annotations

from pathlib import Path

from .document import Figure, Paragraph, Section, Table

REPORT_RESAMPLES = 1000  # at most this many bootstrap resamples: the section stays well under a second
CAPTIONS = {
    "findings_params.png": "SAR and WAR (×100) against image-tower parameters (log scale); your models as red stars.",
    "findings_pretrain.png": "SAR and WAR (×100) against pre-training pairs (log scale), coloured by data curation.",
    "findings_finetuned.png": "Fine-tuned models against their base model (blue: lower after fine-tuning).",
    "findings_resolution.png": "Higher native resolution against the same architecture and data at its lowest "
                               "(blue: lower at the higher resolution).",
    "findings_curation.png": "Curated against web pre-training data for the same architecture and resolution "
                             "(blue: higher with curated data).",
}


def draw_findings(db: Path, folder: Path, *, seed: int = 0, resamples: int = REPORT_RESAMPLES):
    """(findings, PNG names written into `folder`) for the database `db` joined to the paper's backbones."""
    from ..findings import findings, plot_findings

    result = findings(db, "16", resamples=min(resamples, REPORT_RESAMPLES), seed=seed)
    return result, [path.name for path in plot_findings(result, folder)]


def findings_section(result, files: list[str]) -> Section:
    """Verdicts, the models that did not join and the figures drawn."""
    origins = result.models["origin"].value_counts()
    section = Section("Findings")
    section.blocks.append(Paragraph(
        "The paper's conclusions tested on its backbones' published accuracies "
        f"({origins.get('paper', 0)} backbones) plus {origins.get('database', 0)} of the models in this database "
        "whose registry name has metadata (image-tower parameters, pre-training data, fine-tuning; see "
        "`lr0fm analyze findings`). Spearman ρ over models and mean paired differences (×100) with "
        f"{round(100 * result.level)}% percentile bootstrap intervals ({result.resamples} resamples, seed "
        f"{result.seed}); each verdict is computed from the intervals of SAR and WAR at "
        f"{result.resolutions[0]} px: supported when both exclude zero in the claimed direction."))
    section.blocks.append(Table(["Claim", "Verdict", "Evidence"],
                                [[row.title, row.verdict, row.text.split(": ", 1)[-1]]
                                 for row in result.verdicts.itertuples()], align="lll"))
    for note in result.notes:
        section.blocks.append(Paragraph(note))
    if result.left_out:
        section.blocks.append(Paragraph("Left out of the findings: " + "; ".join(
            f"{model} ({why})" for model, why in result.left_out) + "."))
    for name, caption in CAPTIONS.items():
        if name in files:
            section.blocks.append(Figure(name, caption))
    return section


__all__ = ["draw_findings", "findings_section"]
