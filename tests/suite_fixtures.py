"""Tiny trees in the official on-disk layout of each of the 15 LR0.FM datasets, for tests.

`build_suite(root)` lays all of them out under one data root (a few small images per class, two or three
classes each); `BUILDERS[key](root)` builds one and returns the folder that belongs to that dataset, so a
test can delete it. The layouts are those of `lr0fm list datasets` (see tests/test_suite_datasets.py for
what each loader reads from them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from lr0fm.data.suite_base import wnids


def image(path: Path, level: int = 128, size: tuple[int, int] = (12, 8), fmt: str = "JPEG") -> Path:
    """A small solid-colour image; `level` picks the colour, so classes can differ."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (level % 256, 255 - level % 256, (level // 2) % 256)).save(path, fmt)
    return path


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _levels(count: int, start: int = 20) -> list[int]:
    return [start + 70 * i for i in range(count)]


def imagenet(root: Path) -> Path:
    base = root / "imagenet"
    for level, wnid in zip(_levels(3), wnids("imagenet")[:3]):
        for i in range(2):
            image(base / "val" / wnid / f"ILSVRC2012_val_{wnid}_{i}.JPEG", level + i)
    return base


def _wnid_subset(root: Path, folder: str, subset: str) -> Path:
    base = root / folder
    for level, wnid in zip(_levels(2), wnids(subset)[:2]):
        for i in range(2):
            image(base / wnid / f"{i}.jpg", level + i)
    return base


def imagenet_a(root: Path) -> Path:
    return _wnid_subset(root, "imagenet-a", "imagenet_a")


def imagenet_r(root: Path) -> Path:
    return _wnid_subset(root, "imagenet-r", "imagenet_r")


def imagenet_v2(root: Path) -> Path:
    base = root / "imagenetv2-matched-frequency-format-val"
    for level, index in zip(_levels(3), (0, 1, 999)):
        image(base / str(index) / "a.jpeg", level)
    return base


def imagenet_sketch(root: Path) -> Path:
    base = root / "imagenet-sketch"
    for level, wnid in zip(_levels(2), wnids("imagenet")[5:7]):
        image(base / "sketch" / wnid / "sketch_0.JPEG", level)
    return base


def caltech101(root: Path) -> Path:
    # The split draws 30 training images per class, so each class needs more than 30.
    base = root / "caltech101"
    categories = base / "101_ObjectCategories"
    for i in range(1, 4):
        image(categories / "BACKGROUND_Google" / f"image_{i:04d}.jpg", 5)
    for level, folder in zip(_levels(2), ("Faces_easy", "accordion")):
        for i in range(1, 33):
            image(categories / folder / f"image_{i:04d}.jpg", level + i)
    return base


def dtd(root: Path) -> Path:
    base = root / "dtd"
    inner = base / "dtd"  # torchvision's download
    for level, category in zip(_levels(3), ("banded", "blotchy", "zigzagged")):
        for i in range(2):
            image(inner / "images" / category / f"{category}_{i:04d}.jpg", level + i)
    (inner / "labels").mkdir(parents=True, exist_ok=True)
    (inner / "labels" / "test1.txt").write_text(
        "banded/banded_0000.jpg\nblotchy/blotchy_0001.jpg\nzigzagged/zigzagged_0000.jpg\nzigzagged/zigzagged_0001.jpg\n"
    )
    return base


def food101(root: Path) -> Path:
    base = root / "food-101"
    test = {"apple_pie": ["apple_pie/101", "apple_pie/102"], "baby_back_ribs": ["baby_back_ribs/7"]}
    write_json(base / "meta" / "test.json", test)
    write_json(base / "meta" / "train.json", {"apple_pie": ["apple_pie/5"], "baby_back_ribs": ["baby_back_ribs/6"]})
    for level, names in zip(_levels(2), test.values()):
        for name in names:
            image(base / "images" / f"{name}.jpg", level)
    return base


def sun397(root: Path) -> Path:
    base = root / "SUN397"
    base.mkdir(parents=True, exist_ok=True)
    (base / "ClassName.txt").write_text("/a/abbey\n/c/church/indoor\n/c/church/outdoor\n")
    files = ["/a/abbey/sun_aaa.jpg", "/c/church/indoor/sun_bbb.jpg", "/c/church/outdoor/sun_ccc.jpg"]
    for level, name in zip(_levels(3), files):
        image(base / name.lstrip("/"), level)
    (base / "Partitions").mkdir(exist_ok=True)
    (base / "Partitions" / "Testing_01.txt").write_text("\n".join(files) + "\n")
    return base


