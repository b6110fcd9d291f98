"""ImageNet-1k val and its four shifted test sets: ImageNet-A, ImageNet-V2, ImageNet-R, ImageNet-Sketch.

All share ImageNet's class names (open_clip's list) and CLIP's 80 prompt templates. ImageNet-A and -R are
200-class subsets: their classifier has 200 rows, in the order of the subset's sorted wnids, each named by
looking the wnid up in the 1000-class list.
"""

from __future__ import annotations

from pathlib import Path

from .suite_base import (
    SuiteInfo, check_split, find_base, finish, imagenet_classnames, imagenet_templates, not_found, resolve_root, wnids,
)

IMAGENET = SuiteInfo(
    "imagenet", "ImageNet-1k", "val", ("val",), 1000, 50_000,
    "imagenet/val/<wnid>/*.JPEG (torchvision.datasets.ImageNet's layout; or ILSVRC2012_img_val.tar and "
    "ILSVRC2012_devkit_t12.tar.gz in ROOT/imagenet/, which torchvision sorts into val/ on first use)",
    "image-net.org (ILSVRC2012 validation images and development kit)",
)
IMAGENET_A = SuiteInfo(
    "imagenet_a", "ImageNet-A", "all", ("all",), 200, 7_500,
    "imagenet-a/<wnid>/*.jpg (200 wnid folders, as in imagenet-a.tar)",
    "github.com/hendrycks/natural-adv-examples (imagenet-a.tar)",
)
IMAGENET_V2 = SuiteInfo(
    "imagenet_v2", "ImageNet-V2", "matched-frequency", ("matched-frequency", "threshold0.7", "top-images"), 1000, 10_000,
    "imagenetv2-matched-frequency-format-val/<class index 0..999>/*.jpeg (as in imagenetv2-matched-frequency.tar.gz)",
    "github.com/modestyachts/ImageNetV2 (the tarballs are on the Hugging Face hub, vaishaal/ImageNetV2)",
)
IMAGENET_R = SuiteInfo(
    "imagenet_r", "ImageNet-R", "all", ("all",), 200, 30_000,
    "imagenet-r/<wnid>/*.jpg (200 wnid folders, as in imagenet-r.tar)",
    "github.com/hendrycks/imagenet-r (imagenet-r.tar)",
)
IMAGENET_SKETCH = SuiteInfo(
    "imagenet_sketch", "ImageNet-Sketch", "all", ("all",), 1000, 50_889,
    "imagenet-sketch/sketch/<wnid>/*.JPEG (ImageNet-Sketch.zip unpacks to sketch/)",
    "github.com/HaohanWang/ImageNet-Sketch (ImageNet-Sketch.zip; also the Hugging Face dataset songweig/imagenet_sketch)",
)


