"""Image pools for token training, and the batch plan that walks them.

A pool is unlabelled images, optionally in groups (several images of one caption):

* a folder of images, searched recursively; if it holds `manifest.jsonl`, that file lists the images instead,
  one JSON object a line: {"file": "relative/path.png", "group": "caption id"} (`lr0fm synth` writes it);
* a manifest file itself (`PATH/to/manifest.jsonl`), paths relative to its folder;
* a dataset's split used without labels, `NAME:SPLIT`, e.g. `fashion_mnist:train` (bare NAME: its train split),
  or a range of its images, `NAME:SPLIT[START:STOP]` in Python's slice notation (either bound may be left
  out), e.g. `fashion_mnist:train[10000:]` to keep the first 10,000 images out of training for validation.

Batches hold P groups x K images when the pool has groups (the authors' hard negatives), random images
otherwise. The order is a pure function of (seed, step), so a resumed run sees exactly the batches an
uninterrupted run would have seen, whatever the number of loader workers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import UserError
from .views import CROP_SCALE, make_views

MANIFEST = "manifest.jsonl"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
POOL_FORMS = ("a folder of images (optionally with manifest.jsonl), a manifest .jsonl file, or DATASET:SPLIT such as "
              "fashion_mnist:train (a range of it: fashion_mnist:train[10000:])")
_RANGE = re.compile(r"^(?P<pool>[^\[\]]+?)\[(?P<start>\d*):(?P<stop>\d*)\]$")


@dataclass
class ImagePool:
    name: str
    paths: list[Path] | None  # file pools
    dataset: object | None  # dataset pools (a ZeroShotDataset; labels unused)
    groups: list[str] | None
    window: range | None = None  # dataset pools: the dataset's images in the pool, NAME:SPLIT[START:STOP]

    def __len__(self) -> int:
        return len(self.paths) if self.paths is not None else len(self._window)

    @property
    def _window(self) -> range:
        return self.window if self.window is not None else range(len(self.dataset))

    def load_image(self, index: int) -> Image.Image:
        if self.paths is None:
            return self.dataset.read_image(self._window[index])
        with Image.open(self.paths[index]) as image:
            image.load()
            return image

    def describe(self, index: int) -> str:
        return str(self.paths[index]) if self.paths is not None else self.dataset.describe(self._window[index])

    def fingerprint(self) -> str:
        """Changes when the list of images, their sizes on disk, or the groups change."""
        digest = hashlib.sha256(self.name.encode())
        if self.paths is None:
            digest.update(self.dataset.fingerprint().encode())
        else:
            for path in self.paths:
                digest.update(f"{path}\0{path.stat().st_size}\n".encode())
        digest.update(json.dumps(self.groups).encode())
        return digest.hexdigest()[:16]


def load_pool(spec: str, data_root: str | None = None) -> ImagePool:
    """Resolve a pool spec (see the module docstring); every problem is a UserError before any training."""
    spec = spec.strip()
    if not spec:
        raise UserError(f"Give an image pool: {POOL_FORMS}.")
    path = Path(spec.removeprefix("folder:")).expanduser()
    if spec.startswith("folder:") or path.exists() or "/" in spec or spec.endswith(".jsonl"):
        if path.is_dir():
            manifest = path / MANIFEST
            return _manifest_pool(spec, manifest) if manifest.is_file() else _folder_pool(spec, path)
        if path.is_file() and path.suffix == ".jsonl":
            return _manifest_pool(spec, path)
        raise UserError(f"Image pool {spec} does not exist; give {POOL_FORMS}.")
    return _dataset_pool(spec, data_root)


def _folder_pool(spec: str, folder: Path) -> ImagePool:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise UserError(f"Image pool {folder} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    return ImagePool(spec, paths, None, None)


def _manifest_pool(spec: str, manifest: Path) -> ImagePool:
    folder = manifest.parent
    paths, groups = [], []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            file = entry["file"]
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{manifest} line {number} is not a JSON object with a \"file\" key; "
                            "write one {\"file\": \"relative/path.png\", \"group\": \"id\"} per line.") from None
        paths.append(folder / file)
        groups.append(None if entry.get("group") is None else str(entry["group"]))
    if not paths:
        raise UserError(f"{manifest} lists no images.")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"{len(missing)} image(s) listed in {manifest} do not exist (e.g. {missing[0]}); fix the manifest or the folder.")
    if all(g is None for g in groups):
        return ImagePool(spec, paths, None, None)
    if any(g is None for g in groups):
        raise UserError(f"Some lines of {manifest} have a \"group\" and others not; give every image a group or none.")
    return ImagePool(spec, paths, None, groups)


def _dataset_pool(spec: str, data_root: str | None) -> ImagePool:
    from ..data import DATASETS, load_dataset
    from ..data.lr0fm_suite import SUITE

    ranged = _RANGE.match(spec)
    whole = ranged["pool"] if ranged else spec
    name, _, split = whole.rpartition(":") if ":" in whole else (whole, "", "train")
    if name not in DATASETS and name not in SUITE:
        raise UserError(f"Unknown image pool {spec!r}; give {POOL_FORMS}.")
    dataset = load_dataset(name, data_root, split or "train")
    window = None
    if ranged:
        size = len(dataset)
        window = range(size)[slice(int(ranged["start"] or 0), int(ranged["stop"] or size))]
        if not window:
            raise UserError(f"Image pool {spec} holds no images: {whole} has {size}; give a range within [0:{size}].")
    if dataset.split == "test":
        # Labels are never read, but the benchmark's own test images would still be seen in training.
        logging.getLogger(__name__).warning("Training tokens on %s's test split: evaluate them on other data.", name)
    return ImagePool(spec, None, dataset, None, window)


class BatchPlan:
    """Which images (and which random views of them) make up batch `step`; a pure function of the seed.

    Grouped pools: every group is shuffled and cut into chunks of K (a short last chunk is topped up from
    the same group); the chunks are shuffled and laid end to end, so a batch is B/K chunks. Each epoch's
    tail that does not fill a batch is dropped.
    """

    def __init__(self, pool_size: int, groups: list[str] | None, batch_size: int, group_size: int, seed: int):
        if batch_size < 2:
            raise UserError("--batch-size must be at least 2: the contrastive loss needs negatives.")
        self.size, self.batch_size, self.seed = pool_size, batch_size, seed
        self.group_size = group_size if groups is not None else 1
        if groups is not None and (group_size < 1 or batch_size % group_size):
            raise UserError(f"--batch-size {batch_size} must be a multiple of the images per group K={group_size}.")
        self.members: list[np.ndarray] | None = None
        if groups is not None:
            by_group: dict[str, list[int]] = {}
            for index, group in enumerate(groups):
                by_group.setdefault(group, []).append(index)
            self.members = [np.asarray(v) for v in by_group.values()]
        per_epoch = self._epoch_order(0)
        self.batches_per_epoch = len(per_epoch) // batch_size
        if self.batches_per_epoch == 0:
            raise UserError(f"The pool has {pool_size} images, fewer than one batch of {batch_size}; lower --batch-size.")
        self._cached: tuple[int, np.ndarray] = (0, per_epoch)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch, 7])
        if self.members is None:
            return rng.permutation(self.size)
        k = self.group_size
        chunks = []
        for members in self.members:
            shuffled = rng.permutation(members)
            short = -len(shuffled) % k
            if short:
                shuffled = np.concatenate([shuffled, rng.choice(members, size=short, replace=True)])
            chunks.extend(shuffled.reshape(-1, k))
        order = rng.permutation(len(chunks))
        return np.concatenate([chunks[i] for i in order])

    def batch(self, step: int) -> list[tuple[int, int]]:
        """[(image index, seed of its random views)] for training step `step` (0-based)."""
        epoch, within = divmod(step, self.batches_per_epoch)
        if self._cached[0] != epoch:
            self._cached = (epoch, self._epoch_order(epoch))
        start = within * self.batch_size
        indices = self._cached[1][start:start + self.batch_size]
        seeds = np.random.SeedSequence([self.seed, epoch, within, 11]).generate_state(len(indices), dtype=np.uint64)
        return [(int(i), int(s)) for i, s in zip(indices, seeds)]


class StepSampler(torch.utils.data.Sampler):
    """Yields the batches of steps [start, stop) of a plan; with `world` processes, process `rank`'s share.

    A share is the contiguous slice [rank * B / world, (rank + 1) * B / world) of the global batch, with the
    same view seeds, so the processes' shares laid end to end are exactly the one-process batch.
    """

    def __init__(self, plan: BatchPlan, start: int, stop: int, rank: int = 0, world: int = 1):
        if plan.batch_size % world:
            raise UserError(f"--batch-size {plan.batch_size} is split across {world} processes; make it a multiple of {world}.")
        self.plan, self.start, self.stop = plan, start, stop
        self.share = plan.batch_size // world
        self.offset = rank * self.share

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.plan.batch(step)[self.offset:self.offset + self.share]

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


class ViewSet(torch.utils.data.Dataset):
    """(index, seed) -> (index, ok, uint8 views (V, 3, n, n), source resolutions (V,)). Holds plain values only,
    so it pickles into loader workers; an unreadable image comes back with ok=False and is left out."""

    def __init__(self, pool: ImagePool, native: int, buckets, crop_scale=CROP_SCALE):
        self.pool, self.native, self.buckets, self.crop_scale = pool, native, [tuple(b) for b in buckets], tuple(crop_scale)

    def __len__(self) -> int:
        return len(self.pool)

    def __getitem__(self, item):
        index, seed = item
        rng = np.random.default_rng(seed)
        try:
            views, sizes = make_views(self.pool.load_image(index), self.native, self.buckets, rng, self.crop_scale)
            ok = True
        except Exception:  # corrupt or unreadable file: skipped and counted, never fatal
            views = torch.zeros(1 + len(self.buckets), 3, self.native, self.native, dtype=torch.uint8)
            sizes, ok = [self.native] * (1 + len(self.buckets)), False
        return index, ok, views, torch.tensor(sizes)
