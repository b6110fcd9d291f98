"""Text classifiers (prompt ensembling, on-disk cache) and scoring."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import math

import pytest
import torch

from lr0fm.models.base import ImageConfig, ZeroShotModel
from lr0fm.zeroshot import build_classifier, cached_classifier, classifier_key, logits, top_k


class TableModel(ZeroShotModel):
    """Text embeddings looked up in a table the test writes; counts encode_text calls."""

    def __init__(self, table, spec="fake:table"):
        self.spec = spec
        self.family = "openclip"
        self.image = ImageConfig(8, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        self.table = table
        self.module = torch.nn.Linear(1, 1)
        with torch.no_grad():
            self.module.weight.fill_(0.5)
            self.module.bias.fill_(0.25)
        self.text_calls = 0
        self.batches = []

    def encode_image(self, pixels):
        return pixels.flatten(1)[:, :3]

    def encode_text(self, texts):
        self.text_calls += 1
        self.batches.append(len(texts))
        return torch.stack([torch.tensor(self.table[t], dtype=torch.float32) for t in texts])


TEMPLATES = ["a {}.", "the {}!", "{} photo"]
# Deliberately different norms, so averaging without normalising each prompt first gives another answer.
TABLE = {
    "a cat.": [3.0, 0.0, 0.0],
    "the cat!": [0.0, 0.1, 0.0],
    "cat photo": [1.0, 1.0, 1.0],
    "a dog.": [0.0, 0.0, -2.0],
    "the dog!": [0.5, 0.5, 0.0],
    "dog photo": [0.0, 10.0, 0.0],
}


def by_hand(rows):
    """Normalise each prompt vector, average, normalise: plain Python, no torch."""
    units = [[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in rows]
    mean = [sum(column) / len(units) for column in zip(*units)]
    norm = math.sqrt(sum(v * v for v in mean))
    return [v / norm for v in mean]


def test_prompt_ensembling_matches_hand_computation():
    model = TableModel(TABLE)
    classifier = build_classifier(model, ["cat", "dog"], TEMPLATES)
    assert classifier.shape == (3, 2)  # (D, C)
    expected_cat = by_hand([TABLE["a cat."], TABLE["the cat!"], TABLE["cat photo"]])
    expected_dog = by_hand([TABLE["a dog."], TABLE["the dog!"], TABLE["dog photo"]])
    torch.testing.assert_close(classifier[:, 0], torch.tensor(expected_cat))
    torch.testing.assert_close(classifier[:, 1], torch.tensor(expected_dog))
    # Not the same as averaging the raw vectors.
    raw_cat = torch.tensor([TABLE["a cat."], TABLE["the cat!"], TABLE["cat photo"]]).mean(0)
    assert not torch.allclose(classifier[:, 0], raw_cat / raw_cat.norm(), atol=1e-3)


def test_prompts_are_batched():
    model = TableModel(TABLE)
    small = build_classifier(model, ["cat", "dog"], TEMPLATES, batch_size=4)
    assert model.batches == [4, 2]
    torch.testing.assert_close(small, build_classifier(TableModel(TABLE), ["cat", "dog"], TEMPLATES))


def test_classifier_needs_classes_and_templates():
    with pytest.raises(ValueError):
        build_classifier(TableModel(TABLE), [], TEMPLATES)
    with pytest.raises(ValueError):
        build_classifier(TableModel(TABLE), ["cat"], [])


def test_known_answers_top1_and_top5_order(colour_model):
    model = colour_model()
    names = list(model.levels)
    classifier = build_classifier(model, names, ["a photo of a {}.", "a {} thing"])
    levels = list(model.levels.values())
    pixels = torch.stack([torch.full((3, 32, 32), level / 255) for level in levels])
    scores = logits(model, model.encode_image(pixels), classifier)
    assert scores.shape == (len(levels), len(names))
    predictions = top_k(scores, 5)
    assert predictions[:, 0].tolist() == list(range(len(levels)))  # 100 % top-1
    for row, level in zip(predictions.tolist(), levels):
        assert row == model.expected_top5(level)
    # Class 2 (level 90): nearest levels 90, 40 (50 away), 150 (60), 10 (80), 200 (110).
    assert predictions[2].tolist() == [2, 1, 3, 0, 4]
    # scale x cosine: a perfect match scores exactly logit_scale.
    torch.testing.assert_close(scores.diagonal(), torch.full((len(levels),), model.logit_scale))


def test_logits_scale_and_bias():
    model = TableModel(TABLE)
    model.logit_scale, model.logit_bias = 7.0, -2.0
    classifier = torch.eye(3)[:, :2]
    image = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    expected = torch.tensor([[7.0 - 2.0, -2.0], [7.0 / math.sqrt(2) - 2.0, 7.0 / math.sqrt(2) - 2.0]])
    torch.testing.assert_close(logits(model, image, classifier), expected)


def test_top_k_pads_with_minus_one():
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
    assert top_k(scores, 5).tolist() == [[1, 2, 0, -1, -1], [0, 2, 1, -1, -1]]
    assert top_k(scores[:, :1], 5).tolist() == [[0, -1, -1, -1, -1], [0, -1, -1, -1, -1]]
    many = torch.arange(8.0).repeat(2, 1)
    assert top_k(many, 5).tolist() == [[7, 6, 5, 4, 3]] * 2


def test_cache_is_reused(tmp_path):
    model = TableModel(TABLE)
    first = cached_classifier(model, ["cat", "dog"], TEMPLATES, tmp_path / "cache")
    assert model.text_calls == 1
    files = list((tmp_path / "cache").iterdir())
    assert [f.suffix for f in files] == [".safetensors"]
    again = TableModel(TABLE)  # a fresh load of the same model
    second = cached_classifier(again, ["cat", "dog"], TEMPLATES, tmp_path / "cache")
    assert again.text_calls == 0
    torch.testing.assert_close(second, first)


@pytest.mark.parametrize("change", ["template", "classnames", "class order", "weights", "spec"])
def test_cache_key_covers_classes_templates_and_model(tmp_path, change):
    table = dict(TABLE, **{"an {}.".replace("{}", n): [1.0, 2.0, 3.0] for n in ("cat", "dog")})
    classnames, templates, model = ["cat", "dog"], list(TEMPLATES), TableModel(table)
    cached_classifier(model, classnames, templates, tmp_path)
    if change == "template":
        templates = ["an {}.", *TEMPLATES[1:]]
    elif change == "classnames":
        classnames = ["cat"]
    elif change == "class order":
        classnames = ["dog", "cat"]
    elif change == "weights":
        model = TableModel(table)
        with torch.no_grad():
            model.module.bias.fill_(0.75)
    else:
        model = TableModel(table, spec="fake:other")
    model.text_calls = 0
    rebuilt = cached_classifier(model, classnames, templates, tmp_path)
    assert model.text_calls == 1
    torch.testing.assert_close(rebuilt, build_classifier(model, classnames, templates))
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


def test_corrupted_cache_file_is_rebuilt(tmp_path):
    model = TableModel(TABLE)
    expected = cached_classifier(model, ["cat", "dog"], TEMPLATES, tmp_path)
    path = tmp_path / f"{classifier_key(model, ['cat', 'dog'], TEMPLATES)}.safetensors"
    assert path.is_file()
    path.write_bytes(path.read_bytes()[:40])  # a run killed mid-write by another tool, or a bad disk
    model.text_calls = 0
    rebuilt = cached_classifier(model, ["cat", "dog"], TEMPLATES, tmp_path)
    assert model.text_calls == 1
    torch.testing.assert_close(rebuilt, expected)
    model.text_calls = 0
    cached_classifier(model, ["cat", "dog"], TEMPLATES, tmp_path)  # the rebuilt file is whole again
    assert model.text_calls == 0
    assert not list(tmp_path.glob("*.tmp"))


def test_no_cache_dir_always_builds():
    model = TableModel(TABLE)
    cached_classifier(model, ["cat"], TEMPLATES, None)
    cached_classifier(model, ["cat"], TEMPLATES, None)
    assert model.text_calls == 2
