import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from lr0fm.degrade import (
    PAPER_PIPELINES,
    PROTOCOLS,
    ViewMaker,
    low_views,
    paper_pipeline,
    to_rgb,
)
from lr0fm.errors import UserError

BICUBIC = T.InterpolationMode.BICUBIC
SWEEP = ["native", 128, 64, 32, 16]


def texture(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like test card: smooth colour gradients, fine stripes and a little noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rng = np.random.default_rng(seed)
    red = 255 * x / max(width - 1, 1)
    green = 127.5 + 127.5 * np.sin(x / 3.0 + y / 5.0)  # high frequency: aliases unless filtered
    blue = 255 * ((x // 16 + y // 16) % 2) * 0.6 + 50 * y / max(height - 1, 1)
    pixels = np.stack([red, green, blue], axis=-1) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return texture(317, 211)


@pytest.fixture(scope="module")
def fashion() -> Image.Image:
    from lr0fm.data.fashion_mnist import FashionMNIST

    return FashionMNIST().load_image(0)


def as_uint8(image: Image.Image) -> torch.Tensor:
    return T.PILToTensor()(image)


def reference_paper(image: Image.Image, family_path: str, native: int, resolution) -> torch.Tensor:
    """The authors' transforms, written out with torchvision as their scripts do."""
    if family_path == "shortside":
        steps = [] if resolution == "native" else [T.Resize(resolution, interpolation=BICUBIC)]
        steps += [T.Resize(native, interpolation=BICUBIC), T.CenterCrop(native)]
    else:
        steps = [] if resolution == "native" else [T.Resize((resolution, resolution), interpolation=BICUBIC)]
        steps += [T.Resize((native, native), interpolation=BICUBIC)]
    return as_uint8(T.Compose(steps)(image))


def reference_canonical(image: Image.Image, native: int, resolution) -> torch.Tensor:
    """Short side to native with PIL bicubic, centre crop, then float bicubic down and up."""
    width, height = image.size
    scale = native / min(width, height)
    size = (native, int(height * scale)) if width <= height else (int(width * scale), native)
    resized = image.resize(size, Image.Resampling.BICUBIC) if size != image.size else image
    left = int(round((size[0] - native) / 2))
    top = int(round((size[1] - native) / 2))
    crop = torch.from_numpy(np.array(resized.crop((left, top, left + native, top + native)))).permute(2, 0, 1)
    if resolution == "native":
        return crop
    pixels = crop[None].float()
    small = F.interpolate(pixels, size=(resolution, resolution), mode="bicubic", antialias=True)
    back = F.interpolate(small, size=(native, native), mode="bicubic", antialias=True)
    return back.round().clamp(0, 255).byte()[0]


def max_diff(a: torch.Tensor, b: torch.Tensor) -> int:
    return int((a.int() - b.int()).abs().max())


# ---------------------------------------------------------------------------------------------- paper


@pytest.mark.parametrize("family", ["clip", "openclip"])
def test_paper_matches_torchvision_on_photo(photo, family):
    views = ViewMaker("paper", 224, SWEEP, family)(photo)
    path = PAPER_PIPELINES[family]
    for index, resolution in enumerate(SWEEP):
        assert max_diff(views[index], reference_paper(photo, path, 224, resolution)) == 0, (family, resolution)


@pytest.mark.parametrize("family", ["eva", "siglip"])
@pytest.mark.parametrize("native", [32, 224])
def test_paper_matches_torchvision_on_fashion_mnist(fashion, family, native):
    resolutions = ["native", 16, 8] if native == 32 else SWEEP
    views = ViewMaker("paper", native, resolutions, family)(fashion)
    path = paper_pipeline(family)
    for index, resolution in enumerate(resolutions):
        assert max_diff(views[index], reference_paper(fashion, path, native, resolution)) == 0, resolution


def test_paper_portrait_and_odd_native():
    portrait = texture(123, 301, seed=3)  # odd margins exercise CenterCrop's rounding
    views = ViewMaker("paper", 97, ["native", 33, 7], "metaclip")(portrait)
    for index, resolution in enumerate(["native", 33, 7]):
        assert max_diff(views[index], reference_paper(portrait, "shortside", 97, resolution)) == 0


def test_family_table():
    shortside = {"clip", "metaclip", "eva", "clipa", "coca"}
    stretch = {"openclip", "siglip", "eva8b", "albef", "m2", "blip", "tiny"}
    assert set(PAPER_PIPELINES) == shortside | stretch
    assert all(paper_pipeline(f) == "shortside" for f in shortside)
    assert all(paper_pipeline(f) == "stretch" for f in stretch)
    assert paper_pipeline("CLIP") == "shortside"
    assert paper_pipeline("some-new-family") == "stretch"


def test_paper_stretch_and_shortside_differ_on_non_square(photo):
    crop = ViewMaker("paper", 64, ["native"], "clip")(photo)
    stretch = ViewMaker("paper", 64, ["native"], "openclip")(photo)
    assert max_diff(crop, stretch) > 20


# ------------------------------------------------------------------------------------------ canonical


def test_canonical_matches_reference(photo, fashion):
    for image, native, resolutions in [(photo, 224, SWEEP), (fashion, 32, ["native", 24, 16, 8])]:
        views = ViewMaker("canonical", native, resolutions)(image)
        for index, resolution in enumerate(resolutions):
            assert max_diff(views[index], reference_canonical(image, native, resolution)) <= 1, resolution


def test_canonical_native_equals_paper_shortside_native(photo):
    canonical = ViewMaker("canonical", 224, ["native"])(photo)
    paper = ViewMaker("paper", 224, ["native"], "clip")(photo)
    assert torch.equal(canonical, paper)


def smooth_image(width: int = 317, height: int = 211) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width] / 100.0
    channels = [128 + 100 * np.sin(2 * x + y), 128 + 100 * np.cos(3 * y), 255 * x / (width / 100.0)]
    return Image.fromarray(np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8), "RGB")


@pytest.mark.parametrize("kind", ["smooth", "textured"])
def test_canonical_views_share_content(photo, kind):
    image = smooth_image() if kind == "smooth" else photo
    views = ViewMaker("canonical", 224, SWEEP)(image)
    native = views[0][None].float()
    for index, resolution in enumerate(SWEEP[1:], start=1):
        direct = F.interpolate(native, size=(resolution, resolution), mode="bicubic", antialias=True)
        again = F.interpolate(views[index][None].float(), size=(resolution, resolution), mode="bicubic", antialias=True)
        error = float((again - direct).abs().mean())
        # Yardstick: how far the direct down-sample is from itself shifted by one pixel.
        shifted = float((torch.roll(direct, 1, dims=3) - direct).abs().mean())
        if kind == "smooth":
            assert error < 0.5 and float((again - direct).abs().max()) < 3, resolution
        assert error < 0.4 * shifted, resolution
    # Lower resolution loses more detail.
    losses = [float((views[i].float() - views[0].float()).abs().mean()) for i in range(1, len(SWEEP))]
    assert losses == sorted(losses) and losses[0] > 0


def test_canonical_views_do_not_shift():
    # A bright square in the middle stays centred at every resolution (no half-pixel drift).
    image = Image.new("RGB", (300, 200), (0, 0, 0))
    image.paste((255, 255, 255), (118, 68, 182, 132))
    views = ViewMaker("canonical", 224, SWEEP)(image)
    for view in views:
        mass = view[0].float()
        ys, xs = torch.meshgrid(torch.arange(224.0), torch.arange(224.0), indexing="ij")
        assert abs(float((mass * ys).sum() / mass.sum()) - 111.5) < 0.5
        assert abs(float((mass * xs).sum() / mass.sum()) - 111.5) < 0.5


# ----------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("protocol,family", [("canonical", "openclip"), ("paper", "clip"), ("paper", "openclip")])
def test_shape_dtype_and_order(photo, protocol, family):
    forward = ViewMaker(protocol, 64, [48, 16, 32], family)(photo)
    backward = ViewMaker(protocol, 64, [32, 16, 48], family)(photo)
    assert forward.shape == (3, 3, 64, 64) and forward.dtype == torch.uint8
    assert torch.equal(forward[0], backward[2]) and torch.equal(forward[1], backward[1])
    with_native = ViewMaker(protocol, 64, [16, "native"], family)
    assert with_native.resolutions == ("native", "16")
    assert torch.equal(with_native(photo)[1], forward[1])


@pytest.mark.parametrize("protocol,family", [("canonical", "openclip"), ("paper", "clip"), ("paper", "openclip")])
@pytest.mark.parametrize("size", [(3, 50), (50, 3), (1, 40), (40, 1), (1, 1), (7, 5)])
def test_tiny_and_degenerate_images(protocol, family, size):
    image = texture(*size, seed=1)
    views = ViewMaker(protocol, 32, ["native", 16, 8, 2, 1], family)(image)
    assert views.shape == (5, 3, 32, 32) and views.dtype == torch.uint8


def test_uniform_image_stays_uniform():
    image = Image.new("RGB", (90, 60), (10, 200, 77))
    for protocol, family in [("canonical", "openclip"), ("paper", "clip"), ("paper", "openclip")]:
        views = ViewMaker(protocol, 32, ["native", 16, 3], family)(image)
        expected = torch.tensor([10, 200, 77], dtype=torch.uint8).view(1, 3, 1, 1)
        assert torch.equal(views, expected.expand_as(views))


def test_non_rgb_input_is_converted(fashion):
    maker = ViewMaker("canonical", 32, ["native", 16])
    assert torch.equal(maker(fashion.convert("L")), maker(fashion))


def test_view_maker_pickles(photo):
    maker = ViewMaker("paper", 64, ["native", 32, 16], "eva")
    clone = pickle.loads(pickle.dumps(maker))
    assert torch.equal(clone(photo), maker(photo))
    assert clone.pipeline == "shortside"


def test_unknown_protocol_lists_valid_names():
    with pytest.raises(UserError) as caught:
        ViewMaker("bilinear", 224, ["native"])
    for name in PROTOCOLS:
        assert name in str(caught.value)


def test_view_maker_validates_resolutions():
    with pytest.raises(UserError):
        ViewMaker("canonical", 224, ["native", 224])
    with pytest.raises(UserError):
        ViewMaker("canonical", 224, [])


# --------------------------------------------------------------------------------------- colour


def pixel(image: Image.Image, xy=(0, 0)) -> tuple:
    converted = to_rgb(image)
    assert converted.mode == "RGB" and converted.size == image.size
    return converted.getpixel(xy)


def test_rgb_passes_through(photo):
    assert to_rgb(photo) is photo


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_sixteen_bit_scales_instead_of_clipping(mode):
    values = np.array([[0, 32768, 65535, 255, 4112]], dtype=np.uint16)
    if mode == "I;16B":
        image = Image.frombytes(mode, (5, 1), values.astype(">u2").tobytes())
    elif mode == "I":
        image = Image.fromarray(values.astype(np.int32), "I")
    else:
        image = Image.fromarray(values)
    assert image.mode == mode
    got = [pixel(image, (x, 0)) for x in range(5)]
    assert got[0] == (0, 0, 0) and got[2] == (255, 255, 255)
    assert abs(got[1][0] - 128) <= 1 and got[1][0] == got[1][1] == got[1][2]
    assert got[3][0] == 1 and got[4][0] == 16


def test_sixteen_bit_png_round_trip(tmp_path):
    ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    with Image.open(tmp_path / "ramp.png") as opened:
        grey = np.asarray(to_rgb(opened))[..., 0]
    assert np.array_equal(grey, np.arange(256, dtype=np.uint8).reshape(16, 16))


def test_float_images():
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    assert [pixel(unit, (x, 0))[0] for x in range(3)] == [0, 128, 255]
    wide = Image.fromarray(np.array([[0.0, 100.0, 300.0, np.nan]], dtype=np.float32), "F")
    assert [pixel(wide, (x, 0))[0] for x in range(4)] == [0, 100, 255, 0]


def test_simple_modes():
    assert pixel(Image.new("L", (2, 2), 77)) == (77, 77, 77)
    assert pixel(Image.new("1", (2, 2), 1)) == (255, 255, 255)
    assert pixel(Image.new("1", (2, 2), 0)) == (0, 0, 0)
    assert pixel(Image.new("CMYK", (2, 2), (0, 255, 255, 0))) == (255, 0, 0)
    assert pixel(Image.new("CMYK", (2, 2), (0, 0, 0, 255))) == (0, 0, 0)
    palette = Image.new("RGB", (2, 2), (12, 34, 56)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert palette.mode == "P" and pixel(palette) == (12, 34, 56)
    ycbcr = Image.new("RGB", (2, 2), (200, 30, 30)).convert("YCbCr")
    assert max(abs(a - b) for a, b in zip(pixel(ycbcr), (200, 30, 30))) <= 3


def test_lab_goes_through_colour_management():
    from PIL import ImageCms

    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    lab = ImageCms.applyTransform(Image.new("RGB", (2, 2), (200, 30, 30)), to_lab)
    assert max(abs(a - b) for a, b in zip(pixel(lab), (200, 30, 30))) <= 3


def test_alpha_is_composited_onto_white():
    rgba = Image.new("RGBA", (3, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 255))  # opaque red stays red
    rgba.putpixel((1, 0), (0, 0, 0, 0))  # transparent black shows the white background
    rgba.putpixel((2, 0), (0, 0, 255, 128))  # half blue over white
    assert pixel(rgba, (0, 0)) == (255, 0, 0)
    assert pixel(rgba, (1, 0)) == (255, 255, 255)
    half = pixel(rgba, (2, 0))
    assert abs(half[0] - 127) <= 1 and abs(half[1] - 127) <= 1 and half[2] == 255
    assert pixel(Image.new("LA", (1, 1), (40, 0))) == (255, 255, 255)
    assert pixel(Image.new("LA", (1, 1), (40, 255))) == (40, 40, 40)


def test_opaque_alpha_keeps_pixels_exactly(photo):
    rgba = photo.convert("RGBA")
    assert np.array_equal(np.asarray(to_rgb(rgba)), np.asarray(photo))


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (4, 1))
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 128, 0] + [0] * (253 * 3))
    image.putdata([0, 1, 2, 0])
    image.info["transparency"] = 0  # palette entry 0 (black) is transparent
    assert pixel(image, (0, 0)) == (255, 255, 255)
    assert pixel(image, (1, 0)) == (255, 0, 0) and pixel(image, (2, 0)) == (0, 128, 0)
    # Same after a save/load through GIF and PNG, which carry the transparency differently.
    for name in ("p.gif", "p.png"):
        image.save(tmp_path / name, transparency=0)
        with Image.open(tmp_path / name) as opened:
            assert [pixel(opened, (x, 0)) for x in range(4)] == [
                (255, 255, 255), (255, 0, 0), (0, 128, 0), (255, 255, 255)
            ]


