"""Model specs, parsed once into a `ModelSpec`.

Grammar:
    lr0fm-tiny                      the bundled tiny model
    openclip:ARCH/PRETRAINED_TAG    an open_clip architecture with a pretrained tag
    openclip:ARCH                   random init, or weights from `weights=FILE`
    openclip:hf-hub:ORG/NAME        an open_clip model hosted on the Hugging Face hub
    hf:ID_OR_LOCAL_DIR              a transformers CLIPModel / SiglipModel / BLIP retrieval model (ITC head)
    NAME                            a registry name, e.g. eva02-b16 (`lr0fm list models`)
    SPEC+tokens=PATH                any of the above with LR-TK0 tokens from `lr0fm tokens train`
    SPEC+sr=PATH                    any of the above behind a super-resolution network (a spandrel file)
                                    in place of the bicubic up-step; composes with +tokens= in either order

    >>> spec = parse_spec("eva02-b16+tokens=eva.safetensors")
    >>> spec.backend, spec.name, spec.tag, spec.family, spec.tokens, str(spec)
    ('openclip', 'EVA02-B-16', 'merged2b_s8b_b131k', 'eva', 'eva.safetensors', 'eva02-b16+tokens=eva.safetensors')
    >>> spec.backend_text
    'openclip:EVA02-B-16/merged2b_s8b_b131k'
    >>> str(parse_spec("lr0fm-tiny+sr=x4.pth+tokens=t.safetensors"))
    'lr0fm-tiny+tokens=t.safetensors+sr=x4.pth'

Tokens and super-resolution files are only carried here: attaching them to a loaded model happens one layer
up (`lr0fm.loader`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cached_property

from ..errors import UserError
from . import registry
from .backends import BACKENDS, Backend, backend_of

TOKENS_MARK = "+tokens="
SR_MARK = "+sr="
_SUFFIX = re.compile(r"\+(tokens|sr)=")  # the files a spec may name after its base model
_EXAMPLES = {"tokens": "lr0fm-tiny+tokens=tiny-tokens.safetensors", "sr": "lr0fm-tiny+sr=RealESRGAN_x4plus.pth"}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec.

    Attributes:
        backend: the backend's prefix in `models.backends.BACKENDS` ("lr0fm-tiny", "openclip", "hf").
        name: architecture, hub repository or folder ("" for a fixed model such as lr0fm-tiny).
        tag: open_clip pretrained tag, or None.
        weights: a local weights file that replaces the spec's own weights, or None.
        tokens: an LR-TK0 tokens file, or None.
        sr: a super-resolution network file (Real-ESRGAN, SwinIR, HAT, ... read by spandrel), or None.
        alias: the registry name the spec was given as, or None.
        family: the registry's family (None: the loaded model tells).
        declared_native: the registry's native size, or None.
    """

    backend: str
    name: str = ""
    tag: str | None = None
    weights: str | None = None
    tokens: str | None = None
    sr: str | None = None
    alias: str | None = None
    family: str | None = None
    declared_native: int | None = None

    def __str__(self) -> str:
        text = self.alias or self.backend_text
        if self.tokens:
            text += f"{TOKENS_MARK}{self.tokens}"
        return f"{text}{SR_MARK}{self.sr}" if self.sr else text

    @property
    def backend_text(self) -> str:
        """The backend spec, without registry name, tokens or SR file: "openclip:ViT-B-32/openai"."""
        if self.table.fixed:
            return self.backend
        return f"{self.backend}:{self.name}" + (f"/{self.tag}" if self.tag else "")

    @property
    def table(self) -> Backend:
        """This spec's row of the backend table."""
        return BACKENDS[self.backend]

    @property
    def base(self) -> ModelSpec:
        """The base model alone: the same spec without tokens and SR file."""
        return replace(self, tokens=None, sr=None) if self.tokens or self.sr else self

    @cached_property
    def native(self) -> int | None:
        """The native input size as known without loading weights (None: only the loaded model knows)."""
        return self.declared_native or self.table.native(self)

    @property
    def pinned(self) -> bool:
        """True when the spec text alone pins the weights, so stored results can be matched by it before
        loading: no --weights file, no tokens or SR file, no local folder (files may change under a path)."""
        return not self.weights and not self.tokens and not self.sr and not self.table.local(self)


def parse_spec(text: str | ModelSpec, weights: str | None = None) -> ModelSpec:
    """Parse a model spec (or a registry name) once, with an optional local weights file.

    Args:
        text: a spec such as "openclip:ViT-B-32/openai", "eva02-b16", "lr0fm-tiny+tokens=t.safetensors" or
            "lr0fm-tiny+sr=x4.pth";
            a ModelSpec is returned as it is (with `weights` set when given).
        weights: a local weights file that replaces the model's own (openclip:ARCH and lr0fm-tiny).

    Returns:
        The ModelSpec; `str()` of it gives the canonical text back.

    Raises:
        UserError: malformed or unknown spec (with the closest registry names), an unsupported registry
            model (with its reason), or `weights` given for a backend that takes none.
    """
    if isinstance(text, ModelSpec):
        return replace(text, weights=weights) if weights else text
    base, files = _split_files(text)
    found = backend_of(base)
    if found is not None:
        backend, rest = found
        name, tag = backend.split(rest)
        spec = ModelSpec(backend.prefix, name, tag)
    elif ":" not in base and registry.find(base) is not None:
        entry = registry.resolve(base)
        inner = parse_spec(entry.spec)
        spec = replace(inner, alias=entry.name, family=entry.family, declared_native=entry.native)
    else:
        raise UserError(
            f"Unknown model {base!r}{registry.suggest(base)}; use a registry name (`lr0fm list models`), lr0fm-tiny, "
            "openclip:ARCH[/TAG], openclip:hf-hub:ORG/NAME or hf:ID_OR_DIR."
        )
    if weights:
        if not spec.table.weights:
            raise UserError("--weights applies to openclip: and lr0fm-tiny models; for hf: pass a local folder as hf:/path/to/dir.")
        spec = replace(spec, weights=str(weights))
    return replace(spec, tokens=files.get("tokens"), sr=files.get("sr"))


def _split_files(text: str) -> tuple[str, dict[str, str]]:
    """("base spec", {"tokens": PATH, "sr": PATH}) of a spec's text; each suffix at most once, none empty."""
    parts = _SUFFIX.split(text.strip())
    base, files = parts[0].strip(), {}
    for kind, path in zip(parts[1::2], parts[2::2]):
        if not base or not path.strip():
            raise UserError(f"Model spec {text!r} must read SPEC+{kind}=PATH, e.g. {_EXAMPLES[kind]}.")
        if kind in files:
            raise UserError(f"Model spec {text!r} names {kind} twice; give one +{kind}=PATH.")
        files[kind] = path.strip()
    return base, files


__all__ = ["ModelSpec", "SR_MARK", "TOKENS_MARK", "parse_spec"]
