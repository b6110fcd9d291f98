"""Resolution protocols: the native and low-resolution views of one image.

A sweep shows a model each image at its native size n and at low resolutions r < n: the image is brought
down to r x r, then back up to n x n. `ViewMaker` decodes nothing and loads no model; it turns one PIL
image into a uint8 tensor (V, 3, n, n) holding every requested view, in the order asked for.

Two protocols:

* ``canonical``: one native crop (short side to n, centre crop), and every low resolution derived from that
  crop (antialiased bicubic down to r x r, bicubic up to n x n, in float). All views show the same content,
  so accuracy differences come from resolution alone.
* ``paper``: the LR0.FM authors' per-family pipelines, so the paper's numbers can be reproduced. Some
  families resize the short side and centre-crop, others stretch the whole image to a square.

Where the views are made. `ViewMaker.split` divides the work between the DataLoader workers and the
process that receives their batches:

    worker, finish = ViewMaker(protocol, native, resolutions, family).split(on_device=device.type == "cuda")
    dataset item:    worker(image)                              # uint8 (V', 3, n, n), in a worker
    received batch:  finish(batch.to(device))                   # uint8 (B, V, 3, n, n), on the device

For the canonical protocol on an accelerator the workers make only the native crop (V' = 1) and `finish`
derives every low resolution from the batch of crops on the device (`low_views`); otherwise the workers
make every view and `finish` returns the batch as it is. Both sides call `low_views`, so on the CPU the
split changes no byte; an accelerator computes the same float sums with its own kernels, which can move a
value lying within rounding of a half by one grey level. The paper protocol always stays in PIL in the
workers, bit-equal to torchvision's PIL pipeline.

A model that makes its own up-step (a super-resolution front end, `lr0fm.superres`) is split with
`upsample=False`: the workers send native crops, and `finish` gives each low resolution as the r x r image
itself (`low_images`), one tensor per resolution, for the model to bring to native size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import UserError
from .resolution import Resolution, check_below, parse_resolutions

PROTOCOLS: dict[str, str] = {
    "canonical": "short side to native + centre crop; each low resolution made from that crop "
    "(antialiased bicubic down to r x r, bicubic back up, in float); every view shows the same content",
    "paper": "the LR0.FM authors' per-family pipelines (torchvision bicubic Resize on PIL): short side + "
    "centre crop for CLIP/MetaCLIP/EVA/CLIPA/CoCa, square stretch for OpenCLIP/SigLIP/EVA-8B/ALBEF/M2/BLIP",
}

# Which resize path the authors' evaluation code takes per family (github.com/shyammarjit/LR0.FM):
#   shortside: Resize(r) -> Resize(n) -> CenterCrop(n); native Resize(n) -> CenterCrop(n)
#     clip      CLIP/clip/clip.py::resolution_transform
#     metaclip  MetaCLIP/src/open_clip_local/transform.py::image_transform
#     eva       EVA/EVA-CLIP/rei/data/__init__.py::create_dataset_zero_shot (enable_resize=True)
#     clipa     CLIPA/clipa_torch/data/__init__.py
#     coca      CLIP_benchmark/data/__init__.py, model_name "coca"
#   stretch: Resize((r, r)) -> Resize((n, n)); native Resize((n, n)); no crop
#     openclip  CLIP_benchmark/data/__init__.py "openclip"; open_clip/src/data/__init__.py (LR-TK0 eval)
#     siglip    CLIP_benchmark/data/__init__.py "siglip"
#     eva8b     EVA/EVA-CLIP-18B/shinji/data/__init__.py
#     albef     ALBEF/data/__init__.py
#     m2        Ant-Multi-Modal-Framework/prj/M2_Encoder/data/__init__.py
#     blip      eval code not released; assumed to follow ALBEF, its predecessor
#     tiny      this package's bundled model, evaluated like OpenCLIP
PAPER_PIPELINES: dict[str, str] = {
    "clip": "shortside",
    "metaclip": "shortside",
    "eva": "shortside",
    "clipa": "shortside",
    "coca": "shortside",
    "openclip": "stretch",
    "siglip": "stretch",
    "eva8b": "stretch",
    "albef": "stretch",
    "m2": "stretch",
    "blip": "stretch",
    "tiny": "stretch",
}

# Families the paper never measured get the generic harness path (CLIP_benchmark's "openclip").
DEFAULT_PAPER_PIPELINE = "stretch"


def paper_pipeline(family: str) -> str:
    """"shortside" or "stretch": the resize path the paper's code uses for `family`.

    An unknown family gets "stretch", the path of the authors' generic harness; use the canonical
    protocol for models the paper did not evaluate.
    """
    return PAPER_PIPELINES.get(family.strip().lower(), DEFAULT_PAPER_PIPELINE)


# --------------------------------------------------------------------------------------------------
# Colour conversion

_WHITE = (255, 255, 255, 255)
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB.

    * Transparency (RGBA, LA, PA, premultiplied RGBa/La, palette or colour-key transparency) is composited
      onto white: hidden colour under alpha 0 is arbitrary (often black), and white is how viewers and
      product photos show it. Fully opaque images keep their pixels exactly.
    * 16-bit ("I;16*") and 32-bit integer ("I") greyscale is read as 0..65535 and scaled to 0..255 (Pillow's
      own convert clips everything above 255 to white).
    * Float ("F") is read as 0..1 if every value lies in [0, 1], otherwise as 0..255 (Pillow's scale), clipped.
    * LAB goes through an ICC transform; other modes (L, 1, P, CMYK, YCbCr, HSV, RGBX) use Pillow's convert.
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in _SIXTEEN_BIT:
        values = np.asarray(image).astype(np.float64)
        grey = np.clip(np.rint(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "LAB":
        return _lab_to_rgb(image)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] == 255:
            return rgba.convert("RGB")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise UserError(
            f"Image mode {mode!r} cannot be converted to RGB ({error}); convert the file to RGB first."
        ) from error


def _has_alpha(image: Image.Image) -> bool:
    """Alpha channel, palette with alpha, or a transparency key in the metadata."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return True
    return image.mode == "P" and image.palette is not None and image.palette.mode == "RGBA"


