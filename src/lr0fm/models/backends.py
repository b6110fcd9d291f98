"""The table of model backends: one row per spec prefix, with how to check, size and load a parsed spec.

Every function takes a parsed spec (`models.spec.ModelSpec`); the backend modules themselves
(`openclip_backend`, `hf_backend`, `blip_backend`, `tiny`) are imported only when a row is used, so listing
or parsing specs loads no model library. A new backend is one more row (tests add fake ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError

Spec = Any  # a models.spec.ModelSpec; typed loosely here so that the table needs no import of the parser


@dataclass(frozen=True)
class Backend:
    """One kind of model spec.

    Attributes:
        prefix: "openclip" for specs "openclip:...", or the whole spec of a fixed model ("lr0fm-tiny").
        description: one line for `lr0fm list models`.
        load: parsed spec -> ZeroShotModel (frozen, in eval mode, on the CPU).
        check: parsed spec -> None; raises UserError for what can be told without weights.
        native: parsed spec -> native input size known without loading weights, or None.
        split: the text after "prefix:" -> (name, tag); raises UserError when malformed.
        weights: whether `--weights FILE` applies.
        local: parsed spec -> True when its weights may change under the same spec (a local folder).
        fixed: the spec is the prefix alone, with no ':' (one bundled model).
    """

    prefix: str
    description: str
    load: Callable[[Spec], Any]
    check: Callable[[Spec], None] = lambda spec: None
    native: Callable[[Spec], int | None] = lambda spec: None
    split: Callable[[str], tuple[str, str | None]] = lambda rest: (rest, None)
    weights: bool = False
    local: Callable[[Spec], bool] = lambda spec: False
    fixed: bool = False


# -------------------------------------------------------------------------------------------------- tiny

def _load_tiny(spec: Spec):
    from .tiny import load_tiny

    return load_tiny(spec.weights)


def _tiny_native(spec: Spec) -> int | None:
    from .tiny import DEFAULT_CONFIG

    return None if spec.weights else int(DEFAULT_CONFIG["image_size"])  # other --weights may differ


# ---------------------------------------------------------------------------------------------- open_clip

def _split_openclip(rest: str) -> tuple[str, str | None]:
    if rest.startswith("hf-hub:"):
        if not rest.removeprefix("hf-hub:").strip():
            raise UserError("openclip:hf-hub: needs a repository, e.g. openclip:hf-hub:timm/ViT-B-16-SigLIP.")
        return rest, None
    arch, _, tag = rest.partition("/")
    if not arch.strip():
        raise UserError("openclip: needs an architecture, e.g. openclip:ViT-B-32/openai.")
    return arch.strip(), tag.strip() or None


def _check_openclip(spec: Spec) -> None:
    if spec.name.startswith("hf-hub:"):
        if spec.weights:
            raise UserError("--weights cannot be combined with openclip:hf-hub: models; use openclip:ARCH --weights FILE instead.")
        return
    from .openclip_backend import check_openclip

    check_openclip(spec.name, spec.tag)


def _load_openclip(spec: Spec):
    from .openclip_backend import load_openclip

    return load_openclip(spec.name, spec.tag, spec.weights)


def _openclip_native(spec: Spec) -> int | None:
    if spec.name.startswith("hf-hub:"):
        return None
    import open_clip

    config = open_clip.get_model_config(spec.name)
    if not config:
        return None
    size = config["vision_cfg"]["image_size"]
    return int(size[0] if isinstance(size, (tuple, list)) else size)


# ------------------------------------------------------------------------------------------ transformers

def _split_hf(rest: str) -> tuple[str, str | None]:
    if not rest.strip():
        raise UserError("hf: needs a model id or folder, e.g. hf:openai/clip-vit-base-patch32.")
    return rest.strip(), None


def _load_hf(spec: Spec):
    from .blip_backend import load_blip, looks_like_blip
    from .hf_backend import load_hf

    return load_blip(spec.name) if looks_like_blip(spec.name) else load_hf(spec.name)


def _hf_local(spec: Spec) -> bool:
    return Path(spec.name).expanduser().exists()


BACKENDS: dict[str, Backend] = {
    backend.prefix: backend
    for backend in (
        Backend("lr0fm-tiny", "the bundled tiny CLIP-like model (Fashion-MNIST, 32 px, frozen MiniLM text tower)",
                _load_tiny, native=_tiny_native, weights=True, fixed=True),
        Backend("openclip", "open_clip: openclip:ARCH/PRETRAINED_TAG, openclip:ARCH with --weights FILE, "
                            "openclip:hf-hub:ORG/NAME",
                _load_openclip, _check_openclip, _openclip_native, _split_openclip, weights=True),
        Backend("hf", "Hugging Face transformers CLIPModel, SiglipModel or BlipForImageTextRetrieval: "
                      "hf:MODEL_ID or hf:/path/to/local/dir",
                _load_hf, split=_split_hf, local=_hf_local),
    )
}


def backend_of(text: str) -> tuple[Backend, str] | None:
    """(backend, the text after its prefix) for a backend spec such as "openclip:ViT-B-32/openai";
    None for anything else (a registry name, a typo)."""
    text = text.strip()
    backend = BACKENDS.get(text)
    if backend is not None and backend.fixed:
        return backend, ""
    prefix, colon, rest = text.partition(":")
    backend = BACKENDS.get(prefix)
    if not colon or backend is None or backend.fixed:
        return None
    return backend, rest


__all__ = ["BACKENDS", "Backend", "backend_of"]
