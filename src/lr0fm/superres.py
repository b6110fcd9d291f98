"""A super-resolution front end in place of the bicubic up-step: the baseline LR-TK0 is compared with.

A spec `SPEC+sr=FILE` names a super-resolution network the user brings (Real-ESRGAN, SwinIR, HAT, ... as a
.pth or .safetensors file); spandrel (`pip install 'lr0fm[sr]'`) reads the file and tells its architecture
and scale. `SRModel` puts that network in front of the model's image tower, one layer above `models/` as
LR-TK0 tokens are:

    native view        the native crop, as for the plain model (never through the network)
    resolution r       the r x r image (`degrade.low_images`) -> network (r * scale px, float32)
                       -> the protocol's up-step to native (`degrade.up_step`) -> rounded to 8 bits

The executors hand such a model the true r x r images rather than views already brought to native size
(`ZeroShotModel.upsamples_low_views`, `degrade.ViewMaker.split(upsample=False)`). The file's sha256 enters
the model's fingerprint, so results of different files never mix, and the run's provenance
(`SRModel.super_resolution`).

    >>> model = lr0fm.load_model("lr0fm-tiny+sr=RealESRGAN_x4plus.pth")
    >>> model.net.architecture, model.net.scale
    ('RealESRGAN', 4)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .degrade import up_step
from .errors import UserError
from .models import ZeroShotModel
from .models.spec import SR_MARK

# The file types spandrel reads (ModelLoader.load_state_dict_from_file).
SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
INSTALL = "pip install 'lr0fm[sr]'"


def _spandrel():
    try:
        import spandrel
    except ImportError:
        raise UserError(f"Super-resolution models (+sr=FILE) are read by spandrel, which is not installed; "
                        f"run {INSTALL} (or pip install spandrel) and rerun.") from None
    return spandrel


@dataclass(frozen=True)
class SRNetwork:
    """A super-resolution network read from a user's file.

    Attributes:
        descriptor: spandrel's `ImageModelDescriptor` (the network, its architecture and scale).
        path: the file, as the spec names it.
        sha256: the file's sha256.
    """

    descriptor: Any
    path: str
    sha256: str

    @property
    def module(self) -> torch.nn.Module:
        return self.descriptor.model

    @property
    def architecture(self) -> str:
        return self.descriptor.architecture.name

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)

    def record(self) -> dict:
        """What a run's provenance keeps of the network."""
        return {"file": str(Path(self.path).expanduser().resolve()), "sha256": self.sha256,
                "architecture": self.descriptor.architecture.id, "scale": self.scale, "tags": list(self.descriptor.tags),
                "parameters": sum(p.numel() for p in self.module.parameters())}


def check_sr(path: str | Path) -> None:
    """The checks of an SR file that read no weights: spandrel is installed, the file exists and is of a
    type spandrel reads.

    Raises:
        UserError: naming what is wrong and what to do.
    """
    _spandrel()
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"Super-resolution file {file} does not exist; pass the path of a super-resolution "
                        "network's weights (Real-ESRGAN, SwinIR, HAT and others) as SPEC+sr=FILE.")
    if file.suffix.lower() not in SUFFIXES:
        raise UserError(f"Super-resolution file {file} is not a {', '.join(SUFFIXES)} file; pass the network's "
                        "weights as one of those.")