def test_palette_with_alpha_palette():
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 0, 0, 0, 200, 255], rawmode="RGBA")
    palette.putdata([0, 1])
    assert palette.palette.mode == "RGBA"
    assert pixel(palette, (0, 0)) == (255, 255, 255) and pixel(palette, (1, 0)) == (0, 0, 200)


# ------------------------------------------------------------------- where the views are made (split)


def varied_images(count: int = 12, seed: int = 5) -> list[Image.Image]:
    """Photo-like images of assorted sizes and shapes, tiny and portrait ones included."""
    rng = np.random.default_rng(seed)
    sizes = [(500, 375), (375, 500), (224, 224), (97, 301), (31, 30), (3, 50), (640, 427), (1, 1)]
    sizes += [(int(rng.integers(8, 700)), int(rng.integers(8, 700))) for _ in range(count - len(sizes))]
    return [texture(width, height, seed=seed + i) for i, (width, height) in enumerate(sizes[:count])]


def device_side(maker: ViewMaker, images: list[Image.Image], batch: int = 5) -> torch.Tensor:
    """The split path, run on the CPU: workers make what `split(on_device=True)` leaves them, and the
    batches they would send are finished after."""
    worker, finish = maker.split(on_device=True)
    sent = torch.stack([worker(image) for image in images])
    return torch.cat([finish(sent[i : i + batch]) for i in range(0, len(sent), batch)])