def stanford_cars(root: Path) -> Path:
    base = root / "stanford_cars"
    names = ["2000 AM General Hummer SUV", "2012 Acura RL Sedan"]
    test = [["cars_test/00001.jpg", 0, names[0]], ["cars_test/00002.jpg", 1, names[1]], ["cars_test/00003.jpg", 1, names[1]]]
    for level, (path, _, _) in zip(_levels(3), test):
        image(base / path, level)
    write_json(base / "split_zhou_StanfordCars.json", {"train": [], "val": [], "test": test})
    return base


def fgvc_aircraft(root: Path) -> Path:
    base = root / "fgvc-aircraft-2013b"
    data = base / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "variants.txt").write_text("707-320\n727-200\nA320\n")
    (data / "images_variant_test.txt").write_text("1025794 A320\n0034309 707-320\n0056978 727-200\n")
    for level, name in zip(_levels(3), ("1025794", "0034309", "0056978")):
        image(data / "images" / f"{name}.jpg", level)
    return base


def oxford_pets(root: Path) -> Path:
    base = root / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    (base / "annotations" / "test.txt").write_text(
        "Abyssinian_201 1 1 1\namerican_bulldog_203 2 2 1\nyorkshire_terrier_190 37 2 25\n"
    )
    for level, name in zip(_levels(3), ("Abyssinian_201", "american_bulldog_203", "yorkshire_terrier_190")):
        image(base / "images" / f"{name}.jpg", level)
    return base


def flowers102(root: Path) -> Path:
    from scipy.io import savemat

    base = root / "flowers-102"
    for i in range(1, 6):
        image(base / "jpg" / f"image_{i:05d}.jpg", 30 * i)
    savemat(base / "imagelabels.mat", {"labels": np.array([[77, 77, 1, 102, 5]], dtype=np.uint8)})
    savemat(base / "setid.mat", {"trnid": np.array([[1]]), "valid": np.array([[2]]), "tstid": np.array([[4, 3, 5]])})
    return base


def eurosat(root: Path) -> Path:
    base = root / "eurosat"
    files = {"SeaLake/SeaLake_1.jpg": (9, "Sea or Lake"), "AnnualCrop/AnnualCrop_2.jpg": (0, "Annual Crop Land"),
             "Forest/Forest_3.jpg": (1, "Forest")}
    for level, name in zip(_levels(3), files):
        image(base / "2750" / name, level)
    write_json(base / "split_zhou_EuroSAT.json", {
        "train": [], "test": [],
        "val": [[name, label, classname] for name, (label, classname) in files.items()],
    })
    return base


def ucf101(root: Path) -> Path:
    base = root / "ucf101"
    files = {"Apply_Eye_Makeup/v_ApplyEyeMakeup_g01_c01.jpg": (0, "Apply_Eye_Makeup"),
             "Archery/v_Archery_g02_c01.jpg": (1, "Archery"), "Yo_Yo/v_YoYo_g03_c02.jpg": (2, "Yo_Yo")}
    for level, name in zip(_levels(3), files):
        image(base / "UCF-101-midframes" / name, level)
    write_json(base / "split_zhou_UCF101.json", {
        "train": [], "val": [],
        "test": [[name, label, classname] for name, (label, classname) in files.items()],
    })
    return base


# In the suite's (the paper's table) order.
BUILDERS = {
    "imagenet": imagenet,
    "imagenet_a": imagenet_a,
    "imagenet_v2": imagenet_v2,
    "imagenet_r": imagenet_r,
    "imagenet_sketch": imagenet_sketch,
    "caltech101": caltech101,
    "dtd": dtd,
    "food101": food101,
    "sun397": sun397,
    "stanford_cars": stanford_cars,
    "fgvc_aircraft": fgvc_aircraft,
    "oxford_pets": oxford_pets,
    "flowers102": flowers102,
    "eurosat": eurosat,
    "ucf101": ucf101,
}


def build_suite(root: Path) -> dict[str, Path]:
    """Every suite dataset under `root`; returns key -> the folder it owns."""
    return {key: build(root) for key, build in BUILDERS.items()}
