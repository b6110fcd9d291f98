"""One short check of a GPU machine: a 5-resolution sweep in this process and on Ray, against pure forwards.

On generated 500×375 JPEGs (as photos cost to decode), with a random-init open_clip model (default
ViT-B-16, bf16 autocast) at native 224 and 128/64/32/16 px, canonical protocol:

* forward only: `encode_image` on device-resident uint8 batches, every view of every image, no data path;
* sweep, in-process: `lr0fm eval` through the API (DataLoader workers decode, the device scores);
* sweep, Ray: the same plan with `executor="ray"` on a Ray cluster started on this machine (CPU tasks
  decode, one model worker per GPU), Ray's start-up included.

Prints a Markdown table (images/s, sweep time ÷ forward-only time, mean GPU utilisation while each phase
ran, from `nvidia-smi`) and writes it, with the raw figures as JSON, to --out. Run through
`bench/gpu_check.sh` on a GPU machine; `--device cpu --images 100 --model lr0fm-tiny --resolutions
native,16,8` checks the script itself on any machine.

Usage:
    python bench/gpu_check.py [--images 5000] [--model openclip:ViT-B-16] [--batch-size 256] [--workers N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from lr0fm import load_model  # noqa: E402
from lr0fm.api import run_evaluation  # noqa: E402
from lr0fm.device import autocast  # noqa: E402
from lr0fm.plan import EvalConfig  # noqa: E402
from sweep_throughput import make_photo_folder  # noqa: E402

RESOLUTIONS = "native,128,64,32,16"  # the paper's grid (--resolutions for a model below 224 px)


class GpuMonitor:
    """`nvidia-smi` sampled every 200 ms on a thread; mean utilisation (%) over any time window."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        tool = shutil.which("nvidia-smi")
        self.process = None if tool is None else subprocess.Popen(
            [tool, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
            stdout=subprocess.PIPE, text=True)
        if self.process is not None:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            values = [float(v) for v in line.split(",") if v.strip()]
            if values:
                self.samples.append((time.time(), sum(values) / len(values)))

    def mean(self, start: float, stop: float) -> float | None:
        inside = [u for t, u in self.samples if start <= t <= stop]
        return sum(inside) / len(inside) if inside else None

    def close(self) -> None:
        if self.process is not None:
            self.process.terminate()


def forward_only(spec: str, images: int, views: int, batch_size: int, device: str, precision: str) -> float:
    """Seconds of encode_image over images × views, the batches already on the device (content does not
    change the cost of a forward pass)."""
    model = load_model(spec, device=device)
    n = model.image_size
    batch = torch.randint(0, 256, (batch_size, 3, n, n), dtype=torch.uint8, device=device)
    views = images * views
    with torch.inference_mode(), autocast(torch.device(device), precision):
        model.encode_image(batch.float().div_(255))  # warm-up: kernels chosen, memory allocated
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for first in range(0, views, batch_size):
            model.encode_image(batch[: min(batch_size, views - first)].float().div_(255))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return time.perf_counter() - start


def sweep(spec: str, folder: Path, resolutions: str, db: Path, executor: str, batch_size: int, workers: int,
          device: str, precision: str) -> float:
    config = EvalConfig(models=[spec], datasets=[f"folder:{folder}"], resolutions=resolutions, db=db,
                        batch_size=batch_size, workers=workers, device=device, precision=precision, executor=executor)
    start = time.perf_counter()
    result = run_evaluation(config)
    seconds = time.perf_counter() - start
    assert result.computed == len(resolutions.split(",")), result.outcomes
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--model", default="openclip:ViT-B-16")
    parser.add_argument("--resolutions", default=RESOLUTIONS)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default=None, help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "lr0fm-bench-images"))
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()
    precision = args.precision or ("bf16" if args.device.startswith("cuda") else "fp32")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "none"
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, GPU {gpu}, {args.model}, {precision}", flush=True)

    started = time.perf_counter()
    folder = make_photo_folder(Path(args.cache) / f"photos-{args.images}", args.images)
    print(f"{args.images} JPEGs ready in {time.perf_counter() - started:.1f} s", flush=True)
    monitor = GpuMonitor()
    phases: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in (
            ("forward only", lambda: forward_only(args.model, args.images, len(args.resolutions.split(",")),
                                                  args.batch_size, args.device, precision)),
            ("sweep, in-process", lambda: sweep(args.model, folder, args.resolutions, Path(tmp) / "local.sqlite",
                                                "local", args.batch_size, args.workers, args.device, precision)),
            ("sweep, Ray", lambda: sweep(args.model, folder, args.resolutions, Path(tmp) / "ray.sqlite", "ray",
                                         args.batch_size, args.workers, args.device, precision)),
        ):
            begin = time.time()
            seconds = run()
            phases[name] = {"seconds": seconds, "images_per_s": args.images / seconds,
                            "gpu_util": monitor.mean(begin, time.time())}
            print(f"{name}: {seconds:.1f} s", flush=True)
    monitor.close()
    forward = phases["forward only"]["seconds"]
    views = len(args.resolutions.split(","))
    weights = " (random init)" if args.model.startswith("openclip:") and "/" not in args.model else ""
    lines = [f"{args.images} generated 500×375 JPEGs, {args.model}{weights}, {precision}, batch {args.batch_size}, "
             f"{args.workers} decode workers, {args.resolutions}; {os.cpu_count()} cores, GPU {gpu}, torch {torch.__version__}",
             "", f"| phase | seconds | images/s ({views} views each) | ÷ forward-only time | mean GPU utilisation |",
             "|---|---:|---:|---:|---:|"]
    for name, row in phases.items():
        util = "–" if row["gpu_util"] is None else f"{row['gpu_util']:.0f} %"
        lines.append(f"| {name} | {row['seconds']:.1f} | {row['images_per_s']:.0f} | {row['seconds'] / forward:.2f} | {util} |")
    table = "\n".join(lines)
    print(table)
    (out / "gpu_check.md").write_text(table + "\n")
    (out / "gpu_check.json").write_text(json.dumps({"args": vars(args), "gpu": gpu, "phases": phases}, indent=2))


if __name__ == "__main__":
    main()
