"""Named models: the 66 backbones of the LR0.FM paper under short, stable names, plus the user's own.

A registry name stands for a backend spec and says what the paper knew about the model: its family
(which picks the `paper` resolution protocol), its native input size, and the exact backbone name of the
paper's accuracy table, so that results can be joined to the published numbers.

    >>> from lr0fm.models.registry import list_models, get
    >>> get("eva02-b16").spec
    'openclip:EVA02-B-16/merged2b_s8b_b131k'
    >>> [row["name"] for row in list_models(family="siglip")][:2]
    ['siglip-b16', 'siglip-b16-256']

`lr0fm.load_model("eva02-b16")` loads the backend spec but keeps the short name as `model.spec` and the
registry's family as `model.family`. Backbones this package cannot load (ALBEF, M2-Encoder, EVA-CLIP-8B and
the pretrained-only BLIP checkpoints) keep their rows with `supported=False` and the reason. The paper's
backbones are the rows of `lr0fm/reference/backbones.csv`, registered at import (its source is in SOURCE.md).

Register your own model in a few lines; every command that takes a model spec then accepts the name:

    from lr0fm.models.registry import register

    register("my-clip", "openclip:ViT-B-16/laion2b_s34b_b88k", family="openclip")
    register("my-finetune", "openclip:ViT-B-16", family="openclip", native=224,
             note="ViT-B/16 fine-tuned on my data; pass --weights FILE")

Metadata keywords (`arch`, `image_params`, `pretrain_data`, `pretrain_pairs`, `curation`, `finetuned`,
`base`, `meta_source`; see `models.meta.BackboneMeta`) let `lr0fm analyze findings` join the model's stored
results to the paper's backbones:

    register("my-finetune", "openclip:ViT-B-16", arch="ViT-B/16", image_params=86_192_640,
             pretrain_data="LAION-2B", pretrain_pairs=2_320_000_000, curation="web", finetuned="my data")

`family` is one of clip, metaclip, eva, eva8b, clipa, coca, openclip, siglip, albef, m2, blip (an unknown
family gets the generic square-stretch protocol); when `native` is left out, the parsed spec looks it up
from open_clip's config (`parse_spec("my-clip").native`).
"""

from __future__ import annotations

import csv
import difflib
import re
from dataclasses import dataclass
from importlib import resources

from ..errors import UserError
from .backends import backend_of
from .meta import BackboneMeta, paper_meta

# Families of the paper, in the order of its model table.
FAMILIES: tuple[str, ...] = ("albef", "blip", "clip", "clipa", "coca", "eva", "eva8b", "m2", "metaclip", "openclip", "siglip")

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class ModelEntry:
    """One named model. `spec` is the backend spec it loads (None when unsupported and no spec exists)."""

    name: str
    family: str
    spec: str | None
    native: int | None
    paper_name: str | None = None  # backbone name exactly as in the paper's accuracy table
    supported: bool = True
    reason: str = ""  # why it cannot be loaded (unsupported entries only)
    note: str = ""  # a caveat, e.g. how a paper name maps to open_clip's tag
    meta: BackboneMeta | None = None  # image-tower size, pre-training data, fine-tuning (None: not known)

    @property
    def pipeline(self) -> str:
        """"shortside" or "stretch": the resize path of the paper's code for this family."""
        from ..degrade import paper_pipeline  # lazy: the registry stays importable without the image stack

        return paper_pipeline(self.family)

    def row(self) -> dict:
        """One row of `lr0fm list models`."""
        return {
            "name": self.name,
            "family": self.family,
            "spec": self.spec or "",
            "native": self.native,
            "pipeline": self.pipeline,
            "supported": self.supported,
            "reason": self.reason,
            "paper_name": self.paper_name or "",
            "note": self.note,
        }


_REGISTRY: dict[str, ModelEntry] = {}


