"""Tokens files: a safetensors file of the token parameters, with metadata that ties them to their base model.

Metadata (all strings): `lr0fm_format` = "lr0fm-tokens", `lr0fm_format_version`, `base_spec`,
`base_fingerprint` (models.base.fingerprint_module of the base weights), `base_family`, `layout` (JSON of
wrapper.TokenLayout), `training` (JSON: the training config, pool, steps, final loss), `lr0fm_version`,
`torch_version`.

A model spec `SPEC+tokens=PATH` loads SPEC, checks that its weights are the ones the tokens were trained
on, and wraps it (`lr0fm.loader`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import UserError
from ..fileio import atomic_path
from .wrapper import TokenLayout, TokenModel, wrap

FORMAT = "lr0fm-tokens"
FORMAT_VERSION = "1"


def save_tokens(model: TokenModel, path: str | Path, training: dict | None = None) -> Path:
    """Write the tokens and their metadata; atomic, so a killed run never leaves half a file."""
    from safetensors.torch import save_file

    from .. import __version__

    path = Path(path).expanduser()
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.tokens.state_dict().items()}
    metadata = {
        "format": "pt",
        "lr0fm_format": FORMAT,
        "lr0fm_format_version": FORMAT_VERSION,
        "base_spec": model.base.spec,
        "base_fingerprint": model.base.fingerprint(),
        "base_family": model.base.family,
        "layout": json.dumps(model.layout.to_dict(), sort_keys=True),
        "training": json.dumps(training or {}, sort_keys=True, default=str),
        "lr0fm_version": __version__,
        "torch_version": torch.__version__,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    return path


def read_tokens(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata with `layout` and `training` parsed, tensors); a UserError for anything else."""
    from safetensors import safe_open

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"Tokens file {path} does not exist; train one with `lr0fm tokens train` or fix the path.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception:
        raise UserError(f"Tokens file {path} is not a readable safetensors file; train it again with `lr0fm tokens train`.") from None
    if metadata.get("lr0fm_format") != FORMAT:
        raise UserError(f"{path} is not an LR-TK0 tokens file (no lr0fm-tokens metadata); pass a file written by `lr0fm tokens train`.")
    if metadata.get("lr0fm_format_version") != FORMAT_VERSION:
        raise UserError(f"Tokens file {path} has format version {metadata.get('lr0fm_format_version')}, "
                        f"this lr0fm reads version {FORMAT_VERSION}; retrain the tokens or upgrade lr0fm.")
    try:
        metadata["layout"] = TokenLayout(**json.loads(metadata["layout"]))
        metadata["training"] = json.loads(metadata.get("training") or "{}")
    except (KeyError, TypeError, ValueError):
        raise UserError(f"Tokens file {path} has damaged metadata; train it again with `lr0fm tokens train`.") from None
    return metadata, tensors


def attach_tokens(base, path: str | Path) -> TokenModel:
    """Wrap a loaded base model with the tokens in `path`, after checking that they belong to it."""
    metadata, tensors = read_tokens(path)
    fingerprint = base.fingerprint()
    if metadata.get("base_fingerprint") != fingerprint:
        raise UserError(
            f"Tokens file {path} was trained on {metadata.get('base_spec')!r} (weights fingerprint "
            f"{metadata.get('base_fingerprint')}), but {base.spec!r} has weights fingerprint {fingerprint}; "
            f"use the base model the tokens were trained on: {metadata.get('base_spec')}+tokens={path}."
        )
    model = wrap(base, layout=metadata["layout"], tokens_file=str(path))
    try:
        model.tokens.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        model.detach()
        raise UserError(f"Tokens file {path} does not match its own layout ({str(error).splitlines()[0]}); train it again.") from None
    model.tokens.requires_grad_(False)
    model.tokens.to(base.device)
    model.training_info = metadata["training"]
    return model
