"""Loading a parsed model spec: the base model from `models/`, then its LR-TK0 tokens from `tokens/`.

The one place where a spec's `+tokens=PATH` becomes a wrapped model, one layer above `models/`, so that
`models/` never needs to know about tokens.
"""

from __future__ import annotations

from .models import ModelSpec, ZeroShotModel, check_base, load_base
from .tokens.files import attach_tokens, read_tokens


def load(spec: ModelSpec, device: str = "cpu") -> ZeroShotModel:
    """The model a parsed spec names, with its tokens attached when it has any.

    Raises:
        UserError: the weights or the tokens file cannot be had, or the tokens belong to other weights.
    """
    if spec.tokens:
        read_tokens(spec.tokens)  # a bad tokens file fails before the base model is loaded
    model = load_base(spec.base, device)
    return attach_tokens(model, spec.tokens) if spec.tokens else model


def check(spec: ModelSpec) -> None:
    """Every check of a parsed spec that loads no weights: the base model's and the tokens file's.

    Raises:
        UserError: naming what is wrong and how to fix it.
    """
    check_base(spec.base)
    if spec.tokens:
        read_tokens(spec.tokens)


__all__ = ["check", "load"]