@pytest.mark.parametrize("native,resolutions", [(224, SWEEP + [8]), (32, ["native", 24, 16, 12, 8]), (28, [16, "native", 8])])
def test_split_on_device_gives_the_worker_views_bit_equal(native, resolutions):
    images = varied_images()
    maker = ViewMaker("canonical", native, resolutions)
    worker = torch.stack([maker(image) for image in images])
    assert torch.equal(device_side(maker, images), worker)


def test_split_views_are_the_written_out_reference_exactly():
    images = varied_images(count=6, seed=11)
    views = device_side(ViewMaker("canonical", 224, SWEEP), images, batch=4)
    for image, image_views in zip(images, views):
        for index, resolution in enumerate(SWEEP):
            assert torch.equal(image_views[index], reference_canonical(image, 224, resolution)), resolution


def test_split_worker_makes_only_the_native_crop(photo):
    maker = ViewMaker("canonical", 64, [16, 32])  # native not requested: the workers still send the crop
    worker, finish = maker.split(on_device=True)
    assert worker.resolutions == ("native",) and finish.resolutions == ("16", "32") and not finish.identity
    sent = worker(photo)
    assert sent.shape == (1, 3, 64, 64) and sent.dtype == torch.uint8
    assert torch.equal(sent[0], ViewMaker("canonical", 64, ["native"])(photo)[0])
    assert torch.equal(finish(sent[None])[0], maker(photo))
    with pytest.raises(ValueError):
        finish(maker(photo)[None])  # a batch of all the views is not a batch of crops


