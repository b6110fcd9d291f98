"""Dataset names -> ZeroShotDataset."""

from __future__ import annotations

from ..errors import UserError
from .base import ZeroShotDataset
from .lr0fm_suite import SUITE, suite_descriptions

DATASETS = {
    "fashion_mnist": "Fashion-MNIST, 10 classes; test split (10,000 images) ships with lr0fm, train split from "
    "Debian's dataset-fashion-mnist, --data-root or --download",
    "folder:PATH": "any folder with one sub-folder of images per class (optional classnames.txt, templates.txt)",
}
# The LR0.FM suite: key -> split used, #classes, #test images, expected layout under --data-root.
DATASETS.update(suite_descriptions())


def load_dataset(name: str, root: str | None = None, split: str | None = None, download: bool = False) -> ZeroShotDataset:
    """A dataset by name, with its class names and prompt templates; images are decoded only when read.

    Args:
        name: "fashion_mnist", one of the LR0.FM suite's 15 (`lr0fm list datasets`), or "folder:PATH"
            (PATH/<class>/<images>, optional classnames.txt and templates.txt).
        root: the folder holding the dataset's files (default: the bundled or cached copy).
        split: a split other than the benchmark's test split.
        download: fetch the files when torchvision can download them and they are missing.

    Returns:
        A `data.ZeroShotDataset`: `len()`, `read_image(i)`, `labels`, `classnames`, `templates`, `fingerprint()`.

    Raises:
        UserError: an unknown name, or files missing under `root` (the message gives the expected layout).

    Example:
        >>> dataset = lr0fm.load_dataset("dtd", root="/datasets")
        >>> len(dataset), dataset.split, len(dataset.classnames)
    """
    name = name.strip()
    if name == "fashion_mnist":
        from .fashion_mnist import FashionMNIST

        return FashionMNIST(split or "test", root, download)
    if name in SUITE:
        from .lr0fm_suite import load_suite_dataset

        return load_suite_dataset(name, root, split, download)
    if name.startswith("folder:"):
        from .folder import FolderDataset

        return FolderDataset(name.removeprefix("folder:"))
    raise UserError(f"Unknown dataset {name!r}; use one of: fashion_mnist, folder:PATH, {', '.join(SUITE)}.")


__all__ = ["DATASETS", "ZeroShotDataset", "load_dataset"]
