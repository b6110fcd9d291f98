"""What every dataset gives the executor: images by index, labels, class names and prompt templates."""

from __future__ import annotations

import hashlib
import json
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from PIL import Image


@dataclass
class ZeroShotDataset(ABC):
    """A labelled test split. Images are decoded lazily, one at a time, so memory stays flat."""

    name: str  # registry name, e.g. "fashion_mnist" or "folder:/data/pets"
    split: str
    root: str | None
    classnames: list[str]
    templates: list[str]  # each contains "{}" where the class name goes
    labels: list[int] = field(repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    @abstractmethod
    def load_image(self, index: int) -> Image.Image:
        """Decode image `index`; may raise on a corrupt file (the executor counts and skips it)."""

    def read_image(self, index: int) -> Image.Image:
        """`load_image`, with an image past Pillow's decompression-bomb pixel limit an error rather than a
        warning on stderr, so that it is counted and named as skipped like any other unreadable file."""
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return self.load_image(index)

    def limit(self, count: int | None) -> "ZeroShotDataset":
        """Keep only the first `count` images (a quick look at a big split); changes the fingerprint."""
        if count is not None:
            if count <= 0:
                from ..errors import UserError

                raise UserError(f"--limit must be a positive number of images, not {count}.")
            self.labels = self.labels[:count]
        return self

    def describe(self, index: int) -> str:
        """Where image `index` comes from, for messages about bad files."""
        return f"{self.name}[{index}]"

    def fingerprint(self) -> str:
        """Changes whenever the sample list, labels, class names or templates change."""
        digest = hashlib.sha256()
        digest.update(json.dumps([self.name, self.split, self.classnames, self.templates]).encode())
        digest.update(json.dumps(self.labels).encode())
        digest.update(json.dumps([self.describe(i) for i in range(len(self))]).encode())
        return digest.hexdigest()[:16]


def text_hash(items: list[str]) -> str:
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]
