"""Caltech101, DTD, Food101, SUN397, Stanford Cars, FGVC-Aircraft, Oxford-IIIT Pets and Flowers102, in the
splits LR0.FM evaluated (the paper's dataset table; the authors' loaders in github.com/shyammarjit/LR0.FM).

torchvision's dataset classes parse the files where their layout and split are the paper's (Food101,
FGVC-Aircraft, Pets, Stanford Cars with the devkit); the rest are parsed here because torchvision either
lacks the split (SUN397 partitions, Caltech101's 30-per-class split with the background class kept),
accepts only its own download layout (DTD), or checks file checksums that a re-saved copy fails (Flowers102).
`--download` uses torchvision's downloader wherever it has one.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from ..errors import UserError
from .coop_splits import read_coop_split
from .suite_base import (
    SuiteInfo, check_split, find_base, finish, locate_or_download, not_found, resolve_root, run_download, stored_classnames,
    stored_templates,
)

CALTECH101 = SuiteInfo(
    "caltech101", "Caltech101", "test", ("test", "train"), 102, 5_647,
    "caltech101/101_ObjectCategories/<category>/image_NNNN.jpg (torchvision's layout, BACKGROUND_Google included)",
    "data.caltech.edu (caltech-101.zip)", "torchvision.datasets.Caltech101",
)
DTD = SuiteInfo(
    "dtd", "DTD", "test1", tuple(f"{s}{n}" for s in ("test", "val", "train") for n in range(1, 11)), 47, 1_880,
    "dtd/dtd/{images,labels} (torchvision's download) or dtd/{images,labels} (dtd-r1.0.1.tar.gz)",
    "www.robots.ox.ac.uk/~vgg/data/dtd (dtd-r1.0.1.tar.gz)", "torchvision.datasets.DTD",
)
FOOD101 = SuiteInfo(
    "food101", "Food101", "test", ("test", "train"), 101, 25_250,
    "food-101/{images,meta} (food-101.tar.gz; torchvision's layout)",
    "data.vision.ee.ethz.ch/cvl/datasets_extra/food-101 (food-101.tar.gz)", "torchvision.datasets.Food101",
)
SUN397 = SuiteInfo(
    "sun397", "SUN397", "Testing_01",
    tuple(f"{s}_{n:02d}" for s in ("Testing", "Training") for n in range(1, 11)), 397, 19_850,
    "SUN397/<letter>/<class>(/<subclass>)/sun_*.jpg with ClassName.txt and Testing_01.txt in SUN397/ or "
    "SUN397/Partitions/ (SUN397.tar.gz plus Partitions.zip)",
    "vision.princeton.edu/projects/2010/SUN (SUN397.tar.gz and download/Partitions.zip)",
    "torchvision.datasets.SUN397 for the images, Partitions.zip from the SUN site",
)
STANFORD_CARS = SuiteInfo(
    "stanford_cars", "Stanford Cars", "test", ("test",), 196, 8_041,
    "stanford_cars/cars_test/*.jpg with split_zhou_StanfordCars.json (CoOp's split) or with devkit/cars_meta.mat "
    "and cars_test_annos_withlabels.mat (torchvision.datasets.StanfordCars's layout)",
    "a mirror of the Stanford Cars archives (the original site is gone; see torchvision's StanfordCars notes) and "
    "CoOp's DATASETS.md (github.com/KaiyangZhou/CoOp) for split_zhou_StanfordCars.json",
)
FGVC_AIRCRAFT = SuiteInfo(
    "fgvc_aircraft", "FGVC-Aircraft", "test", ("test", "val", "train", "trainval"), 100, 3_333,
    "fgvc-aircraft-2013b/data/{images,variants.txt,images_variant_test.txt} (fgvc-aircraft-2013b.tar.gz)",
    "www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft (fgvc-aircraft-2013b.tar.gz)", "torchvision.datasets.FGVCAircraft",
)
OXFORD_PETS = SuiteInfo(
    "oxford_pets", "Oxford-IIIT Pets", "test", ("test", "trainval"), 37, 3_669,
    "oxford-iiit-pet/{images,annotations/test.txt} (images.tar.gz and annotations.tar.gz)",
    "www.robots.ox.ac.uk/~vgg/data/pets", "torchvision.datasets.OxfordIIITPet",
)
FLOWERS102 = SuiteInfo(
    "flowers102", "Flowers102", "test", ("test", "train", "val"), 102, 6_149,
    "flowers-102/{jpg/image_NNNNN.jpg,imagelabels.mat,setid.mat} (102flowers.tgz plus the two .mat files)",
    "www.robots.ox.ac.uk/~vgg/data/flowers/102", "torchvision.datasets.Flowers102",
)


# --------------------------------------------------------------------------------------------------
# Caltech101

# Archive folder of each CLIP class name that is not just the name with "_" for " ".
_CALTECH_FOLDERS = {
    "background": "BACKGROUND_Google",
    "off-center face": "Faces",
    "centered face": "Faces_easy",
    "leopard": "Leopards",
    "motorbike": "Motorbikes",
    "airplane": "airplanes",
    "side of a car": "car_side",
    "body of a cougar cat": "cougar_body",
    "face of a cougar cat": "cougar_face",
    "head of a crocodile": "crocodile_head",
    "head of a flamingo": "flamingo_head",
    "snoopy (cartoon beagle)": "snoopy",
    "yin and yang symbol": "yin_yang",
}
CALTECH_TRAIN_PER_CLASS = 30
CALTECH_SEED = 1234


def caltech_folders() -> list[str]:
    """The archive folder of each classifier row, in classifier order (which is sorted folder order)."""
    return [_CALTECH_FOLDERS.get(name, name.replace(" ", "_")) for name in stored_classnames("caltech101")]


def caltech_split(per_class: dict[int, list[Path]]) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """The authors' split: one RandomState(1234) walks the classes in classifier order and draws 30 training
    images per class without replacement; the rest are the test set. Paths are sorted first (the authors
    drew from glob order, which the file system decides), so the split is the same on every machine."""
    rng = np.random.RandomState(CALTECH_SEED)
    train: list[tuple[Path, int]] = []
    test: list[tuple[Path, int]] = []
    for label in sorted(per_class):
        paths = sorted(per_class[label])
        chosen = set(rng.choice(len(paths), CALTECH_TRAIN_PER_CLASS, replace=False).tolist())
        train += [(paths[i], label) for i in sorted(chosen)]
        test += [(p, label) for i, p in enumerate(paths) if i not in chosen]
    return train, test


def load_caltech101(root, split=None, download=False):
    info = CALTECH101
    split = check_split(info, split)
    root = resolve_root(root)
    folders = caltech_folders()
    candidates = ("caltech101/101_ObjectCategories", "101_ObjectCategories", "Caltech101/101_ObjectCategories",
                  "caltech-101/101_ObjectCategories", ".")

    def is_base(folder: Path) -> bool:
        return sum((folder / name).is_dir() for name in folders) >= 2

    def fetch():
        from torchvision.datasets import Caltech101

        Caltech101(str(root), download=True)

    base = locate_or_download(info, root, candidates, is_base, download, fetch)
    per_class: dict[int, list[Path]] = {}
    for label, folder in enumerate(folders):
        if folder == "BACKGROUND_Google" or not (base / folder).is_dir():
            continue  # the background row stays in the classifier, but its images are not test images
        paths = [p for p in (base / folder).iterdir() if p.suffix.lower() == ".jpg" and p.is_file()]
        if len(paths) <= CALTECH_TRAIN_PER_CLASS:
            raise UserError(
                f"Caltech101 folder {base / folder} has {len(paths)} images, but the split draws "
                f"{CALTECH_TRAIN_PER_CLASS} for training and tests on the rest; re-extract the dataset."
            )
        per_class[label] = paths
    train, test = caltech_split(per_class)
    items = test if split == "test" else train
    return finish(info, split, root, base, items, stored_classnames("caltech101"), stored_templates("caltech101"))


# --------------------------------------------------------------------------------------------------
# DTD


def load_dtd(root, split=None, download=False):
    info = DTD
    split = check_split(info, split)
    root = resolve_root(root)
    candidates = ("dtd/dtd", "dtd", ".")

    def is_base(folder: Path) -> bool:
        return (folder / "labels").is_dir() and (folder / "images").is_dir()

    def fetch():
        from torchvision.datasets import DTD as TorchvisionDTD

        TorchvisionDTD(str(root), download=True)

    base = locate_or_download(info, root, candidates, is_base, download, fetch)
    list_file = base / "labels" / f"{split}.txt"
    if not list_file.is_file():
        raise not_found(info, root, f"{list_file} is missing")
    classes = sorted(p.name for p in (base / "images").iterdir() if p.is_dir())
    index = {name: i for i, name in enumerate(classes)}
    items = []
    for line in list_file.read_text(encoding="utf-8").split():
        category = line.split("/")[0]
        if category not in index:
            raise UserError(f"{list_file} lists {line}, but {base / 'images' / category} does not exist; re-extract DTD.")
        items.append((base / "images" / line, index[category]))
    return finish(info, split, root, base / "images", items, classes, stored_templates("dtd"), check_files=True)


# --------------------------------------------------------------------------------------------------
# Food101, FGVC-Aircraft, Oxford-IIIT Pets: torchvision parses the official layout


def _parse_with_torchvision(info: SuiteInfo, make, root: Path):
    try:
        return make()
    except (RuntimeError, OSError, ValueError, KeyError) as error:
        raise not_found(info, root, f"torchvision could not read it: {str(error)[:200]}") from error


def _torchvision_dataset(info: SuiteInfo, root: Path, wrappers: tuple[str, ...], marker: str, download: bool, make):
    """Find the folder holding torchvision's dataset folder (`marker` is a file inside it; ".." lets --data-root
    name the dataset folder itself), fetched into `root` first when `download` and absent, and parse it with
    `make(folder)`; returns (folder, dataset)."""
    tv_root = locate_or_download(info, root, (".", *wrappers, ".."), lambda folder: (folder / marker).is_file(),
                                 download, lambda: make(str(root), download=True))
    return tv_root, _parse_with_torchvision(info, lambda: make(str(tv_root)), root)


def load_food101(root, split=None, download=False):
    from torchvision.datasets import Food101

    info = FOOD101
    split = check_split(info, split)
    root = resolve_root(root)
    tv_root, dataset = _torchvision_dataset(info, root, ("food101", "Food101", "food-101-root"), f"food-101/meta/{split}.json",
                                            download, partial(Food101, split=split))
    items = [(Path(p), label) for p, label in zip(dataset._image_files, dataset._labels)]
    classnames = [name.replace("_", " ") for name in dataset.classes]
    return finish(info, split, root, tv_root / "food-101" / "images", items, classnames, stored_templates("food101"),
                  check_files=True)


def load_fgvc_aircraft(root, split=None, download=False):
    from torchvision.datasets import FGVCAircraft

    info = FGVC_AIRCRAFT
    split = check_split(info, split)
    root = resolve_root(root)
    tv_root, dataset = _torchvision_dataset(info, root, ("fgvc_aircraft", "fgvc-aircraft", "FGVCAircraft"),
                                            f"fgvc-aircraft-2013b/data/images_variant_{split}.txt", download,
                                            partial(FGVCAircraft, split=split, annotation_level="variant"))
    items = [(Path(p), label) for p, label in zip(dataset._image_files, dataset._labels)]
    # CLIP's aircraft class names are the variant names of variants.txt, verbatim.
    return finish(info, split, root, tv_root / "fgvc-aircraft-2013b" / "data" / "images", items, list(dataset.classes),
                  stored_templates("fgvc_aircraft"), check_files=True)


def load_oxford_pets(root, split=None, download=False):
    from torchvision.datasets import OxfordIIITPet

    info = OXFORD_PETS
    split = check_split(info, split)
    root = resolve_root(root)
    tv_root, dataset = _torchvision_dataset(info, root, ("oxford_pets", "oxford-pets", "pets", "OxfordPets"),
                                            f"oxford-iiit-pet/annotations/{split}.txt", download,
                                            partial(OxfordIIITPet, split=split))
    items = [(Path(p), label) for p, label in zip(dataset._images, dataset._labels)]
    return finish(info, split, root, tv_root / "oxford-iiit-pet" / "images", items, stored_classnames("oxford_pets"),
                  stored_templates("oxford_pets"), check_files=True)


# --------------------------------------------------------------------------------------------------
# Flowers102


def load_flowers102(root, split=None, download=False):
    from scipy.io import loadmat

    info = FLOWERS102
    split = check_split(info, split)
    root = resolve_root(root)
    candidates = ("flowers-102", "flowers102/flowers-102", "Flowers102/flowers-102", "flowers102", ".")

    def is_base(folder: Path) -> bool:
        return (folder / "setid.mat").is_file() and (folder / "imagelabels.mat").is_file() and (folder / "jpg").is_dir()

    def fetch():
        from torchvision.datasets import Flowers102

        Flowers102(str(root), download=True)

    base = locate_or_download(info, root, candidates, is_base, download, fetch)
    try:
        ids = np.atleast_1d(loadmat(base / "setid.mat", squeeze_me=True)[{"train": "trnid", "val": "valid", "test": "tstid"}[split]])
        labels = np.atleast_1d(loadmat(base / "imagelabels.mat", squeeze_me=True)["labels"])
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"Could not read {base}/setid.mat or imagelabels.mat ({error}); re-download them from {info.source}.") from error
    items = []
    for image_id in ids.tolist():
        if not 1 <= image_id <= len(labels):
            raise UserError(f"{base / 'setid.mat'} names image {image_id}, which imagelabels.mat lacks; re-download both files.")
        items.append((base / "jpg" / f"image_{image_id:05d}.jpg", int(labels[image_id - 1]) - 1))
    return finish(info, split, root, base / "jpg", items, stored_classnames("flowers102"), stored_templates("flowers102"),
                  check_files=True)


# --------------------------------------------------------------------------------------------------
# SUN397


def sun397_name(category: str) -> str:
    """"/c/church/indoor" -> "indoor church": the path below the letter, reversed (CoOp's naming)."""
    parts = category.strip("/").split("/")[1:]
    return " ".join(reversed(parts)).replace("_", " ")


def load_sun397(root, split=None, download=False):
    info = SUN397
    split = check_split(info, split)
    root = resolve_root(root)
    candidates = ("SUN397", "sun397/SUN397", "sun397", ".")

    def is_base(folder: Path) -> bool:
        return (folder / "ClassName.txt").is_file() or (folder / "a" / "abbey").is_dir()

    def fetch():
        from torchvision.datasets import SUN397 as TorchvisionSUN397

        TorchvisionSUN397(str(root), download=True)

    base = locate_or_download(info, root, candidates, is_base, download, fetch)
    places = (base, base / "Partitions", base.parent / "Partitions", base.parent)
    split_file = next((d / f"{split}.txt" for d in places if (d / f"{split}.txt").is_file()), None)
    if split_file is None and download:
        from torchvision.datasets.utils import download_and_extract_archive

        run_download(info, base, lambda: download_and_extract_archive(
            "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip", str(base)))
        split_file = next((d / f"{split}.txt" for d in places if (d / f"{split}.txt").is_file()), None)
    if split_file is None:
        raise UserError(
            f"SUN397's partition file {split}.txt was not found in {base} or {base / 'Partitions'}; unpack Partitions.zip "
            "from vision.princeton.edu/projects/2010/SUN/download/ there, or add --download."
        )
    lines = [line.strip() for line in split_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    class_file = next((d / "ClassName.txt" for d in places if (d / "ClassName.txt").is_file()), None)
    if class_file is not None:
        categories = [line.strip() for line in class_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:  # every class appears in every partition, so the list itself gives the (sorted) classes
        categories = sorted({line.rsplit("/", 1)[0] for line in lines})
    index = {category: i for i, category in enumerate(categories)}
    items = []
    for line in lines:
        category = line.rsplit("/", 1)[0]
        if category not in index:
            raise UserError(f"{split_file} lists {line}, whose class is not in {class_file}; use the files of one SUN397 release.")
        items.append((base / line.lstrip("/"), index[category]))
    classnames = [sun397_name(c) for c in categories]
    return finish(info, split, root, base, items, classnames, stored_templates("sun397"), check_files=True)


# --------------------------------------------------------------------------------------------------
# Stanford Cars


def year_first(name: str) -> str:
    """"AM General Hummer SUV 2000" -> "2000 AM General Hummer SUV" (CLIP's and CoOp's class names)."""
    words = name.split()
    return " ".join([words[-1], *words[:-1]]) if words and words[-1].isdigit() else name


def load_stanford_cars(root, split=None, download=False):
    info = STANFORD_CARS
    split = check_split(info, split)
    root = resolve_root(root)
    base = find_base(root, ("stanford_cars", "StanfordCars", "stanford-cars", "cars", "."),
                     lambda folder: (folder / "cars_test").is_dir())
    if base is None:
        raise not_found(info, root)
    coop = base / "split_zhou_StanfordCars.json"
    if coop.is_file():
        pairs, names = read_coop_split(coop, split)
        items = [(base / p, label) for p, label in pairs]
        return finish(info, split, root, base, items, names, stored_templates("stanford_cars"), check_files=True)
    if base.name == "stanford_cars" and (base / "devkit" / "cars_meta.mat").is_file():
        from torchvision.datasets import StanfordCars

        dataset = _parse_with_torchvision(info, lambda: StanfordCars(str(base.parent), split=split), root)
        items = [(Path(p), int(label)) for p, label in dataset._samples]
        names = [year_first(str(name)) for name in dataset.classes]
        return finish(info, split, root, base, items, names, stored_templates("stanford_cars"), check_files=True)
    raise not_found(info, root, f"{base} has cars_test/ but neither split_zhou_StanfordCars.json nor stanford_cars/devkit/cars_meta.mat")


LOADERS = {
    "caltech101": (CALTECH101, load_caltech101),
    "dtd": (DTD, load_dtd),
    "food101": (FOOD101, load_food101),
    "sun397": (SUN397, load_sun397),
    "stanford_cars": (STANFORD_CARS, load_stanford_cars),
    "fgvc_aircraft": (FGVC_AIRCRAFT, load_fgvc_aircraft),
    "oxford_pets": (OXFORD_PETS, load_oxford_pets),
    "flowers102": (FLOWERS102, load_flowers102),
}
