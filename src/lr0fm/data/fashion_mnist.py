"""Fashion-MNIST: the embedded default dataset.

The test split (10,000 images) ships inside the package. The train split is read from Debian's
`dataset-fashion-mnist` package, from a folder the user names, or downloaded by torchvision.
"""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError
from .base import ZeroShotDataset

CLASSNAMES = [
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
]

TEMPLATES = [
    "a photo of a {}.",
    "a black and white photo of a {}.",
    "a low resolution photo of a {}.",
    "a grayscale image of a {}.",
    "a product photo of a {}.",
    "a photo of the {}, a type of clothing.",
    "a close-up photo of a {}.",
    "a photo of a small {}.",
]

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic 0x0000 0x08 ndim, big-endian dims, then uint8 data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file; re-download Fashion-MNIST.")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise UserError(f"{path} is truncated; re-download Fashion-MNIST.")
    return data.reshape(dims)


def _bundled_root() -> Path:
    return Path(str(resources.files("lr0fm") / "assets" / "fashion_mnist"))


def find_root(split: str, root: str | Path | None, download: bool = False) -> Path:
    """The folder holding `split`'s idx files: the user's root, the bundled copy, Debian's, or a download."""
    images, labels = _FILES[split]
    candidates = [Path(root)] if root else [_bundled_root(), DEBIAN_ROOT]
    for folder in candidates:
        for sub in (folder, folder / "FashionMNIST" / "raw"):
            if (sub / images).exists() and (sub / labels).exists():
                return sub
    if download:
        from torchvision.datasets import FashionMNIST

        target = Path(root) if root else Path.home() / ".cache" / "lr0fm" / "fashion_mnist"
        FashionMNIST(str(target), train=split == "train", download=True)
        return target / "FashionMNIST" / "raw"
    where = f"in {root}" if root else f"in the package or {DEBIAN_ROOT}"
    raise UserError(
        f"Fashion-MNIST {split} files ({images}, {labels}) were not found {where}; "
        "install Debian's dataset-fashion-mnist, pass --data-root to a folder holding them, or add --download."
    )


def load_arrays(split: str = "test", root: str | Path | None = None, download: bool = False):
    """(images uint8 (N, 28, 28), labels int64 (N,)) for the split."""
    if split not in _FILES:
        raise UserError(f"Fashion-MNIST has splits 'train' and 'test', not {split!r}; pick one of those.")
    folder = find_root(split, root, download)
    images, labels = (read_idx(folder / name) for name in _FILES[split])
    if len(images) != len(labels):
        raise UserError(f"Fashion-MNIST {split} in {folder} has {len(images)} images but {len(labels)} labels.")
    return images, labels.astype(np.int64)


class FashionMNIST(ZeroShotDataset):
    def __init__(self, split: str = "test", root: str | None = None, download: bool = False):
        self.images, labels = load_arrays(split, root, download)
        super().__init__("fashion_mnist", split, root, list(CLASSNAMES), list(TEMPLATES), labels.tolist())

    def limit(self, count: int | None) -> "FashionMNIST":
        super().limit(count)
        self.images = self.images[: len(self.labels)]
        return self

    def load_image(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index]).convert("RGB")

    def fingerprint(self) -> str:
        # Cheaper than hashing 10,000 descriptions; the pixels themselves decide.
        digest = hashlib.sha256(self.images.tobytes())
        digest.update(super().fingerprint().encode())
        return digest.hexdigest()[:16]
