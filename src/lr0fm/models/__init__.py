"""Model specs -> ZeroShotModel.

Spec grammar:
    lr0fm-tiny                      the bundled tiny model
    openclip:ARCH/PRETRAINED_TAG    open_clip architecture with a pretrained tag
    openclip:ARCH                   random init, or weights from `weights=FILE`
    openclip:hf-hub:ORG/NAME        open_clip model hosted on the Hugging Face hub
    hf:ID_OR_LOCAL_DIR              transformers CLIPModel / SiglipModel / BLIP retrieval (ITC head)
    NAME                            a registry name, e.g. eva02-b16 (see models/registry.py)
    SPEC+tokens=PATH                any of the above with LR-TK0 tokens from `lr0fm tokens train`
"""

from __future__ import annotations

from ..errors import UserError
from .base import ImageConfig, ZeroShotModel

BACKENDS = {
    "openclip": "open_clip: openclip:ARCH/PRETRAINED_TAG, openclip:ARCH with --weights FILE, openclip:hf-hub:ORG/NAME",
    "hf": "Hugging Face transformers CLIPModel, SiglipModel or BlipForImageTextRetrieval: hf:MODEL_ID or hf:/path/to/local/dir",
    "registry": "a short name of the model registry (the paper's 66 backbones or your own), e.g. eva02-b16",
    "lr0fm-tiny": "the bundled tiny CLIP-like model (Fashion-MNIST, 32 px, frozen MiniLM text tower)",
}


def load_model(spec: str, weights: str | None = None, device: str = "cpu") -> ZeroShotModel:
    """Load a model from its spec; `weights` overrides the spec's own weights with a local file."""
    spec = spec.strip()
    if "+tokens=" in spec:  # SPEC+tokens=PATH: the base model wrapped with LR-TK0 tokens
        from ..tokens.files import load_with_tokens

        return load_with_tokens(spec, weights, device)
    entry = _registry_entry(spec)
    if entry is not None:
        # Load the backend spec, but record the short name and the registry's family.
        model = load_model(entry.spec, weights, device)
        model.spec, model.family = entry.name, entry.family
        return model
    if spec == "lr0fm-tiny":
        from .tiny import load_tiny

        model = load_tiny(weights)
    elif spec.startswith("openclip:"):
        from .openclip_backend import load_openclip

        model = load_openclip(spec.removeprefix("openclip:"), weights)
    elif spec.startswith("hf:"):
        from .hf_backend import load_hf

        if weights:
            raise UserError("--weights applies to openclip: and lr0fm-tiny models; for hf: pass a local folder as hf:/path/to/dir.")
        from .blip_backend import load_blip, looks_like_blip

        name = spec.removeprefix("hf:")
        model = load_blip(name) if looks_like_blip(name) else load_hf(name)
    else:
        from .registry import suggest

        raise UserError(
            f"Unknown model {spec!r}{suggest(spec)}; use a registry name (`lr0fm list models`), lr0fm-tiny, openclip:ARCH[/TAG], "
            "openclip:hf-hub:ORG/NAME or hf:ID_OR_DIR."
        )
    model.module.eval().requires_grad_(False)
    return model.to(device)




def check_spec(spec: str) -> None:
    """Reject a malformed or unknown spec before anything is loaded or written."""
    spec = spec.strip()
    if "+tokens=" in spec:
        from ..tokens.files import check_tokens_spec

        check_tokens_spec(spec)
        return
    if _registry_entry(spec) is not None:
        return
    if spec == "lr0fm-tiny" or spec.startswith("hf:"):
        if spec == "hf:":
            raise UserError("hf: needs a model id or folder, e.g. hf:openai/clip-vit-base-patch32.")
        return
    if spec.startswith("openclip:"):
        name = spec.removeprefix("openclip:")
        if name.startswith("hf-hub:"):
            return
        import open_clip

        arch, _, tag = name.partition("/")
        if arch not in open_clip.list_models():
            raise UserError(f"Unknown open_clip architecture {arch!r}; `lr0fm list models` shows how to list them.")
        if tag and not open_clip.get_pretrained_cfg(arch, tag):
            tags = open_clip.list_pretrained_tags_by_model(arch)
            raise UserError(f"Unknown pretrained tag {tag!r} for {arch}; use one of: {', '.join(tags) or '(none: pass --weights FILE)'}.")
        return
    load_model(spec)  # raises the unknown-model error


def native_size(spec: str) -> int | None:
    """A model's native input size as known without loading weights (None: only the loaded model knows).
    For lr0fm-tiny it is the bundled weights' size; other --weights may differ."""
    spec = spec.strip().partition("+tokens=")[0]
    if spec == "lr0fm-tiny":
        from .tiny import DEFAULT_CONFIG

        return int(DEFAULT_CONFIG["image_size"])
    entry = _registry_entry(spec)
    if entry is not None:
        return entry.native_size()
    if spec.startswith("openclip:"):
        from .registry import _openclip_native

        return _openclip_native(spec)
    return None


def _registry_entry(spec: str):
    """The registry entry a spec names (None for backend specs); an unsupported entry is a UserError."""
    if ":" in spec or spec == "lr0fm-tiny":
        return None
    from .registry import find, resolve

    return resolve(spec) if find(spec) is not None else None


__all__ = ["BACKENDS", "ImageConfig", "ZeroShotModel", "check_spec", "load_model", "native_size"]
