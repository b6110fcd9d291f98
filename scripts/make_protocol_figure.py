"""Draw docs/protocols.png: one photograph at native 224 px and at 128/64/32/16 px, for both protocols.

Photograph: "Chelsea the cat" by Stéfan van der Walt, CC0 (no copyright restrictions), shipped inside the
scikit-image wheel as `skimage.data.chelsea()`, so it loads offline. Without scikit-image a synthetic test card is used.

Usage:
    python scripts/make_protocol_figure.py [--out docs/protocols.png] [--family openclip]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from lr0fm.degrade import ViewMaker, paper_pipeline  # noqa: E402

NATIVE = 224
RESOLUTIONS = ["native", 128, 64, 32, 16]


def load_photo() -> tuple[Image.Image, str]:
    try:
        from skimage import data

        return Image.fromarray(data.chelsea()), "Chelsea the cat by Stéfan van der Walt, CC0 (skimage.data.chelsea)"
    except ImportError:
        y, x = np.mgrid[0:300, 0:451] / 60.0
        card = np.stack([128 + 100 * np.sin(2 * x), 128 + 100 * np.cos(3 * y), 40 * (x + y)], axis=-1)
        return Image.fromarray(np.clip(card, 0, 255).astype(np.uint8)), "synthetic test card"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/protocols.png"))
    parser.add_argument("--family", default="openclip", help="model family for the paper row (picks its pipeline)")
    args = parser.parse_args()

    photo, credit = load_photo()
    rows = [
        ("canonical", "canonical", "openclip"),
        (f"paper\n{args.family}: {paper_pipeline(args.family)}", "paper", args.family),
    ]
    # Panels close to 224 px on screen, so the views are shown nearly pixel for pixel.
    figure, axes = plt.subplots(len(rows), len(RESOLUTIONS), figsize=(12.4, 6.0), dpi=100, layout="constrained")
    for row, (label, protocol, family) in enumerate(rows):
        views = ViewMaker(protocol, NATIVE, RESOLUTIONS, family)(photo)
        for column, resolution in enumerate(RESOLUTIONS):
            axis = axes[row, column]
            axis.imshow(views[column].permute(1, 2, 0).numpy(), interpolation="antialiased")
            title = f"native {NATIVE} px" if resolution == "native" else f"{resolution} px → {NATIVE} px"
            axis.set_title(f"{protocol}: {title}", fontsize=9)
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(label, fontsize=10)
    figure.suptitle(
        f"Views of one {photo.width}×{photo.height} image, each shown at the model's native {NATIVE} px",
        fontsize=10,
    )
    figure.supxlabel(f"Image: {credit}", fontsize=7, color="0.35")

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    # A 256-colour palette keeps the PNG small; photographs survive it with little visible change.
    buffer.seek(0)
    rendered = Image.open(buffer).convert("RGB")
    rendered = rendered.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rendered.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
