"""The 15 datasets of the LR0.FM benchmark, each in the split the paper evaluated.

Keys are those of `lr0fm.reference.DATASETS` (and of the paper's accuracy table), so results join to the
published numbers. Every dataset is read from the layout its official archive (or torchvision's download)
leaves under one data root, e.g. ROOT/imagenet/val/<wnid>/, ROOT/dtd/dtd/labels/test1.txt,
ROOT/eurosat/2750/ with CoOp's split_zhou_EuroSAT.json; `SUITE[key].layout` spells each one out.

    >>> from lr0fm.data import load_dataset
    >>> dataset = load_dataset("dtd", root="/data")  # split test1, 47 classes, 8 templates
"""

from __future__ import annotations

from ..reference import DATASETS as PAPER_DATASETS
from .coop_splits import LOADERS as _COOP
from .fine_grained import LOADERS as _FINE_GRAINED
from .imagenet_family import LOADERS as _IMAGENET
from .suite_base import DEFAULT_ROOT, SuiteDataset, SuiteInfo

_LOADERS = {**_IMAGENET, **_FINE_GRAINED, **_COOP}

# In the paper's table order.
SUITE: dict[str, SuiteInfo] = {key: _LOADERS[key][0] for key in PAPER_DATASETS}


def suite_descriptions() -> dict[str, str]:
    """key -> "title: split, #classes, #images; layout; download" for `lr0fm list datasets`."""
    return {key: info.describe() for key, info in SUITE.items()}


def load_suite_dataset(key: str, root: str | None = None, split: str | None = None, download: bool = False) -> SuiteDataset:
    """Load a suite dataset; `split=None` is the paper's split, `root=None` is the download cache."""
    return _LOADERS[key][1](root, split, download)


__all__ = ["DEFAULT_ROOT", "SUITE", "SuiteDataset", "SuiteInfo", "load_suite_dataset", "suite_descriptions"]