def read_sr(path: str | Path) -> SRNetwork:
    """Read a super-resolution network with spandrel (on the CPU, float32, eval mode) and check that it is one.

    Raises:
        UserError: spandrel is missing, the file is missing or unreadable, or it holds no RGB image
            super-resolution network of scale 2 or more (e.g. a denoiser, an inpainting model).
    """
    check_sr(path)
    spandrel = _spandrel()
    file = Path(path).expanduser()
    try:
        descriptor = spandrel.ModelLoader("cpu").load_from_file(file)
    except Exception as error:  # unsupported architecture, a damaged file, a refused pickle, ...
        why = str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__
        raise UserError(f"Super-resolution file {file} is not a network spandrel can read ({why}); pass the "
                        "weights of an architecture spandrel supports (Real-ESRGAN, SwinIR, HAT and others).") from None
    name = descriptor.architecture.name
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise UserError(f"Super-resolution file {file} holds a {name} {descriptor.purpose} model, not an "
                        "image-to-image network; pass a super-resolution model (scale 2x or more).")
    if descriptor.scale < 2:
        raise UserError(f"Super-resolution file {file} holds a {name} {descriptor.purpose} model of scale "
                        f"{descriptor.scale}x, which does not up-sample; pass a super-resolution model (2x, 4x or more).")
    if (descriptor.input_channels, descriptor.output_channels) != (3, 3):
        raise UserError(f"Super-resolution file {file} holds a {name} model for {descriptor.input_channels}-channel "
                        f"images in and {descriptor.output_channels} out; pass an RGB super-resolution model.")
    descriptor.model.float().eval().requires_grad_(False)
    return SRNetwork(descriptor, str(path), _sha256(file))


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class SRModel(ZeroShotModel):
    """A ZeroShotModel whose low-resolution images go through a super-resolution network before its image
    tower; text, logit scale and native views are the wrapped model's own.

    `encode_image` takes native-size pixels (passed on untouched) or r x r pixels, which it brings to native
    size itself (`upscale`).
    """

    upsamples_low_views = True
    max_pixels = 1 << 22  # network output pixels per forward pass (16 images at 512 x 512): bounds its memory

    def __init__(self, inner: ZeroShotModel, net: SRNetwork):
        self.inner = inner
        self.net = net
        self.spec = f"{inner.spec}{SR_MARK}{net.path}"
        self.family = inner.family
        self.image = inner.image
        self.logit_scale = inner.logit_scale
        self.logit_bias = inner.logit_bias
        self.accepts_source_resolution = inner.accepts_source_resolution
        self.module = torch.nn.ModuleDict({"model": inner.module, "sr": net.module})  # `.to` moves both
        net.module.to(inner.device)

    @property
    def super_resolution(self) -> dict:
        """The network's file, sha256, architecture and scale, for the run's provenance."""
        return self.net.record()

    def upscale(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, r, r) pixels in [0, 1] -> (B, 3, n, n) in [0, 1]: the network's output (r * scale px) brought
        to native size by the protocol's up-step, rounded to 8 bits as every view is. Float32 whatever the
        autocast around it, in chunks of at most `max_pixels` output pixels."""
        native, scale = self.image_size, self.net.scale
        per_image = pixels.shape[-2] * pixels.shape[-1] * scale * scale
        chunk = max(1, self.max_pixels // per_image)
        parts = []
        with torch.autocast(pixels.device.type, enabled=False):
            for images in pixels.float().split(chunk):
                sharp = self.net.descriptor(images)  # in [0, 1], (b, 3, r * scale, r * scale)
                parts.append(up_step(sharp * 255, native).round_().clamp_(0, 255))
        return torch.cat(parts).div_(255)

    def encode_image(self, pixels: torch.Tensor, source_resolution=None) -> torch.Tensor:
        """Pixels in [0, 1] -> embeddings; anything but native size goes through `upscale` first.
        `source_resolution` goes to a wrapped model that takes it (resolution-conditioned tokens)."""
        if tuple(pixels.shape[-2:]) != (self.image_size, self.image_size):
            pixels = self.upscale(pixels)
        if self.accepts_source_resolution:
            return self.inner.encode_image(pixels, source_resolution=source_resolution)
        return self.inner.encode_image(pixels)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.inner.encode_text(texts)

    def fingerprint(self) -> str:
        # The wrapped model's weights and the SR file's bytes: another file is another model.
        return hashlib.sha256(f"{self.inner.fingerprint()}+sr:{self.net.sha256}".encode()).hexdigest()[:16]


__all__ = ["SRModel", "SRNetwork", "check_sr", "read_sr"]
