"""Model backends: open_clip weights files, hub failures offline, transformers CLIP/SigLIP folders."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
from pathlib import Path
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

import lr0fm
from lr0fm.errors import UserError
from lr0fm.api import check_model as check_spec
from lr0fm.models.base import OPENAI_MEAN, OPENAI_STD, fingerprint_module
from lr0fm.models.hf_backend import family_of as hf_family_of
from lr0fm.models.openclip_backend import family_of
from lr0fm.zeroshot import logits

PROMPTS = ["a photo of a cat.", "a dog", "a photo of the red dog."]


# --------------------------------------------------------------------------------------------------
# open_clip


@pytest.fixture(scope="module")
def vit_b32(tmp_path_factory):
    """A random-init ViT-B-32 saved as .safetensors and as a torch .pt state dict, with its reference outputs."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    folder = tmp_path_factory.mktemp("vitb32")
    state = clip.state_dict()
    save_file(state, str(folder / "vitb32.safetensors"))
    torch.save(state, folder / "vitb32.pt")
    pixels = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        reference = {
            "pixels": pixels,
            "image": clip.encode_image((pixels - mean) / std),
            "text": clip.encode_text(open_clip.get_tokenizer("ViT-B-32")(PROMPTS)),
            "fingerprint": fingerprint_module(clip),
            "logit_scale": clip.logit_scale.exp().item(),
        }
    del clip, state
    yield reference, folder
    # 600 MB each: free the disk once this module is done.
    for path in folder.iterdir():
        path.unlink()


