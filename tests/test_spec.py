"""Model specs parsed once: fields, canonical text, registry names, tokens, weights, and the errors."""

import pytest

from lr0fm.errors import UserError
from lr0fm.models import BACKENDS, ModelSpec, parse_spec, registry


@pytest.mark.parametrize("text, backend, name, tag", [
    ("lr0fm-tiny", "lr0fm-tiny", "", None),
    ("openclip:ViT-B-32/openai", "openclip", "ViT-B-32", "openai"),
    ("openclip:ViT-B-32", "openclip", "ViT-B-32", None),
    ("openclip:hf-hub:timm/ViT-B-16-SigLIP", "openclip", "hf-hub:timm/ViT-B-16-SigLIP", None),
    ("hf:openai/clip-vit-base-patch32", "hf", "openai/clip-vit-base-patch32", None),
    ("hf:/models/my clip", "hf", "/models/my clip", None),
])
def test_backend_specs(text, backend, name, tag):
    spec = parse_spec(f"  {text} ")
    assert (spec.backend, spec.name, spec.tag, spec.tokens, spec.alias) == (backend, name, tag, None, None)
    assert str(spec) == spec.backend_text == text
    assert parse_spec(str(spec)) == spec  # the canonical text parses back to the same value


def test_registry_name_resolves_once_to_its_backend_spec():
    spec = parse_spec("eva02-b16")
    assert (spec.backend, spec.name, spec.tag) == ("openclip", "EVA02-B-16", "merged2b_s8b_b131k")
    assert (spec.alias, spec.family, spec.native) == ("eva02-b16", "eva", 224)
    assert str(spec) == "eva02-b16" and spec.backend_text == "openclip:EVA02-B-16/merged2b_s8b_b131k"
    assert parse_spec(spec) is spec


def test_tokens_and_weights():
    spec = parse_spec("siglip-b16+tokens=runs/t.safetensors")
    assert spec.tokens == "runs/t.safetensors" and str(spec) == "siglip-b16+tokens=runs/t.safetensors"
    assert spec.base.tokens is None and str(spec.base) == "siglip-b16" and not spec.pinned
    weighted = parse_spec("openclip:ViT-B-32", weights="w.safetensors")
    assert weighted.weights == "w.safetensors" and str(weighted) == "openclip:ViT-B-32" and not weighted.pinned
    assert parse_spec("openclip:ViT-B-32/openai").pinned and parse_spec("lr0fm-tiny").native == 32


def test_native_from_the_backend_without_weights():
    assert parse_spec("openclip:ViT-B-16-SigLIP-384/webli").native == 384
    assert parse_spec("openclip:hf-hub:timm/ViT-B-16-SigLIP").native is None  # only the loaded model knows
    assert parse_spec("hf:openai/clip-vit-base-patch32").native is None
    assert parse_spec("lr0fm-tiny", weights="other.safetensors").native is None  # other weights may differ


@pytest.mark.parametrize("text, weights, fragment", [
    ("eva02-b61", None, "did you mean eva02-b16"),
    ("ViT-B-32", None, "Unknown model 'ViT-B-32'"),
    ("nope:model", None, "Unknown model 'nope:model'"),
    ("hf:", None, "hf: needs a model id or folder"),
    ("openclip:", None, "openclip: needs an architecture"),
    ("openclip:hf-hub:", None, "needs a repository"),
    ("+tokens=x", None, "SPEC+tokens=PATH"),
    ("lr0fm-tiny+tokens=", None, "SPEC+tokens=PATH"),
    ("lr0fm-tiny+tokens=a+tokens=b", None, "names tokens twice"),
    ("albef-4m", None, "cannot be loaded by lr0fm: ALBEF needs"),
    ("hf:openai/clip-vit-base-patch32", "w.safetensors", "--weights applies to openclip: and lr0fm-tiny"),
])
def test_errors_are_one_sentence(text, weights, fragment):
    with pytest.raises(UserError) as caught:
        parse_spec(text, weights)
    assert fragment in str(caught.value) and str(caught.value).endswith((".", "?"))


def test_a_new_backend_is_one_row_of_the_table(monkeypatch):
    from lr0fm.models.backends import Backend

    monkeypatch.setitem(BACKENDS, "mine", Backend("mine", "my models", load=lambda spec: None,
                                                  native=lambda spec: 96, split=lambda rest: tuple(rest.split("@"))))
    spec = parse_spec("mine:vit@v2")
    assert (spec.backend, spec.name, spec.tag, spec.native) == ("mine", "vit", "v2", 96)
    entry = registry.register("test-mine", "mine:vit@v2", family="clip")
    try:
        assert parse_spec("test-mine") == ModelSpec("mine", "vit", "v2", alias="test-mine", family="clip")
    finally:
        registry.unregister("test-mine")
    assert entry.spec == "mine:vit@v2"


def test_the_api_module_is_reachable_from_a_plain_import():
    import subprocess
    import sys

    code = "import lr0fm; print(lr0fm.api.check_model('eva02-b16').backend_text)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "openclip:EVA02-B-16/merged2b_s8b_b131k"
