"""The 15 LR0.FM suite loaders, each on a tiny tree in its official layout that the test writes itself."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lr0fm import reference
from lr0fm.data import DATASETS, load_dataset
from lr0fm.data.fine_grained import caltech_folders, sun397_name, year_first
from lr0fm.data.lr0fm_suite import SUITE
from lr0fm.data.suite_base import imagenet_classnames, imagenet_templates, stored_classnames, stored_templates, wnids
from lr0fm.errors import UserError
from suite_fixtures import BUILDERS


@pytest.fixture(autouse=True)
def _quiet_count_warnings(caplog):
    # Fixture trees are far smaller than the real splits; the size warning is expected.
    caplog.set_level(logging.ERROR, logger="lr0fm.data")


def image(path: Path, level: int = 128, fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 8), (level, 255 - level, level // 2)).save(path, fmt)
    return path


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def relative(dataset) -> list[str]:
    return [dataset.describe(i) for i in range(len(dataset))]


# --------------------------------------------------------------------------------------------------
# The table and the prompt data


def test_suite_matches_the_paper_table():
    assert tuple(SUITE) == reference.DATASETS
    for key, info in SUITE.items():
        assert info.key == key
        assert info.classes == reference.CLASS_COUNTS[key]
        assert info.split in info.splits
        assert key in DATASETS and info.layout in DATASETS[key]
    assert SUITE["eurosat"].split == "val" and SUITE["eurosat"].images == 5_400
    assert SUITE["dtd"].split == "test1" and SUITE["sun397"].split == "Testing_01"


def test_template_and_classname_lists():
    counts = {"eurosat": 3, "dtd": 8, "sun397": 2, "ucf101": 48, "caltech101": 34, "stanford_cars": 8,
              "fgvc_aircraft": 2, "food101": 1, "oxford_pets": 1, "flowers102": 1}
    for key, count in counts.items():
        templates = stored_templates(key)
        assert len(templates) == count, key
        assert all(t.count("{}") == 1 for t in templates), key
    assert stored_templates("eurosat")[0] == "a centered satellite photo of {}."
    assert stored_templates("ucf101")[0] == "a photo of a person {}."
    assert stored_templates("ucf101")[-1] == "a demonstration of the person practicing {}."
    assert len(imagenet_templates()) == 80 and all("{}" in t for t in imagenet_templates())

    assert len(stored_classnames("caltech101")) == 102 and stored_classnames("caltech101")[0] == "background"
    assert stored_classnames("eurosat")[0] == "annual crop land" and len(stored_classnames("eurosat")) == 10
    assert len(stored_classnames("oxford_pets")) == 37 and len(stored_classnames("flowers102")) == 102
    # CLIP's Caltech order is the archive's sorted folder order (upper case first).
    folders = caltech_folders()
    assert folders == sorted(folders) and len(set(folders)) == 102
    assert folders[:3] == ["BACKGROUND_Google", "Faces", "Faces_easy"] and folders[-1] == "yin_yang"


def test_wnid_lists_and_subset_names():
    full, a, r = wnids("imagenet"), wnids("imagenet_a"), wnids("imagenet_r")
    assert len(full) == 1000 == len(set(full)) and list(full) == sorted(full)
    assert len(a) == 200 == len(r) and set(a) <= set(full) and set(r) <= set(full)
    assert list(a) == sorted(a) and list(r) == sorted(r) and set(a) != set(r)
    names = imagenet_classnames()
    assert len(names) == 1000 and names[0] == "tench"
    known = {"n01498041": "stingray", "n12267677": "acorn", "n01443537": "goldfish",
             "n01484850": "great white shark", "n02106662": "German Shepherd Dog", "n04146614": "school bus"}
    for wnid, name in known.items():
        assert names[full.index(wnid)] == name
    # timm ships the same lists together with each subset's index into the 1000 classes.
    import timm

    info = Path(timm.__file__).parent / "data" / "_info"
    if (info / "imagenet_a_indices.txt").exists():
        assert [full.index(w) for w in a] == [int(i) for i in (info / "imagenet_a_indices.txt").read_text().split()]
        assert [full.index(w) for w in r] == [int(i) for i in (info / "imagenet_r_indices.txt").read_text().split()]


# --------------------------------------------------------------------------------------------------
# Missing data, bad splits


@pytest.mark.parametrize("key", list(reference.DATASETS))
def test_missing_root_names_the_layout(key, tmp_path):
    with pytest.raises(UserError) as error:
        load_dataset(key, root=str(tmp_path / "nothing"))
    message = str(error.value)
    assert SUITE[key].title in message and SUITE[key].layout in message and "--data-root" in message


def test_unknown_split_lists_the_choices(tmp_path):
    with pytest.raises(UserError, match=r"no split 'test7'; use one of: val, test, train \(the paper used val\)"):
        load_dataset("eurosat", root=str(tmp_path), split="test7")


# --------------------------------------------------------------------------------------------------
# ImageNet and its variants


def test_imagenet_val(tmp_path):
    val = tmp_path / "imagenet" / "val"
    for wnid, count in (("n01440764", 2), ("n01443537", 1), ("n15075141", 1)):
        for i in range(count):
            image(val / wnid / f"ILSVRC2012_val_{wnid}_{i}.JPEG")
    (val / "not-a-class").mkdir()
    (val / "README.txt").write_text("x")
    dataset = load_dataset("imagenet", root=str(tmp_path))
    assert (dataset.name, dataset.split, len(dataset)) == ("imagenet", "val", 4)
    assert dataset.labels == [0, 0, 1, 999]
    assert dataset.classnames == list(imagenet_classnames()) and len(dataset.templates) == 80
    assert relative(dataset)[0] == "n01440764/ILSVRC2012_val_n01440764_0.JPEG"
    assert dataset.load_image(3).size == (12, 8)


def test_imagenet_a_and_r_are_200_way(tmp_path):
    image(tmp_path / "imagenet-a" / "n01498041" / "0.jpg")
    image(tmp_path / "imagenet-a" / "n12267677" / "1.jpg")
    (tmp_path / "imagenet-a" / "README.txt").write_text("ImageNet-A")
    image(tmp_path / "imagenet-r" / "n01443537" / "art_0.jpg")
    image(tmp_path / "imagenet-r" / "n01484850" / "cartoon_0.jpg")
    a = load_dataset("imagenet_a", root=str(tmp_path))
    assert len(a.classnames) == 200 and a.labels == [0, 199]
    assert (a.classnames[0], a.classnames[199]) == ("stingray", "acorn")
    r = load_dataset("imagenet_r", root=str(tmp_path))
    assert len(r.classnames) == 200 and r.labels == [0, 1]
    assert r.classnames[:2] == ["goldfish", "great white shark"]
    # --data-root may be the dataset folder itself, but never another subset's folder.
    assert load_dataset("imagenet_r", root=str(tmp_path / "imagenet-r")).labels == [0, 1]
    with pytest.raises(UserError, match="ImageNet-A was not found"):
        load_dataset("imagenet_a", root=str(tmp_path / "imagenet-r"))


def test_imagenet_v2_folders_are_class_indices(tmp_path):
    base = tmp_path / "imagenetv2-matched-frequency-format-val"
    for index in (0, 2, 10, 999):  # "10" sorts before "2": labels must come from the number, not the order
        image(base / str(index) / "a.jpeg")
    dataset = load_dataset("imagenet_v2", root=str(tmp_path))
    assert dataset.split == "matched-frequency"
    assert sorted(zip(relative(dataset), dataset.labels)) == [("0/a.jpeg", 0), ("10/a.jpeg", 10), ("2/a.jpeg", 2), ("999/a.jpeg", 999)]
    with pytest.raises(UserError, match="ImageNet-V2 was not found"):
        load_dataset("imagenet_v2", root=str(tmp_path), split="top-images")


def test_imagenet_sketch(tmp_path):
    image(tmp_path / "imagenet-sketch" / "sketch" / "n07753592" / "sketch_0.JPEG")
    image(tmp_path / "imagenet-sketch" / "sketch" / "n01440764" / "sketch_1.JPEG")
    dataset = load_dataset("imagenet_sketch", root=str(tmp_path))
    names = imagenet_classnames()
    assert [dataset.classnames[label] for label in dataset.labels] == ["tench", "banana"]
    assert len(dataset.classnames) == 1000 and names[dataset.labels[1]] == "banana"


# --------------------------------------------------------------------------------------------------
# Caltech101: seeded 30-per-class split, background kept in the classifier only


def test_caltech101_seeded_split(tmp_path):
    base = tmp_path / "caltech101" / "101_ObjectCategories"
    sizes = {"BACKGROUND_Google": 5, "Faces_easy": 33, "accordion": 31, "yin_yang": 32}
    for folder, count in sizes.items():
        for i in range(1, count + 1):
            image(base / folder / f"image_{i:04d}.jpg", level=i)
    test = load_dataset("caltech101", root=str(tmp_path))
    train = load_dataset("caltech101", root=str(tmp_path), split="train")
    assert len(test.classnames) == 102 and test.classnames[0] == "background"
    assert test.classnames[2] == "centered face" and test.classnames[101] == "yin and yang symbol"
    assert len(test) == 3 + 1 + 2 and len(train) == 90
    assert sorted(set(test.labels)) == [2, 5, 101] and 0 not in train.labels
    assert not any(d.startswith("BACKGROUND_Google") for d in relative(test) + relative(train))
    assert set(relative(test)).isdisjoint(relative(train))

    # The rule, written out: one RandomState(1234) draws 30 of each class's sorted images, in classifier order.
    rng = np.random.RandomState(1234)
    expected = []
    for label, folder in ((2, "Faces_easy"), (5, "accordion"), (101, "yin_yang")):
        names = [f"{folder}/image_{i:04d}.jpg" for i in range(1, sizes[folder] + 1)]
        chosen = set(rng.choice(len(names), 30, replace=False).tolist())
        expected += [(name, label) for i, name in enumerate(names) if i not in chosen]
    assert list(zip(relative(test), test.labels)) == expected


def test_caltech101_too_small_class(tmp_path):
    for i in range(1, 11):
        image(tmp_path / "101_ObjectCategories" / "accordion" / f"image_{i:04d}.jpg")
    image(tmp_path / "101_ObjectCategories" / "anchor" / "image_0001.jpg")
    with pytest.raises(UserError, match="draws 30 for training"):
        load_dataset("caltech101", root=str(tmp_path))


# --------------------------------------------------------------------------------------------------
# DTD, Food101, SUN397


@pytest.mark.parametrize("layout", ["dtd/dtd", "dtd"])  # torchvision's download, the official tarball
def test_dtd_split_1(tmp_path, layout):
    base = tmp_path / layout
    for category in ("banded", "blotchy", "zigzagged"):
        for i in range(2):
            image(base / "images" / category / f"{category}_{i:04d}.jpg")
    (base / "labels").mkdir(parents=True)
    (base / "labels" / "test1.txt").write_text("zigzagged/zigzagged_0001.jpg\nbanded/banded_0000.jpg\n")
    (base / "labels" / "test2.txt").write_text("blotchy/blotchy_0000.jpg\n")
    dataset = load_dataset("dtd", root=str(tmp_path))
    assert dataset.split == "test1" and dataset.classnames == ["banded", "blotchy", "zigzagged"]
    assert relative(dataset) == ["zigzagged/zigzagged_0001.jpg", "banded/banded_0000.jpg"] and dataset.labels == [2, 0]
    assert len(dataset.templates) == 8
    assert load_dataset("dtd", root=str(tmp_path), split="test2").labels == [1]


def test_food101_test_split(tmp_path):
    base = tmp_path / "food-101"
    write_json(base / "meta" / "test.json", {"apple_pie": ["apple_pie/101"], "baby_back_ribs": ["baby_back_ribs/7", "baby_back_ribs/9"]})
    write_json(base / "meta" / "train.json", {"apple_pie": ["apple_pie/5"], "baby_back_ribs": ["baby_back_ribs/6"]})
    for name in ("apple_pie/101", "baby_back_ribs/7", "baby_back_ribs/9", "apple_pie/5", "baby_back_ribs/6"):
        image(base / "images" / f"{name}.jpg")
    dataset = load_dataset("food101", root=str(tmp_path))
    assert dataset.classnames == ["apple pie", "baby back ribs"]
    assert relative(dataset) == ["apple_pie/101.jpg", "baby_back_ribs/7.jpg", "baby_back_ribs/9.jpg"]
    assert dataset.labels == [0, 1, 1] and dataset.templates == ["a photo of {}, a type of food."]
    assert load_dataset("food101", root=str(base)).labels == [0, 1, 1]  # --data-root may name food-101/ itself


def test_sun397_testing_01_and_path_names(tmp_path):
    base = tmp_path / "SUN397"
    categories = ["/a/abbey", "/c/church/indoor", "/c/church/outdoor"]
    (base).mkdir()
    (base / "ClassName.txt").write_text("\n".join(categories) + "\n")
    files = {"/a/abbey/sun_aaa.jpg": 0, "/c/church/indoor/sun_bbb.jpg": 1, "/c/church/outdoor/sun_ccc.jpg": 2,
             "/a/abbey/sun_ddd.jpg": 0}
    for name in files:
        image(base / name.lstrip("/"))
    partitions = base / "Partitions"
    partitions.mkdir()
    (partitions / "Testing_01.txt").write_text("/c/church/outdoor/sun_ccc.jpg\n/a/abbey/sun_aaa.jpg\n")
    (partitions / "Training_01.txt").write_text("/c/church/indoor/sun_bbb.jpg\n/a/abbey/sun_ddd.jpg\n")
    dataset = load_dataset("sun397", root=str(tmp_path))
    assert dataset.split == "Testing_01"
    assert dataset.classnames == ["abbey", "indoor church", "outdoor church"]
    assert relative(dataset) == ["c/church/outdoor/sun_ccc.jpg", "a/abbey/sun_aaa.jpg"] and dataset.labels == [2, 0]
    assert load_dataset("sun397", root=str(tmp_path), split="Training_01").labels == [1, 0]
    assert sun397_name("/b/bakery/shop") == "shop bakery" and sun397_name("/a/airplane_cabin") == "airplane cabin"

    (partitions / "Testing_01.txt").unlink()
    with pytest.raises(UserError, match="Partitions.zip"):
        load_dataset("sun397", root=str(tmp_path))


def test_missing_listed_image_is_reported(tmp_path):
    base = tmp_path / "dtd"
    image(base / "images" / "banded" / "banded_0000.jpg")
    (base / "labels").mkdir()
    (base / "labels" / "test1.txt").write_text("banded/banded_0000.jpg\nbanded/banded_0001.jpg\n")
    with pytest.raises(UserError, match=r"1 of 2 DTD images .* are missing"):
        load_dataset("dtd", root=str(tmp_path))


# --------------------------------------------------------------------------------------------------
# Stanford Cars (CoOp json or torchvision devkit), FGVC-Aircraft, Pets, Flowers102


CARS = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Tesla Model S Sedan 2012"]


def test_stanford_cars_coop_split(tmp_path):
    base = tmp_path / "stanford_cars"
    for name in ("00001.jpg", "00002.jpg", "00003.jpg"):
        image(base / "cars_test" / name)
    names = [year_first(n) for n in CARS]
    write_json(base / "split_zhou_StanfordCars.json", {
        "train": [["cars_train/00009.jpg", 0, names[0]], ["cars_train/00010.jpg", 1, names[1]]],
        "val": [["cars_train/00011.jpg", 2, names[2]]],
        "test": [["cars_test/00002.jpg", 2, names[2]], ["cars_test/00001.jpg", 0, names[0]]],
    })
    dataset = load_dataset("stanford_cars", root=str(tmp_path))
    assert dataset.classnames == ["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 Tesla Model S Sedan"]
    assert relative(dataset) == ["cars_test/00002.jpg", "cars_test/00001.jpg"] and dataset.labels == [2, 0]
    assert len(dataset.templates) == 8


def test_stanford_cars_torchvision_devkit(tmp_path):
    from scipy.io import savemat

    base = tmp_path / "stanford_cars"
    for name in ("00001.jpg", "00002.jpg"):
        image(base / "cars_test" / name)
    annotations = np.zeros((1, 2), dtype=[("class", "O"), ("fname", "O")])
    annotations[0, 0] = (np.array([[3]], dtype=np.uint8), np.array(["00001.jpg"]))
    annotations[0, 1] = (np.array([[1]], dtype=np.uint8), np.array(["00002.jpg"]))
    savemat(base / "cars_test_annos_withlabels.mat", {"annotations": annotations})
    names = np.empty((1, 3), dtype=object)
    names[0, :] = CARS
    (base / "devkit").mkdir()
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": names})
    dataset = load_dataset("stanford_cars", root=str(tmp_path))
    assert dataset.classnames[0] == "2000 AM General Hummer SUV" and dataset.labels == [2, 0]
    assert relative(dataset) == ["cars_test/00001.jpg", "cars_test/00002.jpg"]


def test_fgvc_aircraft_variants(tmp_path):
    data = tmp_path / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True)
    (data / "variants.txt").write_text("707-320\n727-200\nA320\n")
    (data / "images_variant_test.txt").write_text("1025794 A320\n0034309 707-320\n")
    (data / "images_variant_trainval.txt").write_text("0056978 727-200\n")
    for name in ("1025794", "0034309", "0056978"):
        image(data / "images" / f"{name}.jpg")
    dataset = load_dataset("fgvc_aircraft", root=str(tmp_path))
    assert dataset.classnames == ["707-320", "727-200", "A320"] and dataset.labels == [2, 0]
    assert relative(dataset) == ["1025794.jpg", "0034309.jpg"]
    assert dataset.templates == ["a photo of a {}, a type of aircraft.", "a photo of the {}, a type of aircraft."]


def test_oxford_pets_test_split(tmp_path):
    base = tmp_path / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True)
    (base / "annotations" / "test.txt").write_text(
        "Abyssinian_201 1 1 1\namerican_bulldog_203 2 2 1\nyorkshire_terrier_190 37 2 25\n"
    )
    for name in ("Abyssinian_201", "american_bulldog_203", "yorkshire_terrier_190"):
        image(base / "images" / f"{name}.jpg")
    dataset = load_dataset("oxford_pets", root=str(tmp_path))
    assert dataset.labels == [0, 1, 36] and len(dataset.classnames) == 37
    assert [dataset.classnames[i] for i in dataset.labels] == ["Abyssinian", "American Bulldog", "Yorkshire Terrier"]


def test_flowers102_setid_tstid(tmp_path):
    from scipy.io import savemat

    base = tmp_path / "flowers-102"
    for i in range(1, 6):
        image(base / "jpg" / f"image_{i:05d}.jpg")
    savemat(base / "imagelabels.mat", {"labels": np.array([[77, 77, 1, 102, 5]], dtype=np.uint8)})
    savemat(base / "setid.mat", {"trnid": np.array([[1]]), "valid": np.array([[2]]), "tstid": np.array([[4, 3, 5]])})
    dataset = load_dataset("flowers102", root=str(tmp_path))
    assert relative(dataset) == ["image_00004.jpg", "image_00003.jpg", "image_00005.jpg"]
    assert dataset.labels == [101, 0, 4] and dataset.classnames[0] == "pink primrose"
    assert load_dataset("flowers102", root=str(tmp_path), split="train").labels == [76]


# --------------------------------------------------------------------------------------------------
# CoOp splits: EuroSAT (val) and UCF101 (test)


def test_eurosat_coop_val_split(tmp_path):
    base = tmp_path / "eurosat"
    for name in ("SeaLake/SeaLake_1.jpg", "AnnualCrop/AnnualCrop_2.jpg", "Forest/Forest_3.jpg", "River/River_4.jpg"):
        image(base / "2750" / name)
    write_json(base / "split_zhou_EuroSAT.json", {
        "train": [["River/River_4.jpg", 8, "River"]],
        "val": [["SeaLake/SeaLake_1.jpg", 9, "Sea or Lake"], ["AnnualCrop/AnnualCrop_2.jpg", 0, "Annual Crop Land"]],
        "test": [["Forest/Forest_3.jpg", 1, "Forest"]],
    })
    dataset = load_dataset("eurosat", root=str(tmp_path))
    assert dataset.split == "val" and dataset.labels == [9, 0]
    assert relative(dataset) == ["SeaLake/SeaLake_1.jpg", "AnnualCrop/AnnualCrop_2.jpg"]
    assert dataset.classnames[9] == "lake or sea" and dataset.templates[0] == "a centered satellite photo of {}."
    assert load_dataset("eurosat", root=str(tmp_path), split="test").labels == [1]

    (base / "split_zhou_EuroSAT.json").unlink()
    with pytest.raises(UserError, match="split_zhou_EuroSAT.json"):
        load_dataset("eurosat", root=str(tmp_path))


def test_ucf101_coop_midframes(tmp_path):
    base = tmp_path / "ucf101"
    frames = base / "UCF-101-midframes"
    for name in ("Apply_Eye_Makeup/v_ApplyEyeMakeup_g01_c01.jpg", "Archery/v_Archery_g02_c01.jpg", "Yo_Yo/v_YoYo_g03_c02.jpg"):
        image(frames / name)
    write_json(base / "split_zhou_UCF101.json", {
        "train": [["Apply_Eye_Makeup/v_ApplyEyeMakeup_g01_c01.jpg", 0, "Apply_Eye_Makeup"]],
        "val": [["Archery/v_Archery_g02_c01.jpg", 1, "Archery"]],
        "test": [["Yo_Yo/v_YoYo_g03_c02.jpg", 2, "Yo_Yo"], ["Archery/v_Archery_g02_c01.jpg", 1, "Archery"]],
    })
    dataset = load_dataset("ucf101", root=str(tmp_path))
    assert dataset.classnames == ["Apply Eye Makeup", "Archery", "Yo Yo"] and dataset.labels == [2, 1]
    assert len(dataset.templates) == 48


def test_fingerprint_does_not_depend_on_where_the_root_lives(tmp_path):
    for root in (tmp_path / "one", tmp_path / "two"):
        for wnid in ("n01498041", "n12267677"):
            image(root / "imagenet-a" / wnid / "x.jpg")
    first = load_dataset("imagenet_a", root=str(tmp_path / "one"))
    second = load_dataset("imagenet_a", root=str(tmp_path / "two"))
    assert first.fingerprint() == second.fingerprint()


def test_download_uses_torchvision_and_reports_failure(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    def fake_dtd(root, download=False, **kwargs):  # lays out what torchvision's DTD download leaves
        calls.append((root, download))
        base = Path(root) / "dtd" / "dtd"
        image(base / "images" / "banded" / "banded_0000.jpg")
        (base / "labels").mkdir(parents=True, exist_ok=True)
        (base / "labels" / "test1.txt").write_text("banded/banded_0000.jpg\n")

    monkeypatch.setattr(torchvision.datasets, "DTD", fake_dtd)
    dataset = load_dataset("dtd", root=str(tmp_path / "data"), download=True)
    assert calls == [(str(tmp_path / "data"), True)] and dataset.labels == [0]
    load_dataset("dtd", root=str(tmp_path / "data"), download=True)
    assert len(calls) == 1  # found on disk: no second download

    def offline(root, download=False, **kwargs):
        raise RuntimeError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "DTD", offline)
    with pytest.raises(UserError, match=r"Downloading DTD into .* failed \(network is unreachable\); get it from"):
        load_dataset("dtd", root=str(tmp_path / "other"), download=True)


@pytest.mark.parametrize("name, torchvision_class", [
    ("food101", "Food101"), ("fgvc_aircraft", "FGVCAircraft"), ("oxford_pets", "OxfordIIITPet"),
])
def test_torchvision_loaders_download_once_then_parse(tmp_path, monkeypatch, name, torchvision_class):
    import torchvision.datasets

    real = getattr(torchvision.datasets, torchvision_class)
    calls = []

    def fake(root, download=False, **kwargs):  # a download lays out what torchvision's would; parsing is real
        calls.append(download)
        if download:
            BUILDERS[name](Path(root))
            return None
        return real(root, **kwargs)

    monkeypatch.setattr(torchvision.datasets, torchvision_class, fake)
    dataset = load_dataset(name, root=str(tmp_path / "data"), download=True)
    assert calls == [True, False] and len(dataset) > 0
    load_dataset(name, root=str(tmp_path / "data"), download=True)
    assert calls == [True, False, False]  # found on disk: parsed, not fetched again