@pytest.mark.parametrize("suffix", ["safetensors", "pt"])
def test_openclip_weights_file_round_trip(vit_b32, suffix):
    reference, folder = vit_b32
    model = lr0fm.load_model("openclip:ViT-B-32", weights=str(folder / f"vitb32.{suffix}"))
    assert model.spec == "openclip:ViT-B-32" and model.family == "openclip"
    assert (model.image_size, model.image.mean, model.image.std) == (224, OPENAI_MEAN, OPENAI_STD)
    assert model.fingerprint() == reference["fingerprint"]
    assert not model.module.training and not any(p.requires_grad for p in model.module.parameters())
    assert model.logit_scale == pytest.approx(reference["logit_scale"])
    with torch.no_grad():
        # Frozen modules may take torch's fused attention path: equal up to float rounding.
        torch.testing.assert_close(model.encode_image(reference["pixels"]), reference["image"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model.encode_text(PROMPTS), reference["text"], rtol=1e-4, atol=1e-5)


def test_openclip_pretrained_tag_with_local_weights(vit_b32):
    """openclip:ARCH/openai --weights FILE: the tag picks family and preprocessing, the file the weights."""
    reference, folder = vit_b32
    model = lr0fm.load_model("openclip:ViT-B-32/openai", weights=str(folder / "vitb32.safetensors"))
    assert model.family == "clip" and model.spec == "openclip:ViT-B-32/openai"
    assert model.fingerprint() == reference["fingerprint"]


def test_weights_of_another_architecture_do_not_fit(vit_b32, tiny_openclip):
    arch, tiny_weights = tiny_openclip
    _, folder = vit_b32
    with pytest.raises(UserError, match="does not fit architecture ViT-B-32"):
        lr0fm.load_model("openclip:ViT-B-32", weights=str(tiny_weights))
    with pytest.raises(UserError, match=f"does not fit architecture {arch}"):
        lr0fm.load_model(f"openclip:{arch}", weights=str(folder / "vitb32.pt"))


def test_weights_with_missing_or_extra_keys_do_not_fit(tiny_openclip, tmp_path):
    from safetensors.torch import load_file, save_file

    arch, weights = tiny_openclip
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if k != "logit_scale"}, str(tmp_path / "missing.safetensors"))
    with pytest.raises(UserError, match=r"does not fit.*1 missing keys.*logit_scale"):
        lr0fm.load_model(f"openclip:{arch}", weights=str(tmp_path / "missing.safetensors"))
    save_file({**state, "extra.weight": torch.zeros(2)}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(UserError, match=r"does not fit.*1 unexpected.*extra\.weight"):
        lr0fm.load_model(f"openclip:{arch}", weights=str(tmp_path / "extra.safetensors"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("name, content", [
    ("garbage.safetensors", b"\x00\x01not a safetensors file" * 50),
    ("garbage.pt", b"\x80\x04this is no pickle"),
    ("empty.pt", b""),
])
def test_unreadable_weights_file(tiny_openclip, tmp_path, name, content):
    arch, _ = tiny_openclip
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError, match="Could not read weights file"):
        lr0fm.load_model(f"openclip:{arch}", weights=str(tmp_path / name))


class Arbitrary:
    """Any class: unpickling it would mean running code from the checkpoint."""


def test_pickled_objects_are_refused(tiny_openclip, tmp_path):
    arch, _ = tiny_openclip
    torch.save({"state_dict": {"x": torch.zeros(1)}, "hook": Arbitrary()}, tmp_path / "code.pt")
    with pytest.raises(UserError, match="Could not read weights file"):
        lr0fm.load_model(f"openclip:{arch}", weights=str(tmp_path / "code.pt"))


def test_missing_weights_file(tiny_openclip, tmp_path):
    arch, _ = tiny_openclip
    with pytest.raises(UserError, match="does not exist"):
        lr0fm.load_model(f"openclip:{arch}", weights=str(tmp_path / "nope.safetensors"))


@pytest.mark.parametrize("spec, fragment", [
    ("openclip:ViT-Nope-99", "Unknown open_clip architecture"),
    ("openclip:ViT-B-32/no_such_tag", "Unknown pretrained tag 'no_such_tag'"),
    ("clip:ViT-B-32", "Unknown model"),
])
def test_unknown_arch_tag_or_backend(spec, fragment):
    with pytest.raises(UserError, match=fragment):
        lr0fm.load_model(spec)
    with pytest.raises(UserError, match=fragment):
        check_spec(spec)


def test_pretrained_tag_offline_fails_fast():
    start = time.monotonic()
    with pytest.raises(UserError) as caught:
        lr0fm.load_model("openclip:ViT-B-32/laion2b_s34b_b79k")
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert "--weights" in message and "offline" in message and "\n" not in message


def test_hub_model_offline_fails_fast():
    start = time.monotonic()
    with pytest.raises(UserError, match="--weights"):
        lr0fm.load_model("openclip:hf-hub:someone/not-cached-model")
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("name, tag, family", [
    ("ViT-B-32", "openai", "clip"),
    ("ViT-B-32-quickgelu", "openai", "clip"),
    ("ViT-B-16-SigLIP", "webli", "siglip"),
    ("ViT-SO400M-14-SigLIP2", None, "siglip"),
    ("EVA02-B-16", "merged2b_s8b_b131k", "eva"),
    ("ViT-B-32", "metaclip_400m", "metaclip"),
    ("coca_ViT-B-32", "laion2b_s13b_b90k", "coca"),
    ("ViT-B-32", "laion2b_s34b_b79k", "openclip"),
    ("ViT-B-32", None, "openclip"),
])
def test_openclip_family(name, tag, family):
    assert family_of(name, tag) == family


def test_hf_family():
    assert hf_family_of("google/siglip-base-patch16-224", "siglip") == "siglip"
    assert hf_family_of("openai/clip-vit-base-patch32", "clip") == "clip"
    assert hf_family_of("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "clip") == "openclip"
    assert hf_family_of("facebook/metaclip-b32-400m", "clip") == "metaclip"


# --------------------------------------------------------------------------------------------------
# transformers

WORDS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "a", "photo", "of", "the", "cat", "dog", "red", "blue", "."]
CONTEXT = 16
TEXT = dict(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=CONTEXT, pad_token_id=0, bos_token_id=2, eos_token_id=3)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)


def save_tokenizer(folder):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    backend.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", 2), ("[EOS]", 3)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]", eos_token="[EOS]",
        model_max_length=CONTEXT,
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


@pytest.fixture(scope="module")
def hf_clip(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    folder = tmp_path_factory.mktemp("hf_clip")
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=16)).eval()
    model.save_pretrained(folder)
    tokenizer = save_tokenizer(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                       image_mean=[0.1, 0.2, 0.3], image_std=[0.5, 0.6, 0.7]).save_pretrained(folder)
    return model, tokenizer, folder


