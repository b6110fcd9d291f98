"""Throughput of a whole resolution sweep, and its overhead over the model's own forward passes.

For each model it reports:
  * sweep images/s: images of the dataset per second for the full 5-resolution sweep, end to end
    (decode, make views in DataLoader workers, encode, score, commit predictions to SQLite);
  * forward-only time: the same model's encode_image on the same view tensors, already in memory,
    at the same batch size;
  * overhead ratio = sweep wall time / forward-only time (1.0 means the pipeline costs nothing extra).

Models: the bundled lr0fm-tiny on the Fashion-MNIST test split, and a random-init open_clip ViT-B-32 at
224 px on generated JPEG photos-sized images (500×375, so decoding and resizing cost what real data costs).

Usage:
    python bench/sweep_throughput.py [--images 2000] [--tiny-images 10000] [--batch-size 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from lr0fm import load_model  # noqa: E402
from lr0fm.data import load_dataset  # noqa: E402
from lr0fm.degrade import ViewMaker, to_rgb  # noqa: E402
from lr0fm.execute import run_unit  # noqa: E402
from lr0fm.models import parse_spec  # noqa: E402
from lr0fm.plan import EvalConfig, WorkUnit  # noqa: E402
from lr0fm.resolution import default_sweep  # noqa: E402
from lr0fm.store import ResultStore  # noqa: E402


def make_photo_folder(root: Path, count: int, classes: int = 10, seed: int = 0) -> Path:
    """`count` smooth random 500×375 JPEGs in `classes` sub-folders (cached between runs)."""
    rng = np.random.default_rng(seed)
    done = root / f".complete-{count}"
    if done.exists():
        return root
    for index in range(count):
        folder = root / f"class_{index % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((500, 375), Image.Resampling.BICUBIC)
        image.save(folder / f"{index:05d}.jpg", quality=90)
    done.touch()
    return root


def forward_only_seconds(model, dataset, resolutions, protocol: str, batch_size: int) -> float:
    """encode_image over every view of every image, views prepared beforehand (not timed)."""
    maker = ViewMaker(protocol, model.image_size, resolutions, model.family)
    views = torch.stack([maker(to_rgb(dataset.load_image(i))) for i in range(len(dataset))])
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(views), batch_size):
            batch = views[first : first + batch_size]
            for position in range(len(resolutions)):
                model.encode_image(batch[:, position].float().div_(255))
    return time.perf_counter() - start


def bench(spec: str, dataset_name: str, limit: int, batch_size: int, workers: int, weights: str | None = None) -> dict:
    model = load_model(spec, weights)
    dataset = load_dataset(dataset_name).limit(limit)
    resolutions = default_sweep(model.image_size)
    config = EvalConfig(batch_size=batch_size, workers=workers, protocol="canonical")
    unit = WorkUnit(parse_spec(spec, weights), dataset.name, resolutions, 0, len(dataset))
    with tempfile.TemporaryDirectory() as tmp:
        config.db = Path(tmp) / "bench.sqlite"
        with ResultStore(config.db) as store:
            model.fingerprint()  # hashed once per load in real runs too; keep it out of the timing
            start = time.perf_counter()
            run_unit(store, model, dataset, unit, resolutions, config, torch.device("cpu"))
            sweep = time.perf_counter() - start
    forward = forward_only_seconds(model, dataset, resolutions, "canonical", batch_size)
    return {
        "model": spec,
        "dataset": dataset_name,
        "images": len(dataset),
        "resolutions": ",".join(str(r) for r in resolutions),
        "sweep_s": sweep,
        "images_per_s": len(dataset) / sweep,
        "forward_s": forward,
        "ratio": sweep / forward,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="generated 500x375 images for ViT-B-32")
    parser.add_argument("--tiny-images", type=int, default=10000, help="Fashion-MNIST test images for lr0fm-tiny")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "lr0fm-bench-images"))
    parser.add_argument("--skip-vit", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    rows = [bench("lr0fm-tiny", "fashion_mnist", args.tiny_images, args.batch_size, args.workers)]
    if not args.skip_vit:
        folder = make_photo_folder(Path(args.cache), args.images)
        rows.append(bench("openclip:ViT-B-32", f"folder:{folder}", args.images, args.batch_size, args.workers))
    print("| model | dataset | images | resolutions | sweep s | images/s (5-res sweep) | forward-only s | sweep / forward |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        dataset = row["dataset"] if not row["dataset"].startswith("folder:") else "generated 500×375 JPEG"
        print(f"| {row['model']} | {dataset} | {row['images']} | {row['resolutions']} | "
              f"{row['sweep_s']:.1f} | {row['images_per_s']:.1f} | {row['forward_s']:.1f} | {row['ratio']:.2f} |")


if __name__ == "__main__":
    main()