@pytest.mark.parametrize("protocol,family,on_device", [("paper", "clip", True), ("paper", "openclip", True),
                                                       ("canonical", "openclip", False), ("paper", "eva", False)])
def test_split_keeps_everything_in_the_workers(photo, protocol, family, on_device):
    maker = ViewMaker(protocol, 64, SWEEP[:1] + [32, 16], family)
    worker, finish = maker.split(on_device=on_device)
    assert worker is maker and finish.identity
    batch = torch.stack([worker(photo), worker(photo)])
    assert finish(batch) is batch


def test_low_views_shapes_order_and_checks(photo):
    crops = torch.stack([ViewMaker("canonical", 64, ["native"])(image)[0] for image in (photo, texture(80, 40))])
    views = low_views(crops, [16, "native", 48])
    assert views.shape == (2, 3, 3, 64, 64) and views.dtype == torch.uint8
    assert torch.equal(views[:, 0], crops)  # native first, then the order asked for
    assert torch.equal(views[:, 1], low_views(crops, [16])[:, 0])
    assert torch.equal(views[:, 2], low_views(crops, [48])[:, 0])
    assert torch.equal(low_views(torch.zeros(3, 3, 32, 32, dtype=torch.uint8), ["native", 8]), torch.zeros(3, 2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError):
        low_views(crops.float(), ["native"])
    with pytest.raises(UserError):
        low_views(crops, [64])


def test_device_views_pickle():
    _, finish = ViewMaker("canonical", 32, ["native", 16]).split(on_device=True)
    clone = pickle.loads(pickle.dumps(finish))
    batch = torch.stack([ViewMaker("canonical", 32, ["native"])(texture(50, 40))])
    assert torch.equal(clone(batch), finish(batch)) and repr(clone) == repr(finish)


def test_device_views_ignore_the_models_autocast():
    _, finish = ViewMaker("canonical", 32, ["native", 16, 8]).split(on_device=True)
    batch = torch.stack([ViewMaker("canonical", 32, ["native"])(texture(70, 45, seed=s)) for s in range(3)])
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        inside = finish(batch)
    assert torch.equal(inside, finish(batch))