@pytest.fixture(scope="module")
def hf_siglip(tmp_path_factory):
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    folder = tmp_path_factory.mktemp("hf_siglip")
    torch.manual_seed(1)
    model = SiglipModel(SiglipConfig(text_config=TEXT, vision_config=VISION)).eval()
    with torch.no_grad():
        model.logit_bias.fill_(-3.0)
        model.logit_scale.fill_(2.0)
    model.save_pretrained(folder)
    tokenizer = save_tokenizer(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5, 0.4, 0.3],
                         image_std=[0.2, 0.3, 0.4]).save_pretrained(folder)
    return model, tokenizer, folder


def features(output):
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def test_hf_clip_folder(hf_clip):
    reference, tokenizer, folder = hf_clip
    model = lr0fm.load_model(f"hf:{folder}")
    assert model.spec == f"hf:{folder}" and model.family == "clip"
    assert model.image == lr0fm.models.ImageConfig(32, (0.1, 0.2, 0.3), (0.5, 0.6, 0.7))
    assert model.logit_bias == 0.0
    assert model.logit_scale == pytest.approx(reference.logit_scale.exp().item())
    assert model.fingerprint() == fingerprint_module(reference)

    pixels = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    normalised = (pixels - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.6, 0.7]).view(1, 3, 1, 1)
    tokens = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    assert (tokens["input_ids"][:, 0] == 2).all()  # the tokenizer really adds BOS/EOS
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(pixels), features(reference.get_image_features(pixel_values=normalised)))
        expected = features(reference.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]))
        torch.testing.assert_close(model.encode_text(PROMPTS), expected)
        # Padding to the longest prompt must not change a prompt's embedding.
        torch.testing.assert_close(model.encode_text(PROMPTS[1:2]), expected[1:2], atol=1e-5, rtol=1e-5)


