"""Layer-wise analysis: where inside a ViT image tower does low resolution change the features?

For each image, the native view and its low-resolution views (degrade.ViewMaker, canonical protocol by
default) go through the image tower; the patch-token features after the patch embedding and after every
transformer block are compared between native and low resolution by cosine similarity, averaged over
images. Pooling "mean" follows the paper's analysis (mean-pooled patch tokens, then cosine); "token"
takes the cosine of each patch token with the same patch at native resolution and averages over patches.

Unlike the report, this runs the model. It works on every tower LR-TK0 supports: open_clip ViTs (lr0fm-tiny,
openclip: ViTs), timm ViT/EVA trunks inside open_clip (openclip:EVA02-*), and transformers CLIP, SigLIP and
BLIP vision models (hf:). Which modules to hook and how their tensors are laid out (tuple outputs, sequence
first, class/register tokens or none, conv maps or flattened patches) comes from the one description of a
tower's anatomy in `tokens.backbones`; the prefix tokens are left out, so only the patch tokens are compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .errors import UserError
from .fileio import atomic_path
from .tokens.backbones import Anatomy, block_patch_tokens, locate, patch_tokens, vision_tower

PURPOSE = "Layer analysis"
POOLINGS = ("mean", "token")
PATCH_EMBEDDING = "patch embedding"


@dataclass
class LayerSimilarity:
    table: pd.DataFrame  # layer, depth, then one column per low resolution (mean cosine similarity)
    model: str
    dataset: str
    native: int
    resolutions: list[int]
    n_images: int
    n_skipped: int
    pooling: str
    protocol: str


class _Probe:
    """Forward hooks that reduce each layer's patch tokens to a native-vs-low cosine per image on the fly,
    so memory stays small whatever the model depth."""

    def __init__(self, anatomy: Anatomy, views: int, pooling: str):
        self.anatomy, self.views, self.pooling = anatomy, views, pooling
        self.sums: dict[str, torch.Tensor] = {}
        self.names = [PATCH_EMBEDDING] + [f"block {i + 1}" for i in range(anatomy.num_blocks)]
        self.handles = [anatomy.patch_embed.register_forward_hook(self._hook(PATCH_EMBEDDING, patch_tokens))]
        for name, block in zip(self.names[1:], anatomy.blocks):
            self.handles.append(block.register_forward_hook(self._hook(name, block_patch_tokens)))

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()

    def _record(self, name: str, tokens: torch.Tensor) -> None:
        # tokens: (images * views, patches, width), views of one image adjacent, native first.
        tokens = tokens.float().reshape(-1, self.views, *tokens.shape[1:])
        native, low = tokens[:, :1], tokens[:, 1:]
        if self.pooling == "mean":
            similarity = F.cosine_similarity(native.mean(2), low.mean(2), dim=-1)
        else:
            similarity = F.cosine_similarity(native, low, dim=-1).mean(-1)
        total = similarity.sum(0).cpu().double()  # (views - 1,)
        self.sums[name] = self.sums[name] + total if name in self.sums else total

    def _hook(self, name: str, read):
        def hook(module, inputs, output) -> None:
            self._record(name, read(output, self.anatomy))
        return hook


def layer_similarity(model: str, dataset: str, resolutions: str | Sequence[int | str] | None = None, *,
                     limit: int | None = 256, weights: str | None = None, data_root: str | None = None,
                     split: str | None = None, protocol: str = "canonical", pooling: str = "mean",
                     batch_size: int = 32, device: str = "auto", loaded=None) -> LayerSimilarity:
    """Mean cosine similarity between native and low-resolution patch-token features, layer by layer.

    The patch embedding and every block of the image tower (`tokens.backbones.locate`) are hooked while
    `encode_image` runs; each hook reads the patch tokens (`patch_tokens`, `block_patch_tokens`) and keeps
    only the running sums of the cosines.

    Args:
        resolutions: low resolutions (default: the model's sweep); "native" is always the reference.
        loaded: an already loaded ZeroShotModel to use instead of loading `model` (its spec is reported).
        The others: as for `lr0fm.api.layer_similarity`.

    Raises:
        UserError: a model without a ViT image tower, bad options, or no readable image.
    """
    from . import loader
    from .data import load_dataset
    from .degrade import ViewMaker, to_rgb
    from .device import resolve_device
    from .models import parse_spec
    from .resolution import check_below, default_sweep, parse_resolutions

    if pooling not in POOLINGS:
        raise UserError(f"Unknown pooling {pooling!r}; use mean or token.")
    if batch_size <= 0:
        raise UserError("--batch-size must be positive.")
    requested = parse_resolutions(resolutions)
    if loaded is None:
        spec = parse_spec(model, weights)
        loader.check(spec)
    torch_device = resolve_device(device)
    data = load_dataset(dataset, data_root, split).limit(limit)
    if loaded is None:
        loaded = loader.load(spec, str(torch_device))
    else:
        loaded.to(torch_device)
    anatomy = locate(vision_tower(loaded, PURPOSE), loaded.spec, PURPOSE)
    native = loaded.image_size
    if requested is not None:
        check_below(requested, native)
    low = [r for r in (requested or default_sweep(native)) if not r.is_native]
    if not low:
        raise UserError("Give at least one low resolution, e.g. --resolutions 16,8.")
    maker = ViewMaker(protocol, native, ["native", *low], loaded.family)

    probe = _Probe(anatomy, 1 + len(low), pooling)
    used = skipped = 0
    try:
        with torch.inference_mode():
            for start in range(0, len(data), batch_size):
                views = []
                for index in range(start, min(start + batch_size, len(data))):
                    try:
                        views.append(maker(to_rgb(data.read_image(index))))
                    except Exception:  # an unreadable image is skipped and counted, as in eval
                        skipped += 1
                if not views:
                    continue
                pixels = torch.stack(views).flatten(0, 1).to(torch_device).float().div_(255)
                loaded.encode_image(pixels)  # the hooks record every layer on the way
                used += len(views)
    finally:
        probe.close()
    if not used:
        raise UserError(f"No image of {dataset} could be read; check the dataset files.")

    table = pd.DataFrame({"layer": probe.names, "depth": np.arange(len(probe.names))})
    for position, resolution in enumerate(low):
        table[str(resolution)] = [float(probe.sums[name][position] / used) for name in probe.names]
    return LayerSimilarity(table, loaded.spec, dataset, native, [r.pixels for r in low], used, skipped, pooling,
                           protocol)


def plot_layer_similarity(result: LayerSimilarity, path: str | Path) -> Path:
    """Cosine similarity against depth, one line per low resolution, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path).expanduser()
    figure = Figure(figsize=(6.4, 3.8), dpi=110)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    for resolution in result.resolutions:
        ax.plot(result.table["depth"], result.table[str(resolution)], marker="o", label=f"{resolution} px")
    ax.set_xticks(result.table["depth"])
    ax.set_xticklabels(["embed" if d == 0 else str(d) for d in result.table["depth"]])
    ax.set_xlabel("layer (patch embedding, then transformer blocks)")
    ax.set_ylabel("cosine similarity to native")
    ax.set_title(f"{result.model} · {result.dataset}: native {result.native} px vs low resolution\n"
                 f"({result.pooling} pooling, {result.n_images} images)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)  # never over the lines
    figure.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    except OSError as error:
        raise UserError(f"Cannot write {path} ({error}); pass a writable path to --plot.") from None
    return path
