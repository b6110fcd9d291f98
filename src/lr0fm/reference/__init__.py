"""Figures published with the LR0.FM paper, kept as data in one place with their source.

Source: Pathak et al., "LR0.FM: Low-Res Benchmark and Improving Robustness for Zero-Shot Classification in
Foundation Models", ICLR 2025 (arXiv:2502.03950), and the authors' repository github.com/shyammarjit/LR0.FM at
commit 8c7ccb6ead8b9644d8507105509b33872b7a8347: per-backbone accuracies from ``MetaData/Results/*.csv``,
class counts and WAR weights from ``README.md`` and ``MetaData/generate_SAR_WAR.py``. See ``SOURCE.md``.

Torch-free, like ``metrics``.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

SOURCE_REPOSITORY = "https://github.com/shyammarjit/LR0.FM"
SOURCE_COMMIT = "8c7ccb6ead8b9644d8507105509b33872b7a8347"
SOURCE_PAPER = "arXiv:2502.03950 (ICLR 2025)"

# The 15 benchmark datasets in the paper's table order; keys as in the accuracy table.
DATASET_NAMES: dict[str, str] = {
    "imagenet": "ImageNet",
    "imagenet_a": "ImageNet-A",
    "imagenet_v2": "ImageNet-V2",
    "imagenet_r": "ImageNet-R",
    "imagenet_sketch": "ImageNet-Sketch",
    "caltech101": "Caltech101",
    "dtd": "DTD",
    "food101": "Food101",
    "sun397": "SUN397",
    "stanford_cars": "Stanford Cars",
    "fgvc_aircraft": "FGVC Aircraft",
    "oxford_pets": "Oxford Pets",
    "flowers102": "Flowers102",
    "eurosat": "EuroSAT",
    "ucf101": "UCF101",
}
DATASETS: tuple[str, ...] = tuple(DATASET_NAMES)

# Resolutions of the published tables; "native" is each model's own input size.
RESOLUTIONS: tuple[str, ...] = ("native", "128", "64", "32", "16")

# Width of each zero-shot classifier (Caltech101 keeps its "background" class).
CLASS_COUNTS: dict[str, int] = {
    "imagenet": 1000,
    "imagenet_a": 200,
    "imagenet_v2": 1000,
    "imagenet_r": 200,
    "imagenet_sketch": 1000,
    "caltech101": 102,
    "dtd": 47,
    "food101": 101,
    "sun397": 397,
    "stanford_cars": 196,
    "fgvc_aircraft": 100,
    "oxford_pets": 37,
    "flowers102": 102,
    "eurosat": 10,
    "ucf101": 101,
}

# What the authors' metric script uses: Food101 and FGVC Aircraft are given 102 there. Needed to reproduce
# their released SAR/WAR files bit for bit; the effect on improved relative robustness is negligible.
PAPER_SCRIPT_CLASS_COUNTS: dict[str, int] = {**CLASS_COUNTS, "food101": 102, "fgvc_aircraft": 102}

# WAR dataset weights, verbatim from the authors' README and metric script (fitted at 16 px, max = 1).
WAR_WEIGHTS: dict[str, float] = {
    "imagenet": 0.15556157429688613,
    "imagenet_a": 0.970498446080589,
    "imagenet_v2": 0.2854574367981364,
    "imagenet_r": 0.01,
    "imagenet_sketch": 0.021456095637452655,
    "caltech101": 0.01,
    "dtd": 0.505922498560715,
    "food101": 0.01,
    "sun397": 0.407563119725743,
    "stanford_cars": 0.13583821249199218,
    "fgvc_aircraft": 0.8229545014750042,
    "oxford_pets": 0.08995285864599148,
    "flowers102": 0.08972060770047119,
    "eurosat": 1.0,
    "ucf101": 0.01,
}

ACCURACY_FILE = "lr0fm_accuracy.csv"


@lru_cache(maxsize=1)
def _load_accuracy() -> pd.DataFrame:
    import pandas as pd  # here, so the constants above stay importable without pandas' start-up cost

    with resources.files(__name__).joinpath(ACCURACY_FILE).open("rb") as handle:
        frame = pd.read_csv(handle, dtype={"family": str, "backbone": str, "dataset": str, "resolution": str,
                                           "top1": float, "top5": float}, keep_default_na=False)
    return frame


def paper_accuracy() -> pd.DataFrame:
    """The 66 backbones' published zero-shot accuracies, one row per (backbone, dataset, resolution).

    Columns: family, backbone, dataset, resolution ("native", "128", "64", "32", "16"), top1, top5 (percent).
    `backbone` alone identifies a model. Returns a fresh copy each call.
    """
    return _load_accuracy().copy()


__all__ = [
    "CLASS_COUNTS", "DATASETS", "DATASET_NAMES", "PAPER_SCRIPT_CLASS_COUNTS", "RESOLUTIONS", "SOURCE_COMMIT",
    "SOURCE_PAPER", "SOURCE_REPOSITORY", "WAR_WEIGHTS", "paper_accuracy",
]
