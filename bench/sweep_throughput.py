"""Throughput of a whole resolution sweep, and its overhead over the model's own forward passes.

For each model it reports:
  * sweep images/s: images of the dataset per second for the full 5-resolution sweep, end to end
    (decode, make views in DataLoader workers, encode, score, commit predictions to SQLite);
  * forward-only time: the same model's encode_image on the same view tensors, already in memory,
    at the same batch size;
  * overhead ratio = sweep wall time / forward-only time (1.0 means the pipeline costs nothing extra).

Models: the bundled lr0fm-tiny on the Fashion-MNIST test split, and a random-init open_clip ViT-B-32 at
224 px on generated JPEG photos-sized images (500×375, so decoding and resizing cost what real data costs).

With --pipeline-only no model runs: the generated JPEGs go through the view making alone, against the
anchor a CLIP_benchmark user runs, five torchvision ImageFolder DataLoaders, one per resolution (native:
Resize(n) -> CenterCrop(n) -> ToTensor(); r: Resize(r) -> Resize(n) -> CenterCrop(n) -> ToTensor(), all
bicubic), iterated one after another. Ours is lr0fm's decode-once view making in one DataLoader (the
executor's dataset: read the image, `ViewMaker` makes all five views), canonical protocol at native 224.
Both report dataset images per second over the whole sweep, in alternating rounds in one process.

Usage:
    python bench/sweep_throughput.py [--images 2000] [--tiny-images 10000] [--batch-size 64] [--workers 2]
    python bench/sweep_throughput.py --pipeline-only [--images 1000] [--rounds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import resource
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


class _SweepViews(torch.utils.data.Dataset):
    """What the executor's DataLoader reads: each image decoded once, all its views made by `worker`."""

    def __init__(self, dataset, worker):
        self.dataset, self.worker = dataset, worker

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return index, self.dataset.labels[index], True, self.worker(to_rgb(self.dataset.read_image(index)))


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (the DataLoader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def anchor_seconds(folder: Path, native: int, resolutions, batch_size: int, workers: int) -> tuple[float, float]:
    """(wall, CPU) seconds of five torchvision decode+transform DataLoaders, one per resolution, one after another."""
    from torchvision import datasets, transforms

    bicubic = transforms.InterpolationMode.BICUBIC
    start, cpu = time.perf_counter(), _cpu_seconds()
    for resolution in resolutions:
        steps = [] if resolution.is_native else [transforms.Resize(resolution.pixels, interpolation=bicubic)]
        steps += [transforms.Resize(native, interpolation=bicubic), transforms.CenterCrop(native), transforms.ToTensor()]
        images = datasets.ImageFolder(str(folder), transform=transforms.Compose(steps))
        for _pixels, _labels in torch.utils.data.DataLoader(images, batch_size=batch_size, num_workers=workers):
            pass
    return time.perf_counter() - start, _cpu_seconds() - cpu


def ours_seconds(folder: Path, native: int, resolutions, batch_size: int, workers: int) -> tuple[float, float]:
    """(wall, CPU) seconds of lr0fm's view making: one DataLoader, each image decoded once into all its views,
    split as the executor splits it for a CPU model (everything in the workers)."""
    worker, finish = ViewMaker("canonical", native, resolutions).split(on_device=False)
    dataset = load_dataset(f"folder:{folder}")
    start, cpu = time.perf_counter(), _cpu_seconds()
    loader = torch.utils.data.DataLoader(_SweepViews(dataset, worker), batch_size=batch_size, num_workers=workers,
                                         persistent_workers=False)
    for _indices, _labels, _ok, views in loader:
        finish(views)
    return time.perf_counter() - start, _cpu_seconds() - cpu


def pipeline_only(args) -> None:
    """Anchor and ours in alternating rounds; images/s over all rounds, their ratio, and CPU time per image
    (which a machine shared with other work inflates less than wall time)."""
    folder = make_photo_folder(Path(args.cache) / f"pipeline-{args.images}", args.images)
    native, resolutions = 224, default_sweep(224)
    count = len(load_dataset(f"folder:{folder}"))
    wall = {"anchor": 0.0, "ours": 0.0}
    cpu = {"anchor": 0.0, "ours": 0.0}
    print(f"{count} generated 500×375 JPEGs, native {native}, resolutions {','.join(resolutions)}, "
          f"workers {args.workers}, batch {args.batch_size}, canonical protocol")
    runs = {"anchor": anchor_seconds, "ours": ours_seconds}
    ratios = []
    for round_ in range(1, args.rounds + 1):
        order = ["anchor", "ours"] if round_ % 2 else ["ours", "anchor"]  # alternate who goes first
        seconds = {side: runs[side](folder, native, resolutions, args.batch_size, args.workers) for side in order}
        for side, (spent, used) in seconds.items():
            wall[side] += spent
            cpu[side] += used
        (anchor, _), (ours, _) = seconds["anchor"], seconds["ours"]
        ratios.append(anchor / ours)
        print(f"round {round_}: anchor {count / anchor:.1f} images/s ({anchor:.1f} s), ours {count / ours:.1f} "
              f"images/s ({ours:.1f} s), ratio {anchor / ours:.2f}")
    rate = {side: count * args.rounds / wall[side] for side in wall}
    per_image = {side: cpu[side] / (count * args.rounds) * 1e3 for side in cpu}
    print(f"median ratio of the rounds: {float(np.median(ratios)):.2f}")
    print("| images | workers | batch | anchor images/s | ours images/s | ours / anchor | "
          "anchor CPU ms/image | ours CPU ms/image | CPU anchor / ours |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {count} | {args.workers} | {args.batch_size} | {rate['anchor']:.1f} | {rate['ours']:.1f} | "
          f"{rate['ours'] / rate['anchor']:.2f} | {per_image['anchor']:.1f} | {per_image['ours']:.1f} | "
          f"{per_image['anchor'] / per_image['ours']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="generated 500x375 images for ViT-B-32")
    parser.add_argument("--tiny-images", type=int, default=10000, help="Fashion-MNIST test images for lr0fm-tiny")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "lr0fm-bench-images"))
    parser.add_argument("--skip-vit", action="store_true")
    parser.add_argument("--pipeline-only", action="store_true",
                        help="no model: views per second of lr0fm's view making against five torchvision loaders")
    parser.add_argument("--rounds", type=int, default=3, help="alternating anchor/ours rounds (--pipeline-only)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    if args.pipeline_only:
        pipeline_only(args)
        return
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
