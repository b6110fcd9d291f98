import gzip
import os
import struct
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
from PIL import Image

from lr0fm.data import load_dataset
from lr0fm.data.fashion_mnist import CLASSNAMES, DEBIAN_ROOT, TEMPLATES, load_arrays, read_idx
from lr0fm.errors import UserError


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_idx_round_trip(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


def test_idx_truncated_and_foreign_files_are_user_errors(tmp_path):
    array = np.zeros((3, 4, 5), dtype=np.uint8)
    write_idx(tmp_path / "a.gz", array)
    raw = gzip.open(tmp_path / "a.gz").read()
    with gzip.open(tmp_path / "short.gz", "wb") as handle:
        handle.write(raw[:-7])
    with pytest.raises(UserError, match="truncated"):
        read_idx(tmp_path / "short.gz")
    (tmp_path / "text").write_bytes(b"hello world, not idx")
    with pytest.raises(UserError, match="not an unsigned-byte IDX"):
        read_idx(tmp_path / "text")


def test_shipped_test_split():
    dataset = load_dataset("fashion_mnist")
    assert (dataset.split, len(dataset), len(dataset.classnames)) == ("test", 10_000, 10)
    assert dataset.classnames == CLASSNAMES and dataset.templates == TEMPLATES
    assert all("{}" in t for t in dataset.templates) and len(dataset.templates) >= 5
    # Balanced: 1,000 images per class, as published.
    assert np.bincount(dataset.labels).tolist() == [1000] * 10
    image = dataset.load_image(0)
    assert image.mode == "RGB" and image.size == (28, 28)


def test_limit_changes_length_and_fingerprint():
    full = load_dataset("fashion_mnist")
    small = load_dataset("fashion_mnist").limit(100)
    assert len(small) == 100 and len(small.images) == 100
    assert small.fingerprint() != full.fingerprint()
    assert load_dataset("fashion_mnist").limit(100).fingerprint() == small.fingerprint()
    with pytest.raises(UserError, match="positive"):
        load_dataset("fashion_mnist").limit(0)


@pytest.mark.skipif(not DEBIAN_ROOT.exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_train_split_from_debian_package():
    images, labels = load_arrays("train")
    assert images.shape == (60_000, 28, 28) and labels.shape == (60_000,)
    assert np.bincount(labels).tolist() == [6000] * 10


def test_custom_root_and_missing_root(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(6) % 10)
    dataset = load_dataset("fashion_mnist", root=str(tmp_path))
    assert len(dataset) == 6 and dataset.labels == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(np.asarray(dataset.load_image(2))[..., 0], images[2])
    with pytest.raises(UserError, match="--download"):
        load_dataset("fashion_mnist", root=str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="'train' and 'test'"):
        load_dataset("fashion_mnist", split="validation")


def make_folder(root: Path, classes=("golden_retriever", "tabby_cat"), per_class=2) -> Path:
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (20, 10), (i * 40, 80, 120)).save(root / name / f"{i}.png")
    return root


def test_folder_dataset_names_labels_and_defaults(tmp_path):
    root = make_folder(tmp_path / "pets")
    (root / "tabby_cat" / "notes.txt").write_text("not an image")
    dataset = load_dataset(f"folder:{root}")
    assert dataset.classnames == ["golden retriever", "tabby cat"]
    assert dataset.labels == [0, 0, 1, 1]
    assert all("{}" in t for t in dataset.templates)
    assert dataset.describe(3) == str(Path("tabby_cat") / "1.png")


def test_folder_dataset_classnames_and_templates_files(tmp_path):
    root = make_folder(tmp_path / "pets")
    (root / "classnames.txt").write_text("Golden Retriever\nTabby Cat\n")
    (root / "templates.txt").write_text("a photo of a {}, a pet.\n\nitap of a {}.\n")
    dataset = load_dataset(f"folder:{root}")
    assert dataset.classnames == ["Golden Retriever", "Tabby Cat"]
    assert dataset.templates == ["a photo of a {}, a pet.", "itap of a {}."]
    (root / "classnames.txt").write_text("only one\n")
    with pytest.raises(UserError, match="one name per sub-folder"):
        load_dataset(f"folder:{root}")
    (root / "classnames.txt").unlink()
    (root / "templates.txt").write_text("no placeholder here\n")
    with pytest.raises(UserError, match=r"must contain \{\}"):
        load_dataset(f"folder:{root}")


def test_folder_dataset_layout_errors(tmp_path):
    with pytest.raises(UserError, match="one sub-folder per class"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(UserError, match="no class sub-folders"):
        load_dataset(f"folder:{tmp_path / 'flat'}")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match="no image files"):
        load_dataset(f"folder:{tmp_path / 'empty'}")


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UserError, match="fashion_mnist, folder:PATH"):
        load_dataset("imagenet-9000")
