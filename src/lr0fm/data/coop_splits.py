"""EuroSAT and UCF101 in CoOp's splits (github.com/KaiyangZhou/CoOp, DATASETS.md), as LR0.FM evaluated them.

EuroSAT: the 5,400 images of CoOp's "val" split (the authors' loader swaps the 8,100-image test split for
val). UCF101: the middle frame of each test video, CoOp's UCF-101-midframes with its test split.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from .suite_base import (
    SuiteInfo, check_split, find_base, finish, not_found, resolve_root, run_download, stored_classnames, stored_templates,
)

_COOP = "CoOp's DATASETS.md (github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md)"

EUROSAT = SuiteInfo(
    "eurosat", "EuroSAT", "val", ("val", "test", "train"), 10, 5_400,
    "eurosat/2750/<Class>/<Class>_N.jpg with eurosat/split_zhou_EuroSAT.json (CoOp's split)",
    f"github.com/phelber/EuroSAT (EuroSAT RGB) and {_COOP} for split_zhou_EuroSAT.json",
    "torchvision.datasets.EuroSAT for the images; split_zhou_EuroSAT.json by hand",
)
UCF101 = SuiteInfo(
    "ucf101", "UCF101", "test", ("test", "val", "train"), 101, 3_783,
    "ucf101/UCF-101-midframes/<Class_Name>/*.jpg with ucf101/split_zhou_UCF101.json (CoOp's middle frames)",
    f"{_COOP} (UCF-101-midframes.zip and split_zhou_UCF101.json)",
)

# EuroSAT's archive folders in label order (alphabetical), matching CLIP's class-name list.
EUROSAT_FOLDERS = (
    "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
    "Pasture", "PermanentCrop", "Residential", "River", "SeaLake",
)


def read_coop_split(path: Path, split: str, need_names: bool = True) -> tuple[list[tuple[str, int]], list[str]]:
    """CoOp's split_zhou_*.json: {"train"|"val"|"test": [[relative path, label, class name], ...]}.

    Returns the split's (relative path, label) pairs and the class names by label, gathered from all splits.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = {part: [(str(r[0]), int(r[1]), str(r[2])) for r in data.get(part, [])] for part in ("train", "val", "test")}
    except (OSError, ValueError, TypeError, IndexError, AttributeError) as error:
        raise UserError(f"{path} is not a CoOp split file ({error}); download it again from {_COOP}.") from error
    names: dict[int, str] = {}
    for part_rows in rows.values():
        for _, label, name in part_rows:
            names.setdefault(label, name)
    if need_names and (not names or sorted(names) != list(range(len(names)))):
        raise UserError(f"{path} does not name every class from 0 to {max(names, default=0)}; download it again from {_COOP}.")
    return [(p, label) for p, label, _ in rows[split]], [names[i] for i in range(len(names)) if i in names]


def load_eurosat(root, split=None, download=False):
    info = EUROSAT
    split = check_split(info, split)
    root = resolve_root(root)
    candidates = ("eurosat", "EuroSAT", "euro_sat", ".")
    base = find_base(root, candidates, lambda folder: (folder / "2750").is_dir())
    if base is None and download:
        from torchvision.datasets import EuroSAT as TorchvisionEuroSAT

        run_download(info, root, lambda: TorchvisionEuroSAT(str(root), download=True))
        base = find_base(root, candidates, lambda folder: (folder / "2750").is_dir())
    if base is None:
        raise not_found(info, root)
    split_file = base / "split_zhou_EuroSAT.json"
    if not split_file.is_file():
        raise UserError(
            f"EuroSAT's split file {split_file} is missing (the paper uses CoOp's split); download "
            f"split_zhou_EuroSAT.json from {_COOP} into {base}."
        )
    pairs, _ = read_coop_split(split_file, split, need_names=False)  # labels come from the class folders
    index = {folder: i for i, folder in enumerate(EUROSAT_FOLDERS)}
    items = []
    for relative, _label in pairs:
        folder = relative.split("/")[0]
        if folder not in index:
            raise UserError(f"{split_file} lists {relative}, which is not in a EuroSAT class folder; use CoOp's EuroSAT split file.")
        items.append((base / "2750" / relative, index[folder]))
    return finish(info, split, root, base / "2750", items, stored_classnames("eurosat"), stored_templates("eurosat"),
                  check_files=True)


def load_ucf101(root, split=None, download=False):
    info = UCF101
    split = check_split(info, split)
    root = resolve_root(root)
    base = find_base(root, ("ucf101", "UCF101", "UCF101_midframes", "ucf101_midframes", "."),
                     lambda folder: (folder / "UCF-101-midframes").is_dir())
    if base is None:
        raise not_found(info, root)
    split_file = base / "split_zhou_UCF101.json"
    if not split_file.is_file():
        raise UserError(f"UCF101's split file {split_file} is missing; download split_zhou_UCF101.json from {_COOP} into {base}.")
    pairs, names = read_coop_split(split_file, split)
    frames = base / "UCF-101-midframes"
    items = [(frames / relative, label) for relative, label in pairs]
    # CoOp's names are the action folders ("Apply_Eye_Makeup"); prompts read better with spaces.
    classnames = [name.replace("_", " ") for name in names]
    return finish(info, split, root, frames, items, classnames, stored_templates("ucf101"), check_files=True)


LOADERS = {
    "eurosat": (EUROSAT, load_eurosat),
    "ucf101": (UCF101, load_ucf101),
}
