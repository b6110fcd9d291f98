"""Loading a parsed model spec: the base model from `models/`, its LR-TK0 tokens from `tokens/`, and a
super-resolution front end from `superres`.

The one place where a spec's `+tokens=PATH` and `+sr=PATH` become wrapped models, one layer above
`models/`, so that `models/` never needs to know about either. The tokens attach to the base model's image
tower; the super-resolution network stands in front of it all (`SRModel(TokenModel(base))`).
"""

from __future__ import annotations

from .models import ModelSpec, ZeroShotModel, check_base, load_base
from .superres import SRModel, check_sr, read_sr
from .tokens.files import attach_tokens, read_tokens


def load(spec: ModelSpec, device: str = "cpu") -> ZeroShotModel:
    """The model a parsed spec names, with its tokens attached and its super-resolution network in front
    when it has them.

    Raises:
        UserError: the weights, the tokens file or the SR file cannot be had, or the tokens belong to other
            weights.
    """
    if spec.tokens:
        read_tokens(spec.tokens)  # a bad tokens file fails before the base model is loaded
    network = read_sr(spec.sr) if spec.sr else None  # and so does a bad SR file
    model = load_base(spec.base, device)
    if spec.tokens:
        model = attach_tokens(model, spec.tokens)
    return SRModel(model, network) if network else model


def check(spec: ModelSpec) -> None:
    """Every check of a parsed spec that loads no weights: the base model's, the tokens file's, and that
    the SR file exists and can be read (spandrel installed).

    Raises:
        UserError: naming what is wrong and how to fix it.
    """
    check_base(spec.base)
    if spec.tokens:
        read_tokens(spec.tokens)
    if spec.sr:
        check_sr(spec.sr)


__all__ = ["check", "load"]
