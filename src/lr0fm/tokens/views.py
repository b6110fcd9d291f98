"""The training views of one image: crop once, then degrade that crop.

The native view is a random crop brought to the model's native size n; each low-resolution view is that same
crop taken down to s x s and back up to n x n with the evaluation's own canonical degradation
(degrade.ViewMaker), so all views show identical content. The authors cropped each view independently
(PAPER.md §3.3, §5); this does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..degrade import ViewMaker, to_rgb
from ..errors import UserError

PAPER_BUCKETS = ((16, 32), (32, 64), (64, 128))  # for 224-px models (PAPER.md §3.3)
CROP_SCALE = (0.9, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


def default_buckets(native: int) -> list[tuple[int, int]]:
    """The paper's buckets for models of 128 px and more; below, [n/8, n/4), [n/4, n/2), [n/2, n)."""
    if native >= 128:
        return [tuple(b) for b in PAPER_BUCKETS]
    edges = sorted({max(2, round(native / f)) for f in (8, 4, 2)} | {native})
    buckets = [(low, high) for low, high in zip(edges, edges[1:]) if low < high]
    if not buckets:
        raise UserError(f"A {native}-px model is too small for low-resolution views; pass --buckets explicitly.")
    return buckets


def parse_buckets(value: str | Sequence | None, native: int) -> list[tuple[int, int]]:
    """"4-8,8-16,16-32" (upper bound exclusive) or [(4, 8), ...] -> validated buckets; None: the default."""
    if value is None:
        return default_buckets(native)
    if isinstance(value, str):
        pieces = [p.strip() for p in value.split(",") if p.strip()]
        buckets = []
        for piece in pieces:
            low, sep, high = piece.partition("-")
            try:
                buckets.append((int(low), int(high)))
            except ValueError:
                raise UserError(f"Bucket {piece!r} is not LOW-HIGH; write buckets such as 4-8,8-16,16-32 (HIGH excluded).") from None
    else:
        buckets = [(int(low), int(high)) for low, high in value]
    if not buckets:
        raise UserError("No buckets were given; write buckets such as 4-8,8-16,16-32 (HIGH excluded).")
    for low, high in buckets:
        if not 1 <= low < high <= native:
            raise UserError(f"Bucket {low}-{high} must satisfy 1 <= LOW < HIGH <= native {native} (HIGH excluded).")
    return buckets


def random_crop(image: Image.Image, native: int, rng: np.random.Generator,
                scale: Sequence[float] = CROP_SCALE, ratio: Sequence[float] = CROP_RATIO) -> Image.Image:
    """A random crop covering `scale` of the image's central square's area, resized to native x native.

    Measured against the short side's square, so non-square photos are framed as evaluation frames them.
    """
    width, height = image.size
    side = min(width, height)
    area = side * side * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    crop_w = min(width, max(1, round(math.sqrt(area * aspect))))
    crop_h = min(height, max(1, round(math.sqrt(area / aspect))))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    box = (left, top, left + crop_w, top + crop_h)
    return image.resize((native, native), Image.Resampling.BICUBIC, box=box)


def draw_sizes(buckets: Sequence[tuple[int, int]], rng: np.random.Generator) -> list[int]:
    """One side length per bucket, uniform over [low, high)."""
    return [int(rng.integers(low, high)) for low, high in buckets]


def make_views(image: Image.Image, native: int, buckets: Sequence[tuple[int, int]], rng: np.random.Generator,
               scale: Sequence[float] = CROP_SCALE) -> tuple[torch.Tensor, list[int]]:
    """uint8 (1 + len(buckets), 3, n, n): the native crop, then one degraded copy per bucket; and the
    source resolution of each view (n for the native view)."""
    crop = random_crop(to_rgb(image), native, rng, scale)
    sizes = draw_sizes(buckets, rng)
    unique = sorted(set(sizes), reverse=True)
    # The crop is already n x n, so the canonical protocol's own crop step leaves it untouched.
    views = ViewMaker("canonical", native, ["native", *unique])(crop)
    order = [0, *(1 + unique.index(s) for s in sizes)]
    return views[order], [native, *sizes]


__all__ = ["PAPER_BUCKETS", "default_buckets", "draw_sizes", "make_views", "parse_buckets", "random_crop"]