def _lab_to_rgb(image: Image.Image) -> Image.Image:
    try:
        from PIL import ImageCms
    except ImportError as error:  # Pillow built without LittleCMS
        raise UserError(f"LAB images need Pillow with LittleCMS ({error}); convert the file to RGB first.") from error
    transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
    return ImageCms.applyTransform(image, transform)


# --------------------------------------------------------------------------------------------------
# Resizing, mirroring torchvision's arithmetic on PIL images (Resize, CenterCrop)

_BICUBIC = Image.Resampling.BICUBIC


def _resize_short_side(image: Image.Image, size: int) -> Image.Image:
    """torchvision Resize(size): short side to `size`, long side truncated (int), not rounded."""
    width, height = image.size
    if width <= height:
        target = (size, int(size * height / width))
    else:
        target = (int(size * width / height), size)
    return image if target == image.size else image.resize(target, _BICUBIC)


def _resize_square(image: Image.Image, size: int) -> Image.Image:
    """torchvision Resize((size, size)): stretch to a square, aspect ratio not kept."""
    return image if image.size == (size, size) else image.resize((size, size), _BICUBIC)


def _center_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision CenterCrop(size) on an image at least `size` on each side (Python's round, half to even)."""
    width, height = image.size
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 (3, H, W)."""
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()


class ViewMaker:
    """Turns one image into the uint8 views (V, 3, n, n) of a resolution sweep.

    Holds only plain values, so it pickles into DataLoader workers.
    """

    def __init__(self, protocol: str, native: int, resolutions: Sequence[Resolution | int | str], family: str = "openclip"):
        if protocol not in PROTOCOLS:
            raise UserError(f"Unknown protocol {protocol!r}; use one of: {', '.join(PROTOCOLS)}.")
        if int(native) <= 0:
            raise UserError(f"Native size {native} must be a positive number of pixels.")
        self.protocol = protocol
        self.native = int(native)
        self.resolutions = parse_resolutions(resolutions)
        check_below(self.resolutions, self.native)
        self.family = family
        self.pipeline = paper_pipeline(family) if protocol == "paper" else "canonical"

    def __repr__(self) -> str:
        return (
            f"ViewMaker(protocol={self.protocol!r}, native={self.native}, resolutions={self.resolutions!r}, "
            f"family={self.family!r}, pipeline={self.pipeline!r})"
        )

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = to_rgb(image)
        if self.pipeline == "canonical":
            return self._canonical(image)
        if self.pipeline == "shortside":
            views = [self._shortside(image, r) for r in self.resolutions]
        else:
            views = [self._stretch(image, r) for r in self.resolutions]
        return torch.stack(views)

    def split(self, on_device: bool, upsample: bool = True) -> tuple[ViewMaker, DeviceViews]:
        """(what the DataLoader workers call on each image, what runs on each batch they send).

        With `on_device` (the model runs on an accelerator) and the canonical protocol, the workers make only
        the native crop and the returned `DeviceViews` makes the low resolutions from the batch of crops
        where it lies. Otherwise the workers make every view (this maker itself) and `DeviceViews` is the
        identity. The worker side is a ViewMaker too: its `resolutions` say how many views it makes.

        With `upsample` False (a model that makes its own up-step) the workers make only the native crop
        wherever the model runs, and `DeviceViews` gives the low resolutions as r x r images (`low_images`).

        Raises:
            ValueError: `upsample` False with the paper protocol, whose low images are not square crops.
        """
        if not upsample:
            if self.pipeline != "canonical":
                raise ValueError("views without the up-step exist for the canonical protocol only")
            return ViewMaker("canonical", self.native, ["native"], self.family), DeviceViews(self.resolutions, False)
        if on_device and self.pipeline == "canonical":
            return ViewMaker("canonical", self.native, ["native"], self.family), DeviceViews(self.resolutions)
        return self, DeviceViews(None)

    def _canonical(self, image: Image.Image) -> torch.Tensor:
        n = self.native
        crop = _to_tensor(_center_crop(_resize_short_side(image, n), n))
        return low_views(crop.unsqueeze(0), self.resolutions)[0]

    def _shortside(self, image: Image.Image, resolution: Resolution) -> torch.Tensor:
        n = self.native
        if not resolution.is_native:
            image = _resize_short_side(image, resolution.pixels)
        return _to_tensor(_center_crop(_resize_short_side(image, n), n))

    def _stretch(self, image: Image.Image, resolution: Resolution) -> torch.Tensor:
        if not resolution.is_native:
            image = _resize_square(image, resolution.pixels)
        return _to_tensor(_resize_square(image, self.native))


def low_views(crops: torch.Tensor, resolutions: Sequence[Resolution | int | str]) -> torch.Tensor:
    """The canonical views of a batch of native crops: uint8 (B, 3, n, n) -> uint8 (B, V, 3, n, n).

    Each low resolution r is the crop brought down to r x r and back up to n x n, both steps antialiased
    bicubic in float32 (torch's antialiased bicubic: the same Keys a=-0.5 cubic as PIL's bicubic, which made
    the crop, with the low-pass filter that keeps the down step from aliasing), no uint8 rounding in between,
    then rounded half to even and clamped to 0..255. "native" is the crop itself. Views come in
    `resolutions` order ("native" first, as `parse_resolutions` puts it), on the crops' device.

    `ViewMaker` calls this on one crop in a worker, `DeviceViews` on a whole batch on the model's device.
    On the CPU a batch gives the same bytes as its images one at a time: each image and channel is resampled
    on its own, with the same weights, summed in the same order.
    """
    if crops.dim() != 4 or crops.dtype != torch.uint8 or crops.shape[-1] != crops.shape[-2]:
        raise ValueError(f"low_views needs uint8 crops (B, C, n, n), not {crops.dtype} {tuple(crops.shape)}")
    resolutions = parse_resolutions(resolutions)
    n = crops.shape[-1]
    check_below(resolutions, n)
    # One uint8 result written in place: no per-view tensors to stack, no float view kept past its rounding.
    views = torch.empty((crops.shape[0], len(resolutions), *crops.shape[1:]), dtype=torch.uint8, device=crops.device)
    pixels = None
    for position, resolution in enumerate(resolutions):
        if resolution.is_native:
            views[:, position] = crops
            continue
        if pixels is None:
            pixels = crops.float().contiguous()  # NCHW whatever the layout sent, so every path sums alike
        back = up_step(down_step(pixels, resolution.pixels), n)
        views[:, position] = back.round_().clamp_(0, 255)  # whole numbers in 0..255: the uint8 cast is exact
    return views


def down_step(pixels: torch.Tensor, side: int) -> torch.Tensor:
    """The canonical protocol's down-step: float (B, C, n, n) -> float (B, C, side, side), antialiased bicubic."""
    return F.interpolate(pixels, size=(side, side), mode="bicubic", antialias=True)


def up_step(pixels: torch.Tensor, native: int) -> torch.Tensor:
    """The canonical protocol's up-step: float (B, C, r, r) -> float (B, C, native, native), antialiased
    bicubic (the same resize whatever r is; a super-resolution model's output goes through it too)."""
    return F.interpolate(pixels, size=(native, native), mode="bicubic", antialias=True)


def low_images(crops: torch.Tensor, resolutions: Sequence[Resolution | int | str]) -> list[torch.Tensor]:
    """The low-resolution images of a batch of native crops, before any up-step: uint8 (B, 3, n, n) -> one
    uint8 (B, 3, r, r) per resolution, in `resolutions` order ("native": the crop itself).

    Each is the crop brought down by `down_step` (as in `low_views`), rounded half to even and clamped to
    0..255: the r x r picture as an 8-bit file of it would hold it. What a super-resolution front end sees.
    """
    if crops.dim() != 4 or crops.dtype != torch.uint8 or crops.shape[-1] != crops.shape[-2]:
        raise ValueError(f"low_images needs uint8 crops (B, C, n, n), not {crops.dtype} {tuple(crops.shape)}")
    resolutions = parse_resolutions(resolutions)
    check_below(resolutions, crops.shape[-1])
    pixels = crops.float().contiguous()
    return [crops if r.is_native else down_step(pixels, r.pixels).round_().clamp_(0, 255).to(torch.uint8)
            for r in resolutions]


class DeviceViews:
    """The views left to make after the DataLoader, on the batch where it lies (`ViewMaker.split`).

    Called on the uint8 batch the workers sent, (B, V', 3, n, n), it returns the uint8 views (B, V, 3, n, n)
    of the maker it was split from. With `resolutions` None the workers made every view and the batch is
    returned as it is; otherwise the batch holds the native crops (V' = 1) and `low_views` makes the rest.
    With `upsample` False it returns a list instead, one uint8 (B, 3, r, r) image batch per resolution
    (`low_images`), for a model that makes its own up-step. Holds only plain values.
    """

    def __init__(self, resolutions: Sequence[Resolution | int | str] | None, upsample: bool = True):
        self.resolutions = None if resolutions is None else parse_resolutions(resolutions)
        self.upsample = upsample

    def __repr__(self) -> str:
        return f"DeviceViews(resolutions={self.resolutions!r}, upsample={self.upsample})"

    @property
    def identity(self) -> bool:
        """True when the workers made every view and nothing is left to do."""
        return self.resolutions is None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.resolutions is None:
            return batch
        if batch.dim() != 5 or batch.shape[1] != 1:
            raise ValueError(f"DeviceViews needs a batch of native crops (B, 1, C, n, n), not {tuple(batch.shape)}")
        with torch.autocast(batch.device.type, enabled=False):  # float32 resampling inside a model's autocast
            make = low_views if self.upsample else low_images
            return make(batch[:, 0], self.resolutions)


__all__ = ["PROTOCOLS", "PAPER_PIPELINES", "DeviceViews", "ViewMaker", "down_step", "low_images", "low_views",
           "paper_pipeline", "to_rgb", "up_step"]
