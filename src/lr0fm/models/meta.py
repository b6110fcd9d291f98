"""What is known about a model besides how to load it: image-tower size, pre-training data, fine-tuning.

The paper's 66 backbones carry it as data, `lr0fm/reference/backbone_meta.csv` (one row per row of
`backbones.csv`, joined on `name`; columns and sources in `reference/SOURCE.md`); the user's own models
carry it through `registry.register(..., image_params=..., pretrain_data=...)`. `lr0fm analyze findings`
joins it with robustness to test the paper's findings.

Torch-free, except `count_openclip_image_params`, which builds an architecture on PyTorch's meta device.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

from ..errors import UserError

META_FILE = "backbone_meta.csv"
META_COLUMNS = ("name", "arch", "image_params", "pretrain_data", "pretrain_pairs", "curation", "finetuned", "base",
                "source")

# Data-curation classes (defined in reference/SOURCE.md).
CURATIONS: dict[str, str] = {
    "curated": "web pairs selected from a larger pool by a balancing or learned quality criterion "
               "(WIT-400M, MetaCLIP, DataComp-1B, DFN-5B)",
    "web": "web-crawled alt-text pairs with threshold filtering only (LAION, Merged-2B, WebLI, BM-6B)",
    "mixed": "human-annotated captions (COCO, Visual Genome) mixed with web pairs (ALBEF, BLIP)",
}


@dataclass(frozen=True)
class BackboneMeta:
    """Facts about one model for the findings analyses; None (or "") where unknown.

    arch: architecture key; models with the same key have the same image tower up to input size.
    image_params: parameters of the image tower. pretrain_pairs: image-text pairs of the pre-training set.
    curation: one of CURATIONS. finetuned: what it was fine-tuned on after pre-training ("" if not).
    base: registry name of the model it was fine-tuned from. source: how each fact was obtained.
    """

    arch: str = ""
    image_params: int | None = None
    pretrain_data: str = ""
    pretrain_pairs: int | None = None
    curation: str = ""
    finetuned: str = ""
    base: str = ""
    source: str = ""

    def __post_init__(self):
        for field_name in ("image_params", "pretrain_pairs"):
            value = getattr(self, field_name)
            if value is not None and (isinstance(value, bool) or int(value) != value or int(value) <= 0):
                raise UserError(f"{field_name} must be a positive whole number, not {value!r}.")
            if value is not None:
                object.__setattr__(self, field_name, int(value))
        if self.curation and self.curation not in CURATIONS:
            raise UserError(f"Unknown curation {self.curation!r}; use one of: {', '.join(CURATIONS)}.")

    @classmethod
    def from_row(cls, row: dict) -> BackboneMeta:
        """One row of backbone_meta.csv (text cells; empty numbers are unknown)."""
        def number(text: str) -> int | None:
            return int(text) if text.strip() else None

        return cls(row["arch"], number(row["image_params"]), row["pretrain_data"], number(row["pretrain_pairs"]),
                   row["curation"], row["finetuned"], row["base"], row["source"])


def paper_meta() -> dict[str, BackboneMeta]:
    """Registry name -> metadata of the paper's backbones, from reference/backbone_meta.csv, in file order."""
    with resources.files("lr0fm.reference").joinpath(META_FILE).open("r", encoding="utf-8", newline="") as handle:
        return {row["name"]: BackboneMeta.from_row(row) for row in csv.DictReader(handle)}


def count_openclip_image_params(arch: str) -> int:
    """Parameters of `open_clip.create_model(arch).visual`, built on the meta device (no memory, no weights)."""
    import logging
    import warnings

    import open_clip
    import torch

    quiet = logging.root.manager.disable
    logging.disable(logging.WARNING)  # open_clip logs "no pretrained weights loaded": none are wanted here
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            model = open_clip.create_model(arch, pretrained=None, device="meta")
    finally:
        logging.disable(quiet)
    return sum(p.numel() for p in model.visual.parameters())


__all__ = ["BackboneMeta", "CURATIONS", "META_COLUMNS", "count_openclip_image_params", "paper_meta"]
