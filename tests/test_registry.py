"""The model registry: the paper's 66 backbones, user registrations, loading by name, BLIP's ITC backend."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import logging
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

import lr0fm
from lr0fm import reference
from lr0fm.degrade import ViewMaker
from lr0fm.errors import UserError
from lr0fm.api import check_model as check_spec
from lr0fm.models import parse_spec, registry
from lr0fm.models.openclip_backend import family_of

SUPPORTED = [e for e in registry.entries() if e.supported]
OPENCLIP = [e for e in SUPPORTED if e.spec.startswith("openclip:")]


def split_spec(entry):
    arch, _, tag = entry.spec.removeprefix("openclip:").partition("/")
    return arch, tag


def test_all_66_paper_backbones_once():
    paper = set(reference.paper_accuracy()["backbone"])
    names = [e.paper_name for e in registry.entries() if e.paper_name]
    assert len(paper) == 66 and len(names) == 66 and set(names) == paper
    assert len(registry.PAPER_MODELS) == 66 == len(set(registry.PAPER_MODELS))
    assert registry.by_paper_name("OpenCLIP-ViT-B/16").name == "openclip-b16-datacomp-xl"
    # The registry's family agrees with the paper table's family column.
    table = reference.paper_accuracy().drop_duplicates("backbone").set_index("backbone")["family"]
    spelled = {"ALBEF": "albef", "BLIP": "blip", "CLIP": "clip", "CLIPA": "clipa", "CoCa": "coca", "EVA-CLIP": "eva",
               "M2-Encoder": "m2", "MetaCLIP": "metaclip", "OpenCLIP": "openclip", "SigLIP": "siglip"}
    for entry in registry.entries():
        expected = "eva8b" if entry.paper_name == "EVA-CLIP-8B" else spelled.get(table[entry.paper_name], table[entry.paper_name])
        assert entry.family == expected, entry.name


def test_supported_counts_and_reasons():
    counts = Counter(e.family for e in SUPPORTED)
    assert counts == {"clip": 9, "metaclip": 8, "eva": 7, "clipa": 7, "coca": 3, "siglip": 8, "openclip": 8, "blip": 4}
    unsupported = [e for e in registry.entries() if not e.supported]
    assert {e.family for e in unsupported} == {"albef", "m2", "eva8b", "blip"} and len(unsupported) == 12
    assert all(e.reason and e.spec is None for e in unsupported)


def backbone_rows() -> list[dict]:
    import csv
    from importlib import resources

    with resources.files("lr0fm.reference").joinpath("backbones.csv").open("r", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_backbones_csv_is_the_registry():
    rows = backbone_rows()
    assert list(rows[0]) == ["name", "family", "spec", "native", "supported", "reason", "paper_name", "note"]
    assert len(rows) == 66
    assert len({r["name"] for r in rows}) == 66 and len({r["paper_name"] for r in rows}) == 66
    assert {r["supported"] for r in rows} == {"yes", "no"}
    assert all(r["family"] in registry.FAMILIES and int(r["native"]) > 0 for r in rows)
    for row in rows:
        if row["supported"] == "no":
            assert row["reason"] and not row["spec"], row["name"]
        else:
            assert row["spec"] and not row["reason"], row["name"]
    assert [r["name"] for r in rows] == list(registry.PAPER_MODELS)
    assert registry.get("siglip-so400m-384").note.startswith("the paper's table says @336px")


@pytest.mark.parametrize("entry", OPENCLIP, ids=lambda e: e.name)
def test_openclip_entry_has_tag_config_and_native_size(entry):
    import open_clip

    arch, tag = split_spec(entry)
    assert open_clip.get_pretrained_cfg(arch, tag), entry.spec
    size = open_clip.get_model_config(arch)["vision_cfg"]["image_size"]
    assert size == entry.native == parse_spec(entry.name).native
    assert family_of(arch, tag) == entry.family  # the backend alone would pick the same protocol


@pytest.mark.parametrize("name", ["clip-rn50x4", "metaclip-b32-2.5b", "eva02-l14-336", "clipa-l14-336", "coca-b32",
                                  "openclip-b32-256-datacomp", "siglip-so400m-384"])
def test_architecture_builds_without_weights(name):
    """One per family, on the meta device: the real module tree, no memory, no download."""
    import open_clip

    entry = registry.get(name)
    arch, _ = split_spec(entry)
    with torch.device("meta"):
        model = open_clip.create_model(arch, pretrained=None, device="meta")
    size = model.visual.image_size
    assert (size[0] if isinstance(size, tuple) else size) == entry.native


def test_small_architecture_builds_for_real():
    import open_clip

    entry = registry.get("clip-rn50")
    arch, tag = split_spec(entry)
    model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=True)
    pixels = torch.rand(1, 3, entry.native, entry.native)
    with torch.no_grad():
        assert model.encode_image(pixels).shape == (1, 1024)


def test_blip_entries_point_at_retrieval_checkpoints():
    blip = [e for e in SUPPORTED if e.family == "blip"]
    assert {e.spec for e in blip} == {f"hf:Salesforce/blip-itm-{size}-{data}" for size in ("base", "large") for data in ("coco", "flickr")}
    assert all(e.native == 384 and e.pipeline == "stretch" for e in blip)


def test_list_models_rows_and_pipelines():
    rows = registry.list_models(family="siglip")
    assert [r["name"] for r in rows][:2] == ["siglip-b16", "siglip-b16-256"] and len(rows) == 8
    assert set(rows[0]) >= {"name", "family", "spec", "native", "pipeline", "supported", "reason", "paper_name"}
    assert all(r["pipeline"] == "stretch" for r in rows)
    assert {r["pipeline"] for r in registry.list_models(family="eva")} == {"shortside"}
    assert registry.list_models(family="albef")[0]["supported"] is False
    assert len(registry.list_models()) >= 66
    with pytest.raises(UserError, match="Unknown model family 'vit'"):
        registry.list_models(family="vit")


def test_unsupported_and_unknown_names():
    with pytest.raises(UserError, match="albef-4m .*cannot be loaded by lr0fm: ALBEF needs"):
        lr0fm.load_model("albef-4m")
    with pytest.raises(UserError, match="M2-Encoder needs"):
        check_spec("m2-encoder-1b")
    with pytest.raises(UserError, match="did you mean eva02-b16"):
        lr0fm.load_model("eva02-b61")
    check_spec("siglip-so400m-384")  # supported names pass without loading anything


def test_register_validation():
    with pytest.raises(UserError, match="not usable"):
        registry.register("My:Model", "openclip:ViT-B-32")
    with pytest.raises(UserError, match="already registered"):
        registry.register("clip-rn50", "openclip:RN50/openai")
    with pytest.raises(UserError, match="needs a backend spec"):
        registry.register("my-model", "ViT-B-32")
    with pytest.raises(UserError, match="needs a reason"):
        registry.register("my-model", None, supported=False)
    assert registry.find("my-model") is None


def test_user_model_loads_by_name(tiny_openclip):
    arch, weights = tiny_openclip
    entry = registry.register("test-tiny-clip", f"openclip:{arch}", family="clip")
    try:
        assert parse_spec("test-tiny-clip").native == 32 and entry.pipeline == "shortside"
        check_spec("test-tiny-clip")
        model = lr0fm.load_model("test-tiny-clip", weights=str(weights))
        assert (model.spec, model.family, model.image_size) == ("test-tiny-clip", "clip", 32)
        direct = lr0fm.load_model(f"openclip:{arch}", weights=str(weights))
        assert model.fingerprint() == direct.fingerprint()
    finally:
        registry.unregister("test-tiny-clip")


# --------------------------------------------------------------------------------------------------
# The paper protocol of a registry entry equals a hand-built torchvision pipeline


def photo() -> Image.Image:
    try:
        from skimage import data

        return Image.fromarray(data.chelsea())  # 451 x 300 cat photo
    except ImportError:
        rng = np.random.default_rng(0)
        y, x = np.mgrid[0:300, 0:451]
        base = np.stack([x / 451 * 255, y / 300 * 255, (x + y) % 256], axis=-1)
        return Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("name", ["clip-vit-b16", "eva02-l14-336", "openclip-b16-datacomp-xl", "siglip-b16-384"])
def test_paper_protocol_matches_torchvision(name):
    from torchvision import transforms as T

    entry = registry.get(name)
    n = entry.native
    bicubic = T.InterpolationMode.BICUBIC
    if entry.pipeline == "shortside":
        def reference(r):
            steps = ([] if r == "native" else [T.Resize(r, bicubic)]) + [T.Resize(n, bicubic), T.CenterCrop(n)]
            return T.Compose(steps + [T.PILToTensor()])
    else:
        def reference(r):
            steps = ([] if r == "native" else [T.Resize((r, r), bicubic)]) + [T.Resize((n, n), bicubic)]
            return T.Compose(steps + [T.PILToTensor()])
    image = photo()
    resolutions = ["native", 64, 16]
    views = ViewMaker("paper", n, resolutions, family=entry.family)(image)
    for view, resolution in zip(views, resolutions):
        assert torch.equal(view, reference(resolution)(image)), (name, resolution)


# --------------------------------------------------------------------------------------------------
# BLIP through transformers (ITC head), on a tiny random model saved by the test


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    from transformers import BertTokenizer, BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor

    folder = tmp_path_factory.mktemp("blip")
    words = ["a", "photo", "of", "the", "cat", "dog", "car", "."]
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizer(str(vocab), model_max_length=32)
    tokenizer.save_pretrained(folder)
    text = dict(vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=32, pad_token_id=0, bos_token_id=2, sep_token_id=3)
    vision = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.manual_seed(0)
    model = BlipForImageTextRetrieval(BlipConfig(text_config=text, vision_config=vision, image_text_hidden_size=16)).eval()
    model.save_pretrained(folder)
    BlipImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.25, 0.3]).save_pretrained(folder)
    return model, tokenizer, folder


def test_blip_itc_scores_match_transformers(tiny_blip):
    reference_model, tokenizer, folder = tiny_blip
    model = lr0fm.load_model(f"hf:{folder}")
    assert (model.family, model.image_size) == ("blip", 32)
    assert model.image.mean == (0.4, 0.5, 0.6) and model.image.std == (0.2, 0.25, 0.3)
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    texts = ["a photo of a cat .", "a photo of the dog", "car"]
    with torch.no_grad():
        image = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1)
        text = torch.nn.functional.normalize(model.encode_text(texts), dim=-1)
        tokens = tokenizer(texts, padding=True, return_tensors="pt")
        normalised = (pixels - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
        itc = [reference_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                               pixel_values=normalised[i:i + 1].expand(1, -1, -1, -1), use_itm_head=False).itm_score
               for i in range(2)]
    torch.testing.assert_close(image @ text.T, torch.cat(itc))


def test_blip_by_registry_name_and_non_retrieval_checkpoint(tiny_blip, tmp_path):
    _, tokenizer, folder = tiny_blip
    registry.register("test-tiny-blip", f"hf:{folder}", family="blip", native=32)
    try:
        model = lr0fm.load_model("test-tiny-blip")
        assert (model.spec, model.family) == ("test-tiny-blip", "blip")
    finally:
        registry.unregister("test-tiny-blip")

    from transformers import BlipConfig, BlipForQuestionAnswering

    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    BlipForQuestionAnswering(BlipConfig(text_config={**small, "vocab_size": 13, "max_position_embeddings": 32},
                                        vision_config={**small, "image_size": 32, "patch_size": 8})).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(UserError, match="not a BLIP retrieval checkpoint"):
        lr0fm.load_model(f"hf:{tmp_path}")
