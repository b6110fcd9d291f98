"""The one interface every backend implements: a zero-shot image-text model."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

# Normalisation constants shared by many families.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ImageConfig:
    """How a model wants its pixels: native square size and the normalisation of [0, 1] input."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class ZeroShotModel(ABC):
    """A frozen image-text model, ready for zero-shot classification.

    `encode_image` takes float pixels in [0, 1], shape (B, 3, size, size), and normalises them itself,
    so resolution protocols never need to know a model's mean/std.
    """

    spec: str  # the canonical spec this model was loaded from, e.g. "openclip:ViT-B-32/openai"
    family: str  # the model family, which picks the `paper` protocol (see degrade.py)
    image: ImageConfig
    module: torch.nn.Module  # everything whose weights define the model's outputs
    logit_scale: float = 100.0
    logit_bias: float = 0.0  # SigLIP's sigmoid head; does not change rankings
    # True for models whose encode_image takes `source_resolution=` (the side in pixels each image had
    # before it was brought to native size); the executor passes it only to them.
    accepts_source_resolution: bool = False
    # True for models that make their own up-step (a super-resolution front end): the executor hands them
    # each low resolution as the r x r image itself, not brought back to native size.
    upsamples_low_views: bool = False
    # What a run's provenance records of such a front end (file, sha256, architecture, scale), or None.
    super_resolution: dict | None = None

    @property
    def image_size(self) -> int:
        return self.image.size

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.image.mean, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.image.std, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        return (pixels - mean) / std

    @abstractmethod
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, size, size) pixels in [0, 1] -> (B, D) embeddings (not necessarily normalised)."""

    @abstractmethod
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """A list of strings -> (len, D) embeddings (not necessarily normalised)."""

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def to(self, device: str | torch.device) -> "ZeroShotModel":
        self.module.to(device)
        return self

    _fingerprint: str | None = None

    def fingerprint(self) -> str:
        """A hash of every weight that shapes the outputs; two loads of the same weights agree."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint_module(self.module)
        return self._fingerprint


def fingerprint_module(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
