"""Benchmark suites: fixed grids of datasets × resolutions × protocol, as data.

`--suite lr0fm` is the grid of the LR0.FM paper: its 15 datasets in their published splits with the
paper's prompts, native/128/64/32/16 px, and the `paper` protocol, so stored numbers are comparable with
the published ones. The planner (`plan.py`) expands a suite into work; nothing here runs anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from .data.lr0fm_suite import SUITE
from .errors import UserError
from .resolution import PAPER, Resolution


@dataclass(frozen=True)
class Suite:
    """A named grid. `resolutions` starts with native; models skip the sizes not below their own."""

    name: str
    datasets: tuple[str, ...]
    resolutions: tuple[Resolution, ...]
    protocol: str
    description: str


SUITES: dict[str, Suite] = {
    "lr0fm": Suite(
        "lr0fm", tuple(SUITE), PAPER, "paper",
        "the LR0.FM paper's grid: its 15 datasets (published splits and prompts), native/128/64/32/16 px, paper protocol",
    ),
}


def get_suite(name: str) -> Suite:
    """The suite called `name`; an unknown name is a UserError listing the suites."""
    suite = SUITES.get(name.strip().lower())
    if suite is None:
        raise UserError(f"Unknown suite {name!r}; use one of: {', '.join(SUITES)}.")
    return suite


__all__ = ["SUITES", "Suite", "get_suite"]
