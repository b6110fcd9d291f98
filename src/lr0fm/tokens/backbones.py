"""Where the patch tokens live in each supported ViT image tower.

LR-TK0 and the layer analysis (`lr0fm.analysis`) never copy a backbone's forward code: they hook the module
that makes the patch embeddings and every transformer block. This file finds those modules, says how their
tensors are laid out, and reads the patch tokens out of them (`patch_tokens`, `block_patch_tokens`).

| tower                                   | patch embedding (output)          | blocks (input layout)              | prefix tokens |
|-----------------------------------------|-----------------------------------|------------------------------------|---------------|
| open_clip VisionTransformer (lr0fm-tiny) | `conv1` (B, D, H, W)              | `transformer.resblocks`, (B, L, D) or (L, B, D) when `batch_first` is False | class token |
| timm VisionTransformer / Eva (open_clip `visual.trunk`) | `patch_embed` (B, N, D), or NHWC/NCHW when not flattened | `blocks`, (B, L, D) | `num_prefix_tokens` (class + registers) |
| transformers CLIP / SigLIP / BLIP vision | `embeddings.patch_embedding` (B, D, H, W) | `encoder.layers`, (B, L, D) | class token (none for SigLIP) |

In every case the prefix tokens come first, so the patch tokens are the last N positions of the sequence.
The patch projection, the conv that maps pixels to patch vectors (what the ``patch`` variant copies), is the
patch embedding itself for open_clip and transformers towers and timm's `patch_embed.proj`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError

SUPPORTED = (
    "open_clip VisionTransformer towers (openclip: ViTs, lr0fm-tiny), timm ViT/EVA trunks (e.g. openclip:EVA02-*), "
    "and transformers CLIP, SigLIP and BLIP vision models (hf:)"
)


@dataclass
class Anatomy:
    """The hook points of one image tower."""

    kind: str  # "open_clip", "timm" or "transformers"
    patch_embed: nn.Module
    patch_format: str  # layout of patch_embed's output: "NCHW", "NHWC" or "NLD"
    blocks: list[nn.Module]
    sequence_first: bool  # blocks see (L, B, D) instead of (B, L, D)
    num_patches: int
    grid: tuple[int, int]
    width: int
    num_prefix: int  # class / register tokens before the patches
    rope: bool  # rotary position embeddings sized to the patch grid (no room for extra prompt tokens)
    patch_projection: nn.Module | None = None  # the conv (or linear) inside patch_embed that maps pixels to patches

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)


def vision_tower(model, purpose: str = "LR-TK0 tokens") -> nn.Module:
    """The image tower of a ZeroShotModel (its `visual`), or a UserError that names `purpose`."""
    visual = getattr(model, "visual", None)
    if visual is None:
        raise UserError(f"{purpose}: {getattr(model, 'spec', model)!r} exposes no ViT image tower. Supported: {SUPPORTED}.")
    return visual


def locate(visual: nn.Module, name: str = "this model", purpose: str = "LR-TK0 tokens") -> Anatomy:
    """Find the patch embedding and the blocks of `visual`.

    Raises:
        UserError: `visual` has no patch tokens (e.g. a ConvNeXt or ResNet tower); the message names `purpose`.
    """
    from open_clip.transformer import VisionTransformer

    if isinstance(visual, VisionTransformer):
        return _open_clip(visual)
    trunk = getattr(visual, "trunk", None)  # open_clip's TimmModel wraps a timm model
    if trunk is not None and hasattr(trunk, "patch_embed") and hasattr(trunk, "blocks"):
        return _timm(trunk)
    if hasattr(visual, "patch_embed") and hasattr(visual, "blocks") and hasattr(visual, "num_prefix_tokens"):
        return _timm(visual)
    embeddings = getattr(visual, "embeddings", None)
    encoder = getattr(visual, "encoder", None)
    if embeddings is not None and hasattr(embeddings, "patch_embedding") and hasattr(encoder, "layers"):
        return _transformers(visual)
    raise UserError(f"{purpose}: {name} has a {type(visual).__name__} image tower, not a ViT with patch tokens. Supported: {SUPPORTED}.")


def _open_clip(visual) -> Anatomy:
    grid = tuple(int(g) for g in visual.grid_size)
    return Anatomy(
        kind="open_clip",
        patch_embed=visual.conv1,
        patch_format="NCHW",
        blocks=list(visual.transformer.resblocks),
        sequence_first=not getattr(visual.transformer, "batch_first", True),
        num_patches=grid[0] * grid[1],
        grid=grid,
        width=int(visual.conv1.out_channels),
        num_prefix=1,  # _embeds always prepends the class embedding, whatever the pooling
        rope=False,
        patch_projection=visual.conv1,
    )


def _timm(trunk) -> Anatomy:
    embed = trunk.patch_embed
    if getattr(embed, "flatten", True):
        patch_format = "NLD"
    else:
        patch_format = str(getattr(getattr(embed, "output_fmt", None), "value", "NCHW"))
        if patch_format not in ("NCHW", "NHWC"):
            raise UserError(f"timm patch embedding with output format {patch_format} is not supported by LR-TK0.")
    grid = tuple(int(g) for g in embed.grid_size)
    return Anatomy(
        kind="timm",
        patch_embed=embed,
        patch_format=patch_format,
        blocks=list(trunk.blocks),
        sequence_first=False,
        num_patches=grid[0] * grid[1],
        grid=grid,
        width=int(trunk.embed_dim),
        num_prefix=int(getattr(trunk, "num_prefix_tokens", 0)),
        rope=getattr(trunk, "rope", None) is not None,
        patch_projection=getattr(embed, "proj", embed),
    )


def _transformers(visual) -> Anatomy:
    embeddings = visual.embeddings
    conv = embeddings.patch_embedding
    side = int(embeddings.image_size) // int(embeddings.patch_size)
    return Anatomy(
        kind="transformers",
        patch_embed=conv,
        patch_format="NCHW",
        blocks=list(visual.encoder.layers),
        sequence_first=False,
        num_patches=side * side,
        grid=(side, side),
        width=int(conv.out_channels),
        num_prefix=1 if hasattr(embeddings, "class_embedding") else 0,
        rope=False,
        patch_projection=conv,
    )


def add_to_patch_embedding(output: torch.Tensor, tokens: torch.Tensor, anatomy: Anatomy) -> torch.Tensor:
    """output + tokens, where tokens is (1 or B, N, D) in patch order (row-major over the grid)."""
    tokens = tokens.to(output.dtype)
    if anatomy.patch_format == "NLD":
        return output + tokens
    height, width = anatomy.grid
    grid = tokens.reshape(tokens.shape[0], height, width, anatomy.width)  # (b, H, W, D)
    if anatomy.patch_format == "NHWC":
        return output + grid
    return output + grid.permute(0, 3, 1, 2)


def patch_tokens(output: torch.Tensor, anatomy: Anatomy) -> torch.Tensor:
    """The patch embedding's output as (B, N, D) in patch order (row-major over the grid), the inverse of the
    layout `add_to_patch_embedding` writes."""
    if anatomy.patch_format == "NLD":
        return output
    if anatomy.patch_format == "NHWC":
        return output.flatten(1, 2)
    return output.flatten(2).transpose(1, 2)


def block_patch_tokens(output, anatomy: Anatomy) -> torch.Tensor:
    """A block's output as (B, N, D) patch tokens: the hidden states of a tuple output (older transformers
    layers), batch first, without the prefix tokens (and any prompts) before the patches."""
    hidden = output[0] if isinstance(output, tuple) else output
    if anatomy.sequence_first:
        hidden = hidden.transpose(0, 1)
    return hidden[:, -anatomy.num_patches:]
