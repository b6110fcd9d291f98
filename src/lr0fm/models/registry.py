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
the pretrained-only BLIP checkpoints) keep their rows with `supported=False` and the reason.

Register your own model in a few lines; every command that takes a model spec then accepts the name:

    from lr0fm.models.registry import register

    register("my-clip", "openclip:ViT-B-16/laion2b_s34b_b88k", family="openclip")
    register("my-finetune", "openclip:ViT-B-16", family="openclip", native=224,
             note="ViT-B/16 fine-tuned on my data; pass --weights FILE")

`family` is one of clip, metaclip, eva, eva8b, clipa, coca, openclip, siglip, albef, m2, blip (an unknown
family gets the generic square-stretch protocol); `native` is looked up from open_clip's config when left out.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from ..errors import UserError

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

    @property
    def pipeline(self) -> str:
        """"shortside" or "stretch": the resize path of the paper's code for this family."""
        from ..degrade import paper_pipeline  # lazy: the registry stays importable without the image stack

        return paper_pipeline(self.family)

    def native_size(self) -> int | None:
        """The native input size, looked up from open_clip's architecture config when not given."""
        if self.native is not None:
            return self.native
        return _openclip_native(self.spec) if self.spec else None

    def row(self) -> dict:
        """One row of `lr0fm list models`."""
        return {
            "name": self.name,
            "family": self.family,
            "spec": self.spec or "",
            "native": self.native_size(),
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
) -> ModelEntry:
    """Add a named model. `spec` is a backend spec (openclip:..., hf:..., lr0fm-tiny); returns the entry."""
    name = name.strip()
    if not _NAME.match(name) or name == "lr0fm-tiny":
        raise UserError(
            f"Model name {name!r} is not usable; pick lower-case letters, digits, '.', '_' or '-' (no ':'), e.g. 'my-clip'."
        )
    if name in _REGISTRY and not replace:
        raise UserError(f"A model named {name!r} is already registered; pick another name or pass replace=True.")
    if supported:
        if not spec or not (spec == "lr0fm-tiny" or spec.split(":", 1)[0] in ("openclip", "hf")):
            raise UserError(f"Model {name!r} needs a backend spec such as openclip:ARCH/TAG or hf:ID, not {spec!r}.")
    elif not reason:
        raise UserError(f"Unsupported model {name!r} needs a reason saying why it cannot be loaded.")
    if native is not None and int(native) <= 0:
        raise UserError(f"Native size of {name!r} must be a positive number of pixels, not {native}.")
    entry = ModelEntry(
        name, family.strip().lower(), spec, None if native is None else int(native), paper_name, supported,
        "" if supported else reason, note,
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


def _openclip_native(spec: str) -> int | None:
    if not spec.startswith("openclip:") or spec.startswith("openclip:hf-hub:"):
        return None
    import open_clip

    config = open_clip.get_model_config(spec.removeprefix("openclip:").partition("/")[0])
    if not config:
        return None
    size = config["vision_cfg"]["image_size"]
    return int(size[0] if isinstance(size, (tuple, list)) else size)


# --------------------------------------------------------------------------------------------------
# The paper's 66 backbones. Paper names are the backbone column of the authors' result CSVs
# (MetaData/Results/*.csv); tags are open_clip's, checked with open_clip.get_pretrained_cfg.

_ALBEF_REASON = "ALBEF needs Salesforce's ALBEF code and checkpoints, which neither open_clip nor transformers provide"
_BLIP_PRETRAINED_REASON = (
    "the pretrained (not retrieval fine-tuned) BLIP checkpoints exist only in Salesforce/BLIP's own format; "
    "transformers publishes just the COCO and Flickr retrieval fine-tunes"
)
_M2_REASON = "M2-Encoder needs Ant Group's Ant-Multi-Modal-Framework code and weights, which neither open_clip nor transformers provide"
_EVA8B_REASON = "EVA-CLIP-8B is not in open_clip and its Hugging Face release needs BAAI's own remote code"


def _paper_backbones() -> None:
    def add(name, paper, family, spec, native, note=""):
        register(name, spec, family=family, native=native, paper_name=paper, note=note)

    def missing(name, paper, family, native, reason):
        register(name, None, family=family, native=native, paper_name=paper, supported=False, reason=reason)

    # ALBEF (evaluated at 384 px).
    missing("albef-4m", "ALBEF (4M)", "albef", 384, _ALBEF_REASON)
    missing("albef-14m", "ALBEF (14M)", "albef", 384, _ALBEF_REASON)
    missing("albef-14m-coco", "ALBEF (14M + coco_finetuned)", "albef", 384, _ALBEF_REASON)
    missing("albef-14m-flickr", "ALBEF (14M + flickr_finetuned)", "albef", 384, _ALBEF_REASON)

    # BLIP: the retrieval fine-tunes are on the Hugging Face hub as BlipForImageTextRetrieval (ITC head).
    missing("blip-b16-14m", "BLIP-ViT-B/16 (4M)", "blip", 384, _BLIP_PRETRAINED_REASON)  # the paper's "4M" is the 14M model
    missing("blip-b16-129m", "BLIP-ViT-B/16 (129M)", "blip", 384, _BLIP_PRETRAINED_REASON)
    missing("blip-b16-capfilt-l", "BLIP-ViT-B/16 & CapFilt-L (129M)", "blip", 384, _BLIP_PRETRAINED_REASON)
    missing("blip-l16-129m", "BLIP-ViT-L/16 (129M)", "blip", 384, _BLIP_PRETRAINED_REASON)
    add("blip-b16-coco", "BLIP-ViT-B/16 (129M + COCO)", "blip", "hf:Salesforce/blip-itm-base-coco", 384)
    add("blip-b16-flickr", "BLIP-ViT-B/16 (129M + Flickr)", "blip", "hf:Salesforce/blip-itm-base-flickr", 384)
    add("blip-l16-coco", "BLIP-ViT-L/16 (129M + COCO)", "blip", "hf:Salesforce/blip-itm-large-coco", 384)
    add("blip-l16-flickr", "BLIP-ViT-L/16 (129M + Flickr)", "blip", "hf:Salesforce/blip-itm-large-flickr", 384)

    # OpenAI CLIP.
    add("clip-vit-b32", "ViT-B/32", "clip", "openclip:ViT-B-32/openai", 224)
    add("clip-vit-b16", "ViT-B/16", "clip", "openclip:ViT-B-16/openai", 224)
    add("clip-vit-l14", "ViT-L/14", "clip", "openclip:ViT-L-14/openai", 224)
    add("clip-vit-l14-336", "ViT-L/14@336px", "clip", "openclip:ViT-L-14-336/openai", 336)
    add("clip-rn50", "RN50", "clip", "openclip:RN50/openai", 224)
    add("clip-rn101", "RN101", "clip", "openclip:RN101/openai", 224)
    add("clip-rn50x4", "RN50x4", "clip", "openclip:RN50x4/openai", 288)
    add("clip-rn50x16", "RN50x16", "clip", "openclip:RN50x16/openai", 384)
    add("clip-rn50x64", "RN50x64", "clip", "openclip:RN50x64/openai", 448)

    # CLIPA-v2 ("G" in the paper is bigG).
    add("clipa-bigg14", "CLIPA-ViT-G/14", "clipa", "openclip:ViT-bigG-14-CLIPA/datacomp1b", 224)
    add("clipa-bigg14-336", "CLIPA-ViT-G/14@336px", "clipa", "openclip:ViT-bigG-14-CLIPA-336/datacomp1b", 336)
    add("clipa-h14", "CLIPA-ViT-H/14", "clipa", "openclip:ViT-H-14-CLIPA/datacomp1b", 224)
    add("clipa-h14-336", "CLIPA-ViT-H/14@336px (DataComp-1B)", "clipa", "openclip:ViT-H-14-CLIPA-336/datacomp1b", 336)
    add("clipa-h14-336-laion2b", "CLIPA-ViT-H/14@336px (LAION-2B)", "clipa", "openclip:ViT-H-14-CLIPA-336/laion2b", 336)
    add("clipa-l14", "CLIPA-ViT-L/14", "clipa", "openclip:ViT-L-14-CLIPA/datacomp1b", 224)
    add("clipa-l14-336", "CLIPA-ViT-L/14@336px", "clipa", "openclip:ViT-L-14-CLIPA-336/datacomp1b", 336)

    # CoCa.
    add("coca-b32", "CoCa-ViT-B/32", "coca", "openclip:coca_ViT-B-32/laion2b_s13b_b90k", 224)
    add("coca-l14", "CoCa-ViT-L/14 (laion2b_s13b_b90k)", "coca", "openclip:coca_ViT-L-14/laion2b_s13b_b90k", 224)
    add("coca-l14-mscoco", "CoCa-ViT-L/14 (laion2b_s13b_b90k + mscoco)", "coca",
        "openclip:coca_ViT-L-14/mscoco_finetuned_laion2b_s13b_b90k", 224)

    # EVA-CLIP ("+" is the plus model for g and E, the 336 px model for L).
    add("eva01-g14", "EVA-01-CLIP-g/14", "eva", "openclip:EVA01-g-14/laion400m_s11b_b41k", 224)
    add("eva01-g14-plus", "EVA-01-CLIP-g/14+", "eva", "openclip:EVA01-g-14-plus/merged2b_s11b_b114k", 224)
    add("eva02-b16", "EVA-02-CLIP-B/16", "eva", "openclip:EVA02-B-16/merged2b_s8b_b131k", 224)
    add("eva02-e14", "EVA-02-CLIP-E/14", "eva", "openclip:EVA02-E-14/laion2b_s4b_b115k", 224)
    add("eva02-e14-plus", "EVA-02-CLIP-E/14+", "eva", "openclip:EVA02-E-14-plus/laion2b_s9b_b144k", 224)
    add("eva02-l14", "EVA-02-CLIP-L/14", "eva", "openclip:EVA02-L-14/merged2b_s4b_b131k", 224)
    add("eva02-l14-336", "EVA-02-CLIP-L/14+", "eva", "openclip:EVA02-L-14-336/merged2b_s6b_b61k", 336)
    missing("eva-clip-8b", "EVA-CLIP-8B", "eva8b", 224, _EVA8B_REASON)

    # M2-Encoder.
    missing("m2-encoder-0.4b", "M2-Encoder-0.4B", "m2", 224, _M2_REASON)
    missing("m2-encoder-1b", "M2-Encoder-1B", "m2", 224, _M2_REASON)
    missing("m2-encoder-10b", "M2-Encoder-10B", "m2", 224, _M2_REASON)

    # MetaCLIP (QuickGELU; 2.5B is open_clip's "fullcc"; "G" is bigG).
    add("metaclip-b32-400m", "MetaCLIP-ViT-B/32 (400M)", "metaclip", "openclip:ViT-B-32-quickgelu/metaclip_400m", 224)
    add("metaclip-b32-2.5b", "MetaCLIP-ViT-B/32 (2.5B)", "metaclip", "openclip:ViT-B-32-quickgelu/metaclip_fullcc", 224)
    add("metaclip-b16-400m", "MetaCLIP-ViT-B/16 (400M)", "metaclip", "openclip:ViT-B-16-quickgelu/metaclip_400m", 224)
    add("metaclip-b16-2.5b", "MetaCLIP-ViT-B/16 (2.5B)", "metaclip", "openclip:ViT-B-16-quickgelu/metaclip_fullcc", 224)
    add("metaclip-l14-400m", "MetaCLIP-ViT-L/14 (400M)", "metaclip", "openclip:ViT-L-14-quickgelu/metaclip_400m", 224)
    add("metaclip-l14-2.5b", "MetaCLIP-ViT-L/14 (2.5B)", "metaclip", "openclip:ViT-L-14-quickgelu/metaclip_fullcc", 224)
    add("metaclip-h14-2.5b", "MetaCLIP-ViT-H/14 (2.5B)", "metaclip", "openclip:ViT-H-14-quickgelu/metaclip_fullcc", 224)
    add("metaclip-bigg14-2.5b", "MetaCLIP-ViT-G/14 (2.5B)", "metaclip", "openclip:ViT-bigG-14-quickgelu/metaclip_fullcc", 224)

    # OpenCLIP ("G" is bigG, whose 80.4 ImageNet top-1 in the paper matches laion2b_s39b_b160k, not ViT-g).
    add("openclip-b16-datacomp-xl", "OpenCLIP-ViT-B/16", "openclip", "openclip:ViT-B-16/datacomp_xl_s13b_b90k", 224)
    add("openclip-b32-256-datacomp", "OpenCLIP-ViT-B/32@256px", "openclip", "openclip:ViT-B-32-256/datacomp_s34b_b86k", 256)
    add("openclip-l14-laion2b", "OpenCLIP-ViT-L/14 (laion2b_s32b_b82k)", "openclip", "openclip:ViT-L-14/laion2b_s32b_b82k", 224)
    add("openclip-l14-datacomp-xl", "OpenCLIP-ViT-L/14 (datacomp_xl_s13b_b90k)", "openclip",
        "openclip:ViT-L-14/datacomp_xl_s13b_b90k", 224)
    add("openclip-h14-laion2b", "OpenCLIP-ViT-H/14", "openclip", "openclip:ViT-H-14/laion2b_s32b_b79k", 224)
    add("openclip-h14-dfn5b", "OpenCLIP-ViT-H/14-quickgelu", "openclip", "openclip:ViT-H-14-quickgelu/dfn5b", 224)
    add("openclip-h14-378-dfn5b", "OpenCLIP-ViT-H/14-quickgelu@336px", "openclip", "openclip:ViT-H-14-378-quickgelu/dfn5b", 378,
        note="the paper's table says @336px, but the DFN5B H/14 high-resolution model is 378 px")
    add("openclip-bigg14-laion2b", "OpenCLIP-ViT-G/14", "openclip", "openclip:ViT-bigG-14/laion2b_s39b_b160k", 224)

    # SigLIP (WebLI).
    add("siglip-b16", "SigLIP-ViT-B/16", "siglip", "openclip:ViT-B-16-SigLIP/webli", 224)
    add("siglip-b16-256", "SigLIP-ViT-B/16@256px", "siglip", "openclip:ViT-B-16-SigLIP-256/webli", 256)
    add("siglip-b16-384", "SigLIP-ViT-B/16@384px", "siglip", "openclip:ViT-B-16-SigLIP-384/webli", 384)
    add("siglip-b16-512", "SigLIP-ViT-B/16@512px", "siglip", "openclip:ViT-B-16-SigLIP-512/webli", 512)
    add("siglip-l16-256", "SigLIP-ViT-L/16@256px", "siglip", "openclip:ViT-L-16-SigLIP-256/webli", 256)
    add("siglip-l16-384", "SigLIP-ViT-L/16@384px", "siglip", "openclip:ViT-L-16-SigLIP-384/webli", 384)
    add("siglip-so400m", "SigLIP-ViT-SO400M", "siglip", "openclip:ViT-SO400M-14-SigLIP/webli", 224)
    add("siglip-so400m-384", "SigLIP-ViT-SO400M@336px", "siglip", "openclip:ViT-SO400M-14-SigLIP-384/webli", 384,
        note="the paper's table says @336px, but SigLIP SO400M/14 exists at 224 and 384 px only; the paper's text says 384")


_paper_backbones()

PAPER_MODELS: tuple[str, ...] = tuple(e.name for e in _REGISTRY.values() if e.paper_name)

__all__ = [
    "FAMILIES", "ModelEntry", "PAPER_MODELS", "by_paper_name", "entries", "find", "get", "list_models", "register",
    "resolve", "suggest", "unregister",
]
