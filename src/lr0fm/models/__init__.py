"""Models: parsed specs (`spec.py`), the backend table (`backends.py`), the registry of named models
(`registry.py`) and the `ZeroShotModel` interface every backend implements (`base.py`).

This room loads base models only; LR-TK0 tokens named by a spec are attached one layer up (`lr0fm.loader`).
"""

from __future__ import annotations

from ..errors import UserError
from .backends import BACKENDS, Backend
from .base import ImageConfig, ZeroShotModel
from .spec import ModelSpec, parse_spec


def load_base(spec: ModelSpec, device: str = "cpu") -> ZeroShotModel:
    """Load the base model of a parsed spec (its tokens, if any, are not attached here).

    Args:
        spec: a parsed spec (`parse_spec`).
        device: where to put the model.

    Returns:
        The model, frozen and in eval mode, with `spec` set to the canonical spec text (the registry name
        when it was given as one) and `family` to the registry's family when it has one.

    Raises:
        UserError: the weights cannot be had or do not fit (one sentence saying what to do).
    """
    model = spec.table.load(spec)
    model.spec = str(spec.base)
    if spec.family:
        model.family = spec.family
    model.module.eval().requires_grad_(False)
    return model.to(device)


def check_base(spec: ModelSpec) -> None:
    """Every check of a parsed spec's base model that needs no weights (e.g. an open_clip tag exists).

    Raises:
        UserError: the architecture or tag is unknown, or the options do not fit the backend.
    """
    spec.table.check(spec)


__all__ = ["BACKENDS", "Backend", "ImageConfig", "ModelSpec", "UserError", "ZeroShotModel", "check_base", "load_base",
           "parse_spec"]
