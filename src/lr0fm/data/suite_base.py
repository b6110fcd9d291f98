"""Shared pieces of the LR0.FM suite loaders: the dataset class, locating a dataset under --data-root,
class names and prompt templates from the package's prompt files, and the download wrapper."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from PIL import Image

from ..errors import UserError
from .base import ZeroShotDataset

log = logging.getLogger("lr0fm.data")

# Where --download puts the data when no --data-root is given, and where a missing root is looked up.
DEFAULT_ROOT = Path.home() / ".cache" / "lr0fm" / "datasets"


@dataclass(frozen=True)
class SuiteInfo:
    """What a suite dataset is and where its files must lie."""

    key: str  # as in lr0fm.reference.DATASETS and the paper's accuracy table
    title: str
    split: str  # the split LR0.FM evaluated on (the default)
    splits: tuple[str, ...]  # every split name the loader accepts
    classes: int
    images: int  # images in the default split
    layout: str  # expected layout under --data-root
    source: str  # where to get the files
    download: str = ""  # what --download fetches ("" when it cannot)

    def describe(self) -> str:
        fetch = f"--download: {self.download}" if self.download else "no --download"
        return (
            f"{self.title}: split {self.split}, {self.classes} classes, {self.images:,} images; "
            f"layout ROOT/{self.layout}; {fetch}"
        )


class SuiteDataset(ZeroShotDataset):
    """Images listed by path, decoded one at a time."""

    def __init__(self, info: SuiteInfo, split: str, root: Path, base: Path, items: Sequence[tuple[Path, int]],
                 classnames: Sequence[str], templates: Sequence[str]):
        self.base = base
        self.paths = [Path(path) for path, _ in items]
        super().__init__(info.key, split, str(root), list(classnames), list(templates), [int(label) for _, label in items])

    def load_image(self, index: int) -> Image.Image:
        with Image.open(self.paths[index]) as image:
            image.load()
            return image

    def describe(self, index: int) -> str:
        # Relative paths keep the fingerprint the same wherever the data root lives.
        try:
            return self.paths[index].relative_to(self.base).as_posix()
        except ValueError:
            return str(self.paths[index])


# --------------------------------------------------------------------------------------------------
# Class names and templates (see prompts/SOURCES.md)

_PROMPTS = "prompts"


def _prompt_file(name: str) -> str:
    return resources.files(__package__).joinpath(_PROMPTS, name).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def _prompt_json(name: str) -> dict:
    return json.loads(_prompt_file(name))


def stored_classnames(key: str) -> list[str]:
    return list(_prompt_json("classnames.json")[key])


def stored_templates(key: str) -> list[str]:
    return list(_prompt_json("templates.json")[key])


@lru_cache(maxsize=None)
def wnids(subset: str = "imagenet") -> tuple[str, ...]:
    """ImageNet synset ids in class-index order: "imagenet" (1000), "imagenet_a" or "imagenet_r" (200 each)."""
    return tuple(_prompt_file(f"{subset}_wnids.txt").split())


@lru_cache(maxsize=1)
def imagenet_classnames() -> tuple[str, ...]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return tuple(IMAGENET_CLASSNAMES)


@lru_cache(maxsize=1)
def imagenet_templates() -> tuple[str, ...]:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    # open_clip keeps them as functions of the class name; "{}" is this package's placeholder.
    return tuple(template("{}") for template in OPENAI_IMAGENET_TEMPLATES)


# --------------------------------------------------------------------------------------------------
# Finding the files


def resolve_root(root: str | Path | None) -> Path:
    return Path(root).expanduser() if root else DEFAULT_ROOT


def not_found(info: SuiteInfo, root: Path, detail: str = "") -> UserError:
    fetch = ", or add --download" if info.download else ""
    detail = f" ({detail})" if detail else ""
    return UserError(
        f"{info.title} was not found under {root}{detail}; put it there as ROOT/{info.layout} "
        f"(get it from {info.source}) and pass that folder as --data-root{fetch}."
    )


def find_base(root: Path, candidates: Iterable[str], is_base: Callable[[Path], bool]) -> Path | None:
    """The first `root/candidate` folder that `is_base` accepts ("." is the root itself)."""
    for candidate in candidates:
        folder = root if candidate == "." else root / candidate
        try:
            if folder.is_dir() and is_base(folder):
                return folder
        except OSError:
            continue
    return None


def check_split(info: SuiteInfo, split: str | None) -> str:
    split = info.split if split is None else split.strip()
    if split not in info.splits:
        shown = ", ".join(info.splits[:12]) + (", ..." if len(info.splits) > 12 else "")
        raise UserError(f"{info.title} has no split {split!r}; use one of: {shown} (the paper used {info.split}).")
    return split


def run_download(info: SuiteInfo, root: Path, fetch: Callable[[], object]) -> None:
    """Run a torchvision download into `root`, turning any failure into one sentence."""
    root.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s into %s", info.title, root)
    try:
        fetch()
    except Exception as error:  # network, checksum, archive or missing-helper errors all end the same way
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise UserError(
            f"Downloading {info.title} into {root} failed ({first}); get it from {info.source} and lay it out as "
            f"ROOT/{info.layout}."
        ) from error


def locate_or_download(info: SuiteInfo, root: Path, candidates: Iterable[str], is_base: Callable[[Path], bool],
                       download: bool, fetch: Callable[[], object]) -> Path:
    """find_base; when nothing is there and `download` is set, `fetch()` into `root` (run_download) and look
    again; still nothing is the dataset's not-found sentence."""
    base = find_base(root, candidates, is_base)
    if base is None and download:
        run_download(info, root, fetch)
        base = find_base(root, candidates, is_base)
    if base is None:
        raise not_found(info, root)
    return base


def finish(info: SuiteInfo, split: str, root: Path, base: Path, items: list[tuple[Path, int]],
           classnames: Sequence[str], templates: Sequence[str], check_files: bool = False) -> SuiteDataset:
    """Validate the sample list and build the dataset."""
    if not items:
        raise UserError(f"{info.title} under {base} has no images in split {split}; expected layout ROOT/{info.layout}.")
    bad = [label for _, label in items if not 0 <= label < len(classnames)]
    if bad:
        raise UserError(f"{info.title} under {base} has label {bad[0]} outside its {len(classnames)} classes; re-extract the dataset.")
    if check_files:
        missing = [path for path, _ in items if not Path(path).is_file()]
        if missing:
            raise UserError(
                f"{len(missing)} of {len(items)} {info.title} images of split {split} are missing under {base} "
                f"(e.g. {missing[0]}); re-extract the images into ROOT/{info.layout}."
            )
    if split == info.split and len(items) != info.images:
        log.warning("%s split %s has %d images under %s; the paper's split has %d", info.title, split, len(items), base, info.images)
    return SuiteDataset(info, split, root, base, items, classnames, templates)