def test_hf_siglip_folder(hf_siglip):
    reference, tokenizer, folder = hf_siglip
    model = lr0fm.load_model(f"hf:{folder}")
    assert model.family == "siglip"
    assert model.image == lr0fm.models.ImageConfig(32, (0.5, 0.4, 0.3), (0.2, 0.3, 0.4))
    assert model.logit_bias == pytest.approx(-3.0)
    assert model.logit_scale == pytest.approx(torch.tensor(2.0).exp().item())

    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    normalised = (pixels - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.3, 0.4]).view(1, 3, 1, 1)
    # SigLIP was trained on max-length padded text without an attention mask.
    ids = tokenizer(PROMPTS, padding="max_length", max_length=CONTEXT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        image = model.encode_image(pixels)
        torch.testing.assert_close(image, features(reference.get_image_features(pixel_values=normalised)))
        text = model.encode_text(PROMPTS)
        torch.testing.assert_close(text, features(reference.get_text_features(input_ids=ids)))
        torch.testing.assert_close(model.encode_text(PROMPTS[1:2]), text[1:2])

    # The sigmoid head's bias is applied to the logits, and does not change the ranking.
    classifier = F.normalize(text, dim=-1).T
    scores = logits(model, image, classifier)
    cosine = F.normalize(image, dim=-1) @ classifier
    torch.testing.assert_close(scores, model.logit_scale * cosine - 3.0)
    assert torch.equal(scores.argsort(dim=-1), cosine.argsort(dim=-1))


def test_hf_folder_without_processor_uses_config_size_and_clip_stats(hf_clip, tmp_path):
    import shutil

    _, _, folder = hf_clip
    copy = tmp_path / "clip_no_processor"
    shutil.copytree(folder, copy)
    (copy / "preprocessor_config.json").unlink()
    model = lr0fm.load_model(f"hf:{copy}")
    assert model.image == lr0fm.models.ImageConfig(32, OPENAI_MEAN, OPENAI_STD)


def test_hf_uncached_id_offline_fails_fast():
    start = time.monotonic()
    with pytest.raises(UserError, match="not in the local cache") as caught:
        lr0fm.load_model("hf:some-org/uncached-model-id")
    assert time.monotonic() - start < 10
    assert "offline" in str(caught.value)


def test_hf_folder_errors(hf_clip, tmp_path):
    import shutil

    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no readable config.json"):
        lr0fm.load_model(f"hf:{tmp_path / 'empty'}")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="is a file"):
        lr0fm.load_model(f"hf:{tmp_path / 'file.bin'}")
    _, _, folder = hf_clip
    no_weights = tmp_path / "no_weights"
    shutil.copytree(folder, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(UserError, match="lacks model weights"):
        lr0fm.load_model(f"hf:{no_weights}")
    with pytest.raises(UserError, match="--weights applies to"):
        lr0fm.load_model(f"hf:{folder}", weights="x.safetensors")


def test_openclip_tokenizer_on_the_hub_offline_names_it_or_comes_from_the_weights_folder(tmp_path):
    """An architecture whose tokenizer lives on the hub: offline, one sentence naming it; saved next to the
    --weights file, it is read from there."""
    import copy

    import open_clip
    from conftest import TINY_CONFIG
    from safetensors.torch import save_file

    arch = "lr0fm-test-hub-tokenizer"
    config = copy.deepcopy(TINY_CONFIG)
    config["text_cfg"]["hf_tokenizer_name"] = "lr0fm-test/not-on-any-hub"
    (tmp_path / f"{arch}.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / f"{arch}.json")
    weights = tmp_path / "weights" / "model.safetensors"
    weights.parent.mkdir()
    save_file(open_clip.create_model(arch).state_dict(), str(weights))
    with pytest.raises(UserError) as caught:
        lr0fm.load_model(f"openclip:{arch}", weights=str(weights))
    message = str(caught.value)
    assert f"tokenizer of openclip:{arch}, lr0fm-test/not-on-any-hub on the Hugging Face hub" in message
    assert "folder of the --weights file" in message and "\n" not in message

    save_tokenizer(weights.parent)
    model = lr0fm.load_model(f"openclip:{arch}", weights=str(weights))
    assert model.encode_text(["alpha", "a photo of bravo"]).shape == (2, 32)


def test_bare_pickle_weights_end_in_our_one_line_only(tiny_openclip, tmp_path):
    """No torch warning before the sentence, no empty line from an unused progress display: stderr is one line."""
    import pickle

    arch, weights = tiny_openclip
    from safetensors.torch import load_file

    with open(tmp_path / "bare.pt", "wb") as handle:
        pickle.dump(load_file(str(weights)), handle, protocol=4)
    config = Path(weights).parent / f"{arch}.json"
    code = (f"import sys, open_clip; open_clip.add_model_config({str(config)!r}); from lr0fm.cli import main; "
            f"sys.argv = ['lr0fm', 'eval', '--model', 'openclip:{arch}', '--weights', {str(tmp_path / 'bare.pt')!r}, "
            f"'--limit', '2', '--db', {str(tmp_path / 'r.sqlite')!r}]; main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "250"})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [done.stderr.strip()] and done.stderr.startswith("error: Could not read weights")


class _Planted:
    """Unpickling this would create a file: what a malicious checkpoint could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_hf_folder_with_a_pickle_is_refused_without_running_it(hf_clip, tmp_path):
    import shutil

    _, _, folder = hf_clip
    pickled = tmp_path / "pickled"
    shutil.copytree(folder, pickled)
    from safetensors.torch import load_file

    state = load_file(str(pickled / "model.safetensors"))
    planted = tmp_path / "planted.txt"
    state["_extra"] = _Planted(planted)
    (pickled / "model.safetensors").unlink()
    torch.save(state, pickled / "pytorch_model.bin")
    done = subprocess.run([sys.executable, "-c", "from lr0fm.cli import main; main()", "eval", "--model",
                           f"hf:{pickled}", "--limit", "2", "--db", str(tmp_path / "r.sqlite")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})
    code, out, err = done.returncode, done.stdout, done.stderr
    assert code == 2 and out == "" and not planted.exists()
    message = err.strip()
    assert message.startswith("error: ") and "\n" not in message
    assert "pickled PyTorch weights" in message and "could run code" in message and "safetensors" in message
    assert "Traceback" not in err and "weights_only=True" not in err


def test_hf_unsupported_model_type(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="'bert' model"):
        lr0fm.load_model(f"hf:{tmp_path}")


def test_hf_siglip_tokenizer_without_max_length(hf_siglip, tmp_path):
    """Max-length padding falls back to the text tower's position limit."""
    import shutil

    reference, tokenizer, folder = hf_siglip
    copy = tmp_path / "siglip"
    shutil.copytree(folder, copy)
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config.pop("model_max_length")
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    model = lr0fm.load_model(f"hf:{copy}")
    assert model.tokenizer.model_max_length > 10**9  # really unset
    ids = tokenizer(PROMPTS, padding="max_length", max_length=CONTEXT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(PROMPTS), features(reference.get_text_features(input_ids=ids)))