def _wnid_items(folder: Path, index_of: dict[str, int]) -> list[tuple[Path, int]]:
    """(path, label) for every image in the `folder/<name>/` sub-folders named in `index_of`."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    present = {p.name: index_of[p.name] for p in folder.iterdir() if p.is_dir() and p.name in index_of}
    if not present:
        return []
    try:
        samples = make_dataset(str(folder), present, extensions=IMG_EXTENSIONS, allow_empty=True)
    except FileNotFoundError:
        return []
    return [(Path(path), label) for path, label in samples]


def _wnid_folder(names: tuple[str, ...], exclusive: bool):
    """Accepts a folder with sub-folders named by `names`; `exclusive` also rejects other ImageNet wnids,
    so that ImageNet-R's folder is never taken for ImageNet-A's (their wnids overlap)."""
    wanted = set(names)
    known = set(wnids("imagenet"))

    def accept(folder: Path) -> bool:
        found = {p.name for p in folder.iterdir() if p.is_dir() and p.name in known}
        return bool(found & wanted) and (not exclusive or found <= wanted)

    return accept


def load_imagenet(root, split=None, download=False):
    info = IMAGENET
    split = check_split(info, split)
    root = resolve_root(root)
    tars = ("ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz")
    base = find_base(
        root, ("imagenet", "ImageNet", "imagenet1k", "ILSVRC2012", "."),
        lambda f: (f / "val").is_dir() or all((f / t).is_file() for t in tars),
    )
    if base is None:
        raise not_found(info, root)
    val = base / "val"
    if not val.is_dir() or not any(p.is_dir() for p in val.iterdir()):
        # torchvision's own preparation: parses the devkit and sorts the flat val tar into wnid folders.
        from torchvision.datasets import ImageNet

        try:
            ImageNet(str(base), split="val")
        except (RuntimeError, OSError) as error:
            raise not_found(info, root, f"torchvision could not prepare {base}: {error}") from error
    all_wnids = wnids("imagenet")
    items = _wnid_items(val, {w: i for i, w in enumerate(all_wnids)})
    return finish(info, split, root, val, items, imagenet_classnames(), imagenet_templates())


def _load_subset(info: SuiteInfo, subset: str, candidates: tuple[str, ...], root, split):
    split = check_split(info, split)
    root = resolve_root(root)
    subset_wnids = wnids(subset)
    base = find_base(root, candidates, _wnid_folder(subset_wnids, exclusive=True))
    if base is None:
        raise not_found(info, root)
    all_wnids = wnids("imagenet")
    names = imagenet_classnames()
    classnames = [names[all_wnids.index(w)] for w in subset_wnids]
    items = _wnid_items(base, {w: i for i, w in enumerate(subset_wnids)})
    return finish(info, split, root, base, items, classnames, imagenet_templates())


def load_imagenet_a(root, split=None, download=False):
    return _load_subset(IMAGENET_A, "imagenet_a", ("imagenet-a", "imagenet_a", "ImageNet-A", "."), root, split)


def load_imagenet_r(root, split=None, download=False):
    return _load_subset(IMAGENET_R, "imagenet_r", ("imagenet-r", "imagenet_r", "ImageNet-R", "."), root, split)


def load_imagenet_sketch(root, split=None, download=False):
    info = IMAGENET_SKETCH
    split = check_split(info, split)
    root = resolve_root(root)
    all_wnids = wnids("imagenet")
    candidates = tuple(f"{d}/sketch" for d in ("imagenet-sketch", "imagenet_sketch", "ImageNet-Sketch")) + (
        "sketch", "imagenet-sketch", "imagenet_sketch", "ImageNet-Sketch", ".",
    )
    base = find_base(root, candidates, _wnid_folder(all_wnids, exclusive=False))
    if base is None:
        raise not_found(info, root)
    items = _wnid_items(base, {w: i for i, w in enumerate(all_wnids)})
    return finish(info, split, root, base, items, imagenet_classnames(), imagenet_templates())


def load_imagenet_v2(root, split=None, download=False):
    info = IMAGENET_V2
    split = check_split(info, split)
    root = resolve_root(root)
    folder = f"imagenetv2-{split}-format-val"
    candidates = (folder, *(f"{d}/{folder}" for d in ("imagenet_v2", "imagenetv2", "imagenet-v2", "ImageNetV2")), ".")
    base = find_base(root, candidates, lambda f: (f / "0").is_dir() or (f / "999").is_dir())
    if base is None:
        raise not_found(info, root)
    items = _wnid_items(base, {str(i): i for i in range(1000)})
    return finish(info, split, root, base, items, imagenet_classnames(), imagenet_templates())


LOADERS = {
    "imagenet": (IMAGENET, load_imagenet),
    "imagenet_a": (IMAGENET_A, load_imagenet_a),
    "imagenet_v2": (IMAGENET_V2, load_imagenet_v2),
    "imagenet_r": (IMAGENET_R, load_imagenet_r),
    "imagenet_sketch": (IMAGENET_SKETCH, load_imagenet_sketch),
}
