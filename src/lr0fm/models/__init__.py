"""Model specs -> ZeroShotModel.

Spec grammar:
    lr0fm-tiny                      the bundled tiny model
    openclip:ARCH/PRETRAINED_TAG    open_clip architecture with a pretrained tag
    openclip:ARCH                   random init, or weights from `weights=FILE`
    openclip:hf-hub:ORG/NAME        open_clip model hosted on the Hugging Face hub
    hf:ID_OR_LOCAL_DIR              transformers CLIPModel / SiglipModel
"""

from __future__ import annotations

from ..errors import UserError
from .base import ImageConfig, ZeroShotModel

BACKENDS = {
    "openclip": "open_clip: openclip:ARCH/PRETRAINED_TAG, openclip:ARCH with --weights FILE, openclip:hf-hub:ORG/NAME",
    "hf": "Hugging Face transformers CLIPModel or SiglipModel: hf:MODEL_ID or hf:/path/to/local/dir",
    "lr0fm-tiny": "the bundled tiny CLIP-like model (Fashion-MNIST, 32 px, frozen MiniLM text tower)",
}


def load_model(spec: str, weights: str | None = None, device: str = "cpu") -> ZeroShotModel:
    """Load a model from its spec; `weights` overrides the spec's own weights with a local file."""
    spec = spec.strip()
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
        model = load_hf(spec.removeprefix("hf:"))
    else:
        raise UserError(
            f"Unknown model {spec!r}; use one of: lr0fm-tiny, openclip:ARCH[/TAG], openclip:hf-hub:ORG/NAME, hf:ID_OR_DIR."
        )
    model.module.eval().requires_grad_(False)
    return model.to(device)


__all__ = ["BACKENDS", "ImageConfig", "ZeroShotModel", "load_model"]
