"""Shared fixtures: offline mode, a tiny open_clip architecture, a fake model with known answers, folder datasets."""

import os

# Before anything imports huggingface_hub, which reads these once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lr0fm.models.base import ImageConfig, ZeroShotModel

TINY_ARCH = "lr0fm-test-tiny"
# A real open_clip CLIP (ViT image tower, transformer text tower), small enough to run in milliseconds.
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}

# Grey levels of the fake model's classes: every pairwise distance differs, so top-5 orders have no ties.
LEVELS = (10, 40, 90, 150, 200, 245)
CLASSNAMES = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")


class ColourModel(ZeroShotModel):
    """A ZeroShotModel whose answers are known by construction.

    An image's mean grey level v in [0, 1] maps to the unit vector at angle pi*v; a prompt mentioning class
    `name` maps to the angle of that class's grey level. So a solid image of a class's level is that class,
    and the top-5 are the classes whose levels lie nearest. Counts calls, and can fail after N image batches.
    """

    def __init__(self, classnames=CLASSNAMES, levels=LEVELS, size=32, spec="fake:colours", fail_after=None):
        self.spec = spec
        self.family = "openclip"
        self.image = ImageConfig(size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        self.levels = dict(zip(classnames, levels))
        self.module = torch.nn.Linear(1, 1)
        with torch.no_grad():  # fixed weights: the fingerprint must not depend on the RNG
            self.module.weight.fill_(1.0)
            self.module.bias.copy_(torch.tensor([float(sum(levels))]))
        self.logit_scale = 10.0
        self.fail_after = fail_after
        self.reset_counts()

    def reset_counts(self):
        self.image_calls = 0
        self.images_seen = 0
        self.text_calls = 0

    @staticmethod
    def direction(angle):
        return torch.tensor([math.cos(angle), math.sin(angle)])

    def encode_image(self, pixels):
        if self.fail_after is not None and self.image_calls >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.image_calls += 1
        self.images_seen += len(pixels)
        angle = math.pi * pixels.float().mean(dim=(1, 2, 3))
        return torch.stack([angle.cos(), angle.sin()], dim=1)

    def encode_text(self, texts):
        self.text_calls += 1
        rows = []
        for text in texts:
            name = max((n for n in self.levels if n in text), key=len)
            rows.append(self.direction(math.pi * self.levels[name] / 255))
        return torch.stack(rows)

    def expected_top5(self, level):
        """Class indices nearest to grey `level` (0..255), nearest first."""
        distances = [abs(level - v) for v in self.levels.values()]
        return list(np.argsort(distances, kind="stable")[:5])


@pytest.fixture
def colour_model():
    return ColourModel


@pytest.fixture
def fake(monkeypatch):
    """A "fake" backend in the backend table: `fake(model)` makes `model.spec` ("fake:NAME") loadable.

    Loading returns the registered object itself, so a test can count its calls; an unregistered fake spec
    fails the backend's check like an unknown architecture."""
    from lr0fm.errors import UserError
    from lr0fm.models.backends import BACKENDS, Backend

    models = {}

    def check(spec):
        if f"fake:{spec.name}" not in models:
            raise UserError(f"Unknown fake model {spec.name!r}; register it first.")

    monkeypatch.setitem(BACKENDS, "fake", Backend("fake", "test models with known answers",
                                                   lambda spec: models[f"fake:{spec.name}"], check))

    def register(model):
        models[model.spec] = model
        return model

    return register


def evaluation(config):
    """(rows, outcomes) of one evaluation through the public entry point."""
    from lr0fm.api import run_evaluation

    result = run_evaluation(config)
    return result.rows, result.outcomes


def write_folder(root: Path, images: dict, templates=("a photo of a {}.", "{} in a picture.")) -> Path:
    """root/<class>/<i>.png of solid grey levels; images maps class name -> list of levels."""
    for name, levels in images.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, level in enumerate(levels):
            Image.new("RGB", (40, 30), (level, level, level)).save(root / name / f"{i:03d}.png")
    if templates:
        (root / "templates.txt").write_text("\n".join(templates) + "\n")
    return root


@pytest.fixture
def make_folder():
    return write_folder


@pytest.fixture(scope="session")
def tiny_openclip(tmp_path_factory):
    """Registers the tiny architecture with open_clip; returns (arch, weights file of a random init)."""
    import open_clip
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("openclip")
    (folder / f"{TINY_ARCH}.json").write_text(json.dumps(TINY_CONFIG))
    if TINY_ARCH not in open_clip.list_models():
        open_clip.add_model_config(folder / f"{TINY_ARCH}.json")
    torch.manual_seed(1234)
    clip = open_clip.create_model(TINY_ARCH, pretrained=None).eval()
    weights = folder / "tiny.safetensors"
    save_file(clip.state_dict(), str(weights))
    return TINY_ARCH, weights