def register(
    name: str,
    spec: str | None,
    *,
    family: str = "openclip",
    native: int | None = None,
    paper_name: str | None = None,
    supported: bool = True,
    reason: str = "",
    note: str = "",
    replace: bool = False,
    meta: BackboneMeta | None = None,
    arch: str = "",
    image_params: int | None = None,
    pretrain_data: str = "",
    pretrain_pairs: int | None = None,
    curation: str = "",
    finetuned: str = "",
    base: str = "",
    meta_source: str = "given with register()",
) -> ModelEntry:
    """Add a named model. `spec` is a backend spec (openclip:..., hf:..., lr0fm-tiny); returns the entry.

    The metadata keywords (or a ready `meta`) describe the model for `lr0fm analyze findings`; without any
    of them the entry has no metadata and the findings list it as left out.
    """
    name = name.strip()
    if not _NAME.match(name) or name == "lr0fm-tiny":
        raise UserError(
            f"Model name {name!r} is not usable; pick lower-case letters, digits, '.', '_' or '-' (no ':'), e.g. 'my-clip'."
        )
    if name in _REGISTRY and not replace:
        raise UserError(f"A model named {name!r} is already registered; pick another name or pass replace=True.")
    if supported:
        if not spec or backend_of(spec) is None:
            raise UserError(f"Model {name!r} needs a backend spec such as openclip:ARCH/TAG or hf:ID, not {spec!r}.")
    elif not reason:
        raise UserError(f"Unsupported model {name!r} needs a reason saying why it cannot be loaded.")
    if native is not None and int(native) <= 0:
        raise UserError(f"Native size of {name!r} must be a positive number of pixels, not {native}.")
    if meta is None and (arch or image_params is not None or pretrain_data or pretrain_pairs is not None or curation
                         or finetuned or base):
        meta = BackboneMeta(arch, image_params, pretrain_data, pretrain_pairs, curation, finetuned, base, meta_source)
    entry = ModelEntry(
        name, family.strip().lower(), spec, None if native is None else int(native), paper_name, supported,
        "" if supported else reason, note, meta,
    )
    _REGISTRY[name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove a named model (user registrations; the paper's backbones can be removed too, e.g. in tests)."""
    _REGISTRY.pop(name, None)


def find(name: str) -> ModelEntry | None:
    """The entry for `name`, or None."""
    return _REGISTRY.get(name.strip())


def suggest(name: str) -> str:
    """" (did you mean a, b?)" for the registered names closest to `name`, or ""."""
    close = difflib.get_close_matches(name.strip().lower(), list(_REGISTRY), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def get(name: str) -> ModelEntry:
    """The entry for `name`; an unknown name is a UserError with the closest names."""
    entry = find(name)
    if entry is None:
        raise UserError(f"Unknown model name {name!r}{suggest(name)}; `lr0fm list models` shows the registered names.")
    return entry


def resolve(name: str) -> ModelEntry:
    """The entry for `name`, which must be loadable; an unsupported one is a UserError with its reason."""
    entry = get(name)
    if not entry.supported:
        raise UserError(f"{entry.name} ({entry.paper_name or entry.family}) cannot be loaded by lr0fm: {entry.reason}.")
    return entry


def by_paper_name(paper_name: str) -> ModelEntry:
    """The entry whose paper backbone name is `paper_name` (as written in the paper's accuracy table)."""
    for entry in _REGISTRY.values():
        if entry.paper_name == paper_name:
            return entry
    raise UserError(f"No registered model has the paper name {paper_name!r}; `lr0fm list models` shows them.")


def entries(family: str | None = None) -> list[ModelEntry]:
    """Registered entries in registration order, optionally of one family."""
    wanted = family.strip().lower() if family else None
    if wanted is not None and wanted not in FAMILIES and not any(e.family == wanted for e in _REGISTRY.values()):
        raise UserError(f"Unknown model family {family!r}; use one of: {', '.join(FAMILIES)}.")
    return [e for e in _REGISTRY.values() if wanted is None or e.family == wanted]


def list_models(family: str | None = None) -> list[dict]:
    """Rows for `lr0fm list models [--family F]`: name, family, spec, native, pipeline, supported, reason, paper_name, note."""
    return [entry.row() for entry in entries(family)]


# --------------------------------------------------------------------------------------------------
# The paper's 66 backbones are data: one row each in lr0fm/reference/backbones.csv (source in SOURCE.md).

BACKBONES_FILE = "backbones.csv"
_SUPPORTED = {"yes": True, "no": False}


def _paper_backbones() -> None:
    """Register the rows of reference/backbones.csv in file order, with their reference/backbone_meta.csv rows."""
    metas = paper_meta()
    with resources.files("lr0fm.reference").joinpath(BACKBONES_FILE).open("r", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            register(
                row["name"], row["spec"] or None, family=row["family"],
                native=int(row["native"]) if row["native"] else None, paper_name=row["paper_name"] or None,
                supported=_SUPPORTED[row["supported"]], reason=row["reason"], note=row["note"],
                meta=metas.get(row["name"]),
            )


_paper_backbones()

PAPER_MODELS: tuple[str, ...] = tuple(e.name for e in _REGISTRY.values() if e.paper_name)

__all__ = [
    "FAMILIES", "ModelEntry", "PAPER_MODELS", "by_paper_name", "entries", "find", "get", "list_models", "register",
    "resolve", "suggest", "unregister",
]
