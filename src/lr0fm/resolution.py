"""Resolutions: "native" (the model's own input size) or a side length in pixels, parsed once into a value.

A `Resolution` is its own canonical text ("native", "128", "16"), so it drops into SQL parameters, JSON,
pandas columns and dict keys unchanged, and compares equal to that text. Everything else about it (its
pixels, whether it is native, its place in a sweep) is an attribute or a function here. Torch-free.

    >>> [Resolution(" 16 "), Resolution(16), Resolution("NATIVE")]     # each equals its text: "16", "16", "native"
    >>> parse_resolutions("16,native,64")                               # ("native", "16", "64")
    >>> order(["16", "native", "128"])                                  # ["native", "128", "16"]
    >>> default_sweep(224), default_sweep(32)    # native,128,64,32,16 and native,24,16,12,8
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

from . import reference
from .errors import UserError

NATIVE_TEXT = "native"


class ResolutionError(UserError, ValueError):
    """A value that is not a resolution, or a resolution list a model cannot use."""


class Resolution(str):
    """ "native" or a positive whole number of pixels; `Resolution(value)` is the one parser.

    Accepts a Resolution, "native" in any case, a whole number as text ("16", " 16 ", "16.0") or as a
    number (16, numpy integers, 16.0); anything else is a ResolutionError (a UserError and a ValueError).
    """

    pixels: int | None  # None for native

    def __new__(cls, value: object) -> Resolution:
        if isinstance(value, Resolution):
            return value
        pixels = _pixels(value)
        self = super().__new__(cls, NATIVE_TEXT if pixels is None else str(pixels))
        self.pixels = pixels
        return self

    def __repr__(self) -> str:
        return f"Resolution({str(self)!r})"

    def __reduce__(self):
        return Resolution, (str(self),)

    @property
    def is_native(self) -> bool:
        return self.pixels is None

    def side(self, native: int) -> int:
        """The side in pixels an image has at this resolution, for a model of `native` px."""
        return native if self.pixels is None else self.pixels

    @property
    def sort_key(self) -> tuple[int, int]:
        """Native first, then larger sizes first: the order of every table and sweep."""
        return (0, 0) if self.pixels is None else (1, -self.pixels)


def _pixels(value: object) -> int | None:
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == NATIVE_TEXT:
            return None
        try:
            number: float | int = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                number = math.nan
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        number = math.nan
    else:
        number = value  # int, numpy integer or float
    if isinstance(number, float) or not isinstance(number, numbers.Integral):
        if not math.isfinite(float(number)) or float(number) != int(float(number)):
            shown = value.strip() if isinstance(value, str) else value
            raise ResolutionError(f"Resolution {shown!r} is not a whole number; use 'native' or pixel sizes such as 64.")
        number = int(float(number))
    if int(number) <= 0:
        raise ResolutionError(f"Resolution {int(number)} must be a positive number of pixels; use sizes such as 64.")
    return int(number)


NATIVE = Resolution(NATIVE_TEXT)
# The paper's grid: native, then 128/64/32/16 px (from reference/, the published tables).
PAPER = tuple(Resolution(r) for r in reference.RESOLUTIONS)


def parse_resolutions(value: str | Iterable[object] | None) -> tuple[Resolution, ...] | None:
    """A resolution list such as "native,128,64,32,16" or [64, "native", 16], checked but not yet fitted to
    a model. "native" moves to the front; the rest keep their order. None stays None (the model's default).

    Raises:
        ResolutionError: an entry is not a resolution, an entry is given twice, or the list is empty.
    """
    if value is None:
        return None
    # Empty pieces of a string ("64,,32", a trailing comma) are slips, not resolutions.
    tokens = [t for t in value.split(",") if t.strip()] if isinstance(value, str) else list(value)
    if not tokens:
        raise ResolutionError("No resolutions were given; pass a list such as 'native,64,32,16'.")
    seen: list[Resolution] = []
    for token in tokens:
        resolution = Resolution(token)
        if resolution in seen:
            name = "'native'" if resolution.is_native else f"Resolution {resolution}"
            raise ResolutionError(f"{name} is listed twice; give each resolution once.")
        seen.append(resolution)
    return tuple(sorted(seen, key=lambda r: not r.is_native))  # stable: only native moves


def check_below(resolutions: Iterable[Resolution], native: int) -> None:
    """Every low resolution must be below the model's native size.

    Raises:
        ResolutionError: naming the first resolution that is not below `native`.
    """
    for resolution in resolutions:
        if resolution.pixels is not None and resolution.pixels >= native:
            raise ResolutionError(
                f"Resolution {resolution} is not below the model's native {native} px; "
                f"use 'native' for full size and only sizes below {native} for low resolutions."
            )


def split_below(resolutions: Iterable[Resolution], native: int) -> tuple[tuple[Resolution, ...], tuple[Resolution, ...]]:
    """(native and the resolutions below `native`, the ones that are not below it): a suite's grid on one model."""
    kept = tuple(r for r in resolutions if r.pixels is None or r.pixels < native)
    return kept, tuple(r for r in resolutions if r not in kept)


def default_sweep(native: int) -> tuple[Resolution, ...]:
    """Native plus the paper's 128/64/32/16 below `native`; a model too small for two of them gets
    native × (3/4, 1/2, 3/8, 1/4) instead (32 px: 24, 16, 12, 8)."""
    below = [r for r in PAPER if r.pixels is not None and r.pixels < native]
    if len(below) < 2:
        sizes = sorted({max(2, round(native * f)) for f in (3 / 4, 1 / 2, 3 / 8, 1 / 4)}, reverse=True)
        below = [Resolution(size) for size in sizes]
    return (NATIVE, *below)


def for_model(requested: Sequence[Resolution] | None, native: int) -> tuple[Resolution, ...]:
    """The resolutions to evaluate for a model of `native` px: `requested` checked against it, or its
    default sweep when None."""
    if requested is None:
        return default_sweep(native)
    check_below(requested, native)
    return tuple(requested)


def order(values: Iterable[object]) -> list[Resolution]:
    """Resolutions (any accepted form) in table order: native first, then from large to small."""
    return sorted((Resolution(v) for v in values), key=lambda r: r.sort_key)


__all__ = ["NATIVE", "PAPER", "Resolution", "ResolutionError", "check_below", "default_sweep", "for_model", "order",
           "parse_resolutions", "split_below"]
