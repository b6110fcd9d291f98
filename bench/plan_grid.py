"""Plan the LR0.FM grid on GPUs: FLOPs per backbone, images per dataset, CPU cost per image, three schedules.

Everything `docs/scale.md` tabulates comes out of this script, as Markdown on standard output:

  * per backbone (the 54 loadable registry models): image-tower FLOPs of one forward pass at its native
    size, text-tower FLOPs of one prompt, parameters, and its GPU-hours for the whole grid;
  * a check of the counted FLOPs against published figures;
  * the paper's 15 test sets (images, classes, prompt templates) as lr0fm's suite metadata declares them;
  * GPU-hours per family and in total; wall time on N GPUs for three schedules (the Ray executor as built,
    model-major packing, data-major); the CPU cores per GPU each needs; what fits 4 hours on one 8-GPU node.

How the numbers are made:

  * FLOPs are counted, not estimated from parameter counts: each architecture is built with random init on
    PyTorch's `meta` device (shapes only, no memory, no arithmetic) from its real configuration (open_clip's
    model configs; for BLIP, transformers' BlipConfig with the values of the Salesforce/blip-itm-* hub configs),
    and one forward pass at batch 1 runs under `torch.utils.flop_counter.FlopCounterMode`, which counts the
    matrix products, convolutions and attention. One multiply-add is 2 FLOPs (the convention of GPU peak
    figures). Element-wise work (norms, activations, softmax) is not counted.
  * Each image is forwarded once per resolution at the model's native size: the low-resolution views are
    upsampled back to native, so all 5 views cost the same.
  * GPU time = FLOPs / (dense bf16 peak × MFU). The MFU (model-FLOPs utilisation) is an assumption, not a
    measurement: no GPU was available. `bench/gpu_check.sh` measures the forward-only images/s of a ViT-B/16
    in bf16 on a GPU machine; MFU = images/s × 5 views × 35.13 GFLOPs / peak. Rerun this script with
    `--mfu MEASURED` to replace the assumption.
  * CPU cost per image (decode, and the 5 views of one native size and resize path) is measured here,
    single-threaded, with `--measure-cpu`; the defaults below are such a measurement on a 2-core x86_64 CPU.

Usage (from the repository root):
    HF_HUB_OFFLINE=1 .venv/bin/python bench/plan_grid.py                      # the tables of docs/scale.md
    HF_HUB_OFFLINE=1 .venv/bin/python bench/plan_grid.py --mfu 0.25 --gpu a100
    HF_HUB_OFFLINE=1 .venv/bin/python bench/plan_grid.py --measure-cpu        # re-measure the CPU costs first
    HF_HUB_OFFLINE=1 .venv/bin/python bench/plan_grid.py --json plan.json     # every number as JSON too

Counting the FLOPs of the 54 architectures takes about a minute on one core and needs no weights and no
network.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# --------------------------------------------------------------------------------------------------
# Assumptions (each one a flag)

# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, and memory, GiB. NVIDIA's datasheets give the
# H100/H200 SXM bf16 figure as 1,979 TFLOP/s "with sparsity", i.e. 989 dense; A100: 312 dense.
GPUS: dict[str, tuple[float, float]] = {
    "h200": (989.0, 141.0),
    "h100": (989.0, 80.0),
    "a100": (312.0, 80.0),
}
DEFAULT_MFU = 0.35
# An 8-GPU H200 node with 2 × 56-core Xeon Platinum 8480C: 112 cores / 8 GPUs (NVIDIA's MLPerf Inference
# v4.1 system description, github.com/mlcommons/inference_results_v4.1, closed/NVIDIA/systems/H200-SXM-141GBx8_TRT_MaxQ.json).
DEFAULT_CORES_PER_GPU = 14
DEFAULT_GPU_COUNTS = (8, 32, 64)
TARGET_HOURS = 4.0
# Loading a model: open_clip and transformers build the module with random init on the CPU, then read the
# checkpoint and move it to the GPU. Modelled as a fixed cost plus the checkpoint's bytes at a rate that
# covers init, reading and the copy. Not measured: --load-gbps changes it.
LOAD_GBPS = 0.5
LOAD_FIXED_S = 10.0
CHECKPOINT_BYTES_PER_PARAM = 4  # open_clip / hub checkpoints are mostly fp32
WORKSPACE_GIB = 16.0  # activations and allocator slack next to the resident weights (data-major)
CHUNK_IMAGES = 1024  # the Ray executor's range: one committed chunk (lr0fm.plan.CHUNK_SIZE)
SPLIT_PER_SHARE = 8  # model-major with ranges: no unit longer than 1/8 of a GPU's even share
BLIP_TEXT_TOKENS = 20  # BLIP pads prompts to the longest of a batch; CLIP-style towers pad to their context length

# CPU milliseconds per image on one core, measured by `--measure-cpu` (fastest of 5 rounds over 200
# textured 500×375 JPEGs of 114 KB on average; a 2-core x86_64 CPU shared with other work, process CPU
# time, one thread, Pillow 13 resizing as lr0fm's ViewMaker does; repeated runs differed by up to 20 %):
# "decode" is open + decode + RGB; each (pipeline, native) entry is the 5 views of the paper protocol.
MEASURED_CPU_MS: dict[str, float] = {
    "decode": 1.27,
    "shortside@224": 8.09,
    "shortside@288": 9.92,
    "shortside@336": 13.59,
    "shortside@384": 14.91,
    "shortside@448": 14.90,
    "stretch@224": 7.32,
    "stretch@256": 7.81,
    "stretch@378": 10.54,
    "stretch@384": 10.51,
    "stretch@512": 14.81,
}

# Published image-tower FLOPs (2 FLOPs per multiply-add) to check the counts against: open_clip's
# docs/model_profile.csv (github.com/mlfoundations/open_clip, column image_gflops), and DeiT's ViT-B/16
# (Touvron et al. 2021, Table 1: 17.6 G multiply-adds at 224 px, reported there as "FLOPs").
PUBLISHED_GFLOPS: dict[str, tuple[float, str]] = {
    "ViT-B-32": (8.82, "open_clip model_profile.csv"),
    "ViT-B-16": (35.2, "DeiT Table 1: 17.6 G multiply-adds"),
    "ViT-L-14": (162.03, "open_clip model_profile.csv (81.0 G multiply-adds)"),
    "RN50": (12.22, "open_clip model_profile.csv"),
    "EVA02-E-14": (2264.33, "open_clip model_profile.csv"),
    "ViT-bigG-14": (967.5, "open_clip model_profile.csv"),
    "ViT-SO400M-14-SigLIP-384": (670.35, "open_clip model_profile.csv"),
    "ViT-H-14-CLIPA-336": (781.45, "open_clip model_profile.csv"),
}

# Published inference throughputs, to see what utilisation ViT inference reaches: AITemplate's README
# (github.com/facebookincubator/AITemplate, examples/04_vit, "Reference Speed vs PyTorch Eager",
# A100-40GB, CUDA 11.6, fp16, timm ViTs), at the largest batch it lists: (label, open_clip architecture of
# the same shape, image size, images/s, dense peak TFLOP/s of that GPU, source).
_AIT = "AITemplate examples/04_vit, A100-40GB"
PUBLISHED_THROUGHPUT = [
    ("ViT-B/16, PyTorch 1.12 eager, batch 256", "ViT-B-16", 224, 2226.10, 312.0, _AIT),
    ("ViT-B/16, AITemplate, batch 256", "ViT-B-16", 224, 5273.03, 312.0, _AIT),
    ("ViT-L/16, PyTorch 1.12 eager, batch 32", "ViT-L-16", 384, 217.33, 312.0, _AIT),
    ("ViT-L/16, AITemplate, batch 32", "ViT-L-16", 384, 456.0, 312.0, _AIT),
]

# BLIP retrieval checkpoints: vision tower sizes as in their hub config.json files (base: transformers'
# BlipVisionConfig defaults; large: hidden 1024, 24 layers, 16 heads, MLP 4096), 384 px, 16-px patches;
# the text encoder is BERT-base sized in both (BlipTextConfig defaults).
BLIP_VISION = {
    "base": {},
    "large": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16},
}


# --------------------------------------------------------------------------------------------------
# Per-model costs


@dataclass
class ModelCost:
    name: str
    family: str
    arch: str  # open_clip architecture or hub id
    native: int
    pipeline: str  # the paper protocol's resize path
    image_gflops: float  # one image forward at native, 2 FLOPs per multiply-add
    text_gflops: float  # one prompt
    image_mparams: float
    text_mparams: float
    counted_from: str

    @property
    def group(self) -> str:
        """Models of one group see identical views (same resize path and native size)."""
        return f"{self.pipeline}@{self.native}"


def _count(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:  # grad mode on: the module tracker hooks into autograd
        fn()
    return float(counter.get_total_flops())


def _params(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def count_openclip(arch: str, size: int | None = None) -> tuple[float, float, float, float, int]:
    """(image GFLOPs, text GFLOPs per prompt, image Mparams, text Mparams, image size) on meta; `size`
    overrides the config's image size."""
    import open_clip
    import torch

    config = open_clip.get_model_config(arch)
    if size is None:
        size = config["vision_cfg"]["image_size"]
        size = size if isinstance(size, int) else size[0]
    context = config.get("text_cfg", {}).get("context_length", 77)
    extra = {"force_image_size": size} if size != config["vision_cfg"]["image_size"] else {}
    with torch.device("meta"):  # built on meta from the start: no weights are ever allocated
        model = open_clip.create_model(arch, pretrained=None, device="meta", **extra)
    pixels = torch.empty(1, 3, size, size, device="meta")
    tokens = torch.zeros(1, context, dtype=torch.long, device="meta")
    image = _count(lambda: model.encode_image(pixels))
    text = _count(lambda: model.encode_text(tokens))
    image_params = _params(model.visual)
    text_params = _params(model) - image_params
    return image / 1e9, text / 1e9, image_params, text_params, size


def count_blip(hub_id: str, native: int) -> tuple[float, float, float, float, str]:
    """BLIP retrieval model: the vision tower + vision_proj per image, the text encoder + text_proj per prompt."""
    import torch
    from transformers import BlipConfig, BlipForImageTextRetrieval

    source = "hub config.json"
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(hub_id)
    except Exception:  # offline: the sizes of the published configs, written above
        size = "large" if "large" in hub_id else "base"
        vision = {"image_size": native, "patch_size": 16, **BLIP_VISION[size]}
        config = BlipConfig(vision_config=vision, text_config={"encoder_hidden_size": vision.get("hidden_size", 768)})
        source = "BlipConfig with the hub config's sizes"
    with torch.device("meta"):
        model = BlipForImageTextRetrieval(config).eval()
    n = config.vision_config.image_size
    pixels = torch.empty(1, 3, n, n, device="meta")
    ids = torch.zeros(1, BLIP_TEXT_TOKENS, dtype=torch.long, device="meta")

    def image() -> None:
        hidden = model.vision_model(pixel_values=pixels).last_hidden_state
        model.vision_proj(hidden[:, 0, :])

    def text() -> None:  # no attention mask: all-ones, and masks cannot be built from meta tensors
        hidden = model.text_encoder(input_ids=ids).last_hidden_state
        model.text_proj(hidden[:, 0, :])

    image_params = _params(model.vision_model) + _params(model.vision_proj)
    text_params = _params(model.text_encoder) + _params(model.text_proj)
    return _count(image) / 1e9, _count(text) / 1e9, image_params, text_params, source


def model_costs() -> list[ModelCost]:
    """Counted costs of every loadable registry backbone, in registry order."""
    from lr0fm.degrade import paper_pipeline
    from lr0fm.models import parse_spec
    from lr0fm.models.registry import entries

    costs = []
    for entry in entries():
        if not entry.supported or not entry.paper_name:
            continue
        spec = parse_spec(entry.name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if spec.backend == "openclip":
                image, text, image_p, text_p, size = count_openclip(spec.name)
                if size != entry.native:
                    raise SystemExit(f"{entry.name}: open_clip config says {size} px, the registry {entry.native}")
                source = "open_clip config, meta device"
            else:
                image, text, image_p, text_p, how = count_blip(spec.name, entry.native)
                source = f"transformers {how}, meta device"
        costs.append(ModelCost(entry.name, entry.family, spec.name, entry.native, paper_pipeline(entry.family),
                               image, text, image_p, text_p, source))
    return costs


def utilisation_checks() -> list[dict]:
    """MFU implied by published inference throughputs: images/s × counted FLOPs per image ÷ peak."""
    rows = []
    for label, arch, size, images_per_s, peak, source in PUBLISHED_THROUGHPUT:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gflops = count_openclip(arch, size)[0]
        rows.append({"label": label, "arch": f"{arch} @ {size}", "gflops": gflops, "images_per_s": images_per_s,
                     "tflops": images_per_s * gflops / 1e3, "mfu": images_per_s * gflops / 1e3 / peak, "source": source})
    return rows


def published_checks() -> list[dict]:
    """Counted vs published image-tower GFLOPs for a few architectures."""
    rows = []
    for arch, (published, source) in PUBLISHED_GFLOPS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            counted = count_openclip(arch)[0]
        rows.append({"arch": arch, "counted": counted, "published": published, "source": source,
                     "deviation_pct": 100 * (counted / published - 1)})
    return rows


# --------------------------------------------------------------------------------------------------
# The datasets


@dataclass
class DatasetCost:
    key: str
    title: str
    split: str
    images: int
    classes: int
    templates: int
    classifier: str  # datasets with one classifier key share one text classifier (same class names and templates)
    source: str  # where lr0fm declares the count


def dataset_costs() -> list[DatasetCost]:
    from lr0fm.data import coop_splits, fine_grained, imagenet_family, lr0fm_suite
    from lr0fm.data.suite_base import imagenet_templates, stored_templates

    declared = {key: module.__name__.split(".")[-1]
                for module in (imagenet_family, fine_grained, coop_splits) for key in module.LOADERS}
    rows = []
    for key, info in lr0fm_suite.SUITE.items():
        imagenet_like = key.startswith("imagenet")
        templates = len(imagenet_templates()) if imagenet_like else len(stored_templates(key))
        # ImageNet, -V2 and -Sketch use ImageNet's 1,000 class names and CLIP's templates: one classifier.
        classifier = "imagenet-1k" if key in ("imagenet", "imagenet_v2", "imagenet_sketch") else key
        rows.append(DatasetCost(key, info.title, info.split, info.images, info.classes, templates, classifier,
                                f"lr0fm/data/{declared[key]}.py"))
    return rows


def resolutions_per_image() -> int:
    from lr0fm.suites import get_suite

    return len(get_suite("lr0fm").resolutions)


# --------------------------------------------------------------------------------------------------
# CPU measurement


def _textured_folder(root: Path, count: int, seed: int = 1) -> Path:
    """`count` 500×375 JPEGs with photo-like entropy: smooth colour fields plus pixel noise (≈ 110 KB each)."""
    import numpy as np
    from PIL import Image

    done = root / f".complete-{count}"
    if done.exists():
        return root
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        coarse = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((500, 375), Image.Resampling.BICUBIC), dtype=np.float32)
        noisy = np.clip(smooth + rng.normal(0.0, 28.0, smooth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(root / f"{index:05d}.jpg", quality=90)
    done.touch()
    return root


def measure_cpu(groups: list[str], count: int = 200, rounds: int = 5) -> dict[str, dict]:
    """Milliseconds per image on one core: decode, and the paper protocol's 5 views per (pipeline, native).

    Two image sets: the smooth 500×375 JPEGs of bench/sweep_throughput.py and textured ones of the same
    size with about the entropy of a photograph. The fastest of `rounds` passes, timed as this process's
    CPU time (one thread): other processes sharing the cores can only slow a pass down.
    """
    import statistics

    import torch
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sweep_throughput import make_photo_folder

    from lr0fm.degrade import PAPER_PIPELINES, ViewMaker, to_rgb
    from lr0fm.suites import get_suite

    torch.set_num_threads(1)
    cache = Path(tempfile.gettempdir())
    sets = {
        "smooth": make_photo_folder(cache / "lr0fm-bench-images", count),
        "textured": _textured_folder(cache / "lr0fm-plan-textured", count),
    }
    resolutions = get_suite("lr0fm").resolutions
    family_of = {pipeline: next(f for f, p in PAPER_PIPELINES.items() if p == pipeline) for pipeline in ("shortside", "stretch")}
    results: dict[str, dict] = {}
    for name, folder in sets.items():
        paths = sorted(folder.rglob("*.jpg"))[:count]
        kbytes = statistics.mean(p.stat().st_size for p in paths) / 1024
        images = []
        timings: dict[str, list[float]] = {"decode": []}
        for _ in range(rounds):
            start = time.process_time()
            images = []
            for path in paths:
                with Image.open(path) as image:
                    image.load()
                    images.append(to_rgb(image))
            timings["decode"].append((time.process_time() - start) / len(paths) * 1e3)
        for group in groups:
            pipeline, native = group.split("@")
            maker = ViewMaker("paper", int(native), resolutions, family_of[pipeline])
            timings[group] = []
            for _ in range(rounds):
                start = time.process_time()
                for image in images:
                    maker(image)
                timings[group].append((time.process_time() - start) / len(images) * 1e3)
        results[name] = {"mean_kb": kbytes, "images": len(paths),
                         "ms": {key: min(values) for key, values in timings.items()}}
    return results


# --------------------------------------------------------------------------------------------------
# Schedules


@dataclass
class Setup:
    gpu: str
    peak_tflops: float
    memory_gib: float
    mfu: float
    cores_per_gpu: float
    cpu_ms: dict[str, float]
    cpu_scale: float = 1.0  # server core speed relative to the measuring core's: CPU times are divided by it
    load_gbps: float = LOAD_GBPS

    @property
    def flops_per_s(self) -> float:
        return self.peak_tflops * 1e12 * self.mfu

    def cpu_s(self, group: str) -> float:
        """Core-seconds per image for one model of `group` (decode + its views)."""
        return (self.cpu_ms["decode"] + self.cpu_ms[group]) / 1e3 / self.cpu_scale


@dataclass
class Grid:
    models: list[ModelCost]
    datasets: list[DatasetCost]
    views: int  # resolutions per image

    @property
    def images(self) -> int:
        return sum(d.images for d in self.datasets)

    def prompts(self) -> dict[str, int]:
        """Prompts per distinct text classifier."""
        out: dict[str, int] = {}
        for d in self.datasets:
            out[d.classifier] = d.classes * d.templates
        return out

    def image_flops(self, m: ModelCost, d: DatasetCost | None = None) -> float:
        images = d.images if d else self.images
        return m.image_gflops * 1e9 * images * self.views

    def text_flops(self, m: ModelCost) -> float:
        return m.text_gflops * 1e9 * sum(self.prompts().values())

    def cells(self, m: ModelCost) -> list[tuple[DatasetCost, float]]:
        """(dataset, FLOPs) per (model, dataset) cell; each text classifier is charged to its first dataset."""
        seen, out = set(), []
        prompts = self.prompts()
        for d in self.datasets:
            flops = self.image_flops(m, d)
            if d.classifier not in seen:
                seen.add(d.classifier)
                flops += m.text_gflops * 1e9 * prompts[d.classifier]
            out.append((d, flops))
        return out


def load_s(m: ModelCost, setup: Setup) -> float:
    """Seconds for one worker to build a model and read its checkpoint (an assumption, see LOAD_*)."""
    return (m.image_mparams + m.text_mparams) * 1e6 * CHECKPOINT_BYTES_PER_PARAM / (setup.load_gbps * 1e9) + LOAD_FIXED_S


def _pack(items: list[tuple[float, float, object]], bins: int, load) -> tuple[list[float], int]:
    """Longest first onto `bins` workers: (seconds, -, model) items; a worker pays `load(model)` the first
    time it runs one of the model's items. Returns each worker's finish time and the number of loads."""
    finish = [0.0] * bins
    loaded: list[set[str]] = [set() for _ in range(bins)]
    loads = 0
    for seconds, _, m in sorted(items, key=lambda item: -item[0]):
        best = min(range(bins), key=lambda b: finish[b] + seconds + (0 if m.name in loaded[b] else load(m)))
        if m.name not in loaded[best]:
            finish[best] += load(m)
            loaded[best].add(m.name)
            loads += 1
        finish[best] += seconds
    return finish, loads


def model_major(grid: Grid, setup: Setup, gpus: int, split: bool = False) -> dict:
    """Each worker runs one model at a time over a range of one dataset, decoding every image for that model.

    A unit is a (model, dataset) cell; with `split`, a cell longer than 1/SPLIT_PER_SHARE of the even share
    (all GPU time / gpus) is cut into equal image ranges shorter than that. Units are packed onto `gpus`
    workers longest first; a worker pays a model's load the first time it runs one of its units; a unit
    takes max(GPU time, CPU core-seconds / cores per GPU), decoding overlapping the GPU.
    """
    units = []
    limit = sum(f for m in grid.models for _, f in grid.cells(m)) / setup.flops_per_s / gpus / SPLIT_PER_SHARE
    for m in grid.models:
        for d, flops in grid.cells(m):
            text = flops - grid.image_flops(m, d)
            pieces = max(1, math.ceil(flops / setup.flops_per_s / limit)) if split else 1
            for piece in range(pieces):
                images = d.images / pieces
                gpu = (grid.image_flops(m, d) / pieces + (text if piece == 0 else 0.0)) / setup.flops_per_s
                cpu = images * setup.cpu_s(m.group) / setup.cores_per_gpu
                units.append((max(gpu, cpu), gpu, m, d))
    finish, loads = _pack([(u[0], u[1], u[2]) for u in units], gpus, lambda m: load_s(m, setup))
    largest = max(units, key=lambda u: u[0])
    return {
        "wall_h": max(finish) / 3600, "gpu_h": sum(u[1] for u in units) / 3600,
        "busy_h": sum(u[0] for u in units) / 3600, "units": len(units),
        "largest_unit_h": largest[0] / 3600, "largest_unit": f"{largest[2].name} × {largest[3].key}",
        "loads": loads, "decodes": grid.images * len(grid.models),
    }


def model_major_ray(grid: Grid, setup: Setup, gpus: int, chunk: int = CHUNK_IMAGES) -> dict:
    """The Ray executor as built: one model at a time on every GPU. For each model, every worker loads it
    (in parallel), the first worker builds its text classifiers, then ranges of `chunk` images of every
    dataset are sent to whichever worker is free, their decoding done by CPU tasks anywhere in the cluster
    (every core but one per model worker). A model takes its load + its classifiers + the longer of its
    ranges' makespan on the GPUs and its CPU work spread over the cluster's cores."""
    pool = gpus * max(setup.cores_per_gpu - 1, 0.5)
    wall = 0.0
    parts = {"load": 0.0, "text": 0.0, "gpu": 0.0, "cpu_bound_models": 0}
    for m in grid.models:
        ranges = []
        for d in grid.datasets:
            for start in range(0, d.images, chunk):
                ranges.append(min(chunk, d.images - start) * grid.views * m.image_gflops * 1e9 / setup.flops_per_s)
        finish = [0.0] * gpus
        for seconds in sorted(ranges, reverse=True):
            finish[finish.index(min(finish))] += seconds
        gpu = max(finish)
        cpu = grid.images * setup.cpu_s(m.group) / pool
        text = grid.text_flops(m) / setup.flops_per_s
        wall += load_s(m, setup) + text + max(gpu, cpu)
        parts["load"] += load_s(m, setup)
        parts["text"] += text
        parts["gpu"] += max(gpu, cpu)
        parts["cpu_bound_models"] += cpu > gpu
    return {"wall_h": wall / 3600, "load_h": parts["load"] / 3600, "text_h": parts["text"] / 3600,
            "stream_h": parts["gpu"] / 3600, "cpu_bound_models": parts["cpu_bound_models"],
            "loads": len(grid.models) * gpus, "decodes": grid.images * len(grid.models)}


def _partition(models: list[ModelCost], parts: int, room_bytes: float, cost) -> list[list[ModelCost]] | None:
    """`models` split into `parts` groups of about equal `cost`, each within `room_bytes` of bf16 image
    towers (longest first onto the least loaded group that has room); None when they do not fit."""
    groups: list[list[ModelCost]] = [[] for _ in range(parts)]
    load = [0.0] * parts
    used = [0.0] * parts
    for m in sorted(models, key=lambda m: -cost(m)):
        size = m.image_mparams * 1e6 * 2
        fits = [g for g in range(parts) if used[g] + size <= room_bytes]
        if not fits:
            return None
        best = min(fits, key=lambda g: load[g])
        groups[best].append(m)
        load[best] += cost(m)
        used[best] += size
    return [g for g in groups if g]


def data_major(grid: Grid, setup: Setup, gpus: int) -> dict:
    """The models are split into P groups and the data into S = gpus / P shards; each GPU holds one group
    resident (bf16) and streams one shard of every dataset once: each image is decoded once on that GPU and
    its views made once per (resize path, native size) group present, then fed to every resident model.
    Each GPU loads its group's models once and builds their text classifiers. P is chosen (among the
    divisors of `gpus` whose groups fit the GPU's memory) to minimise the wall time; P = 1 is every model
    resident on every GPU, P = gpus one group per GPU streaming all the data."""
    room = (setup.memory_gib - WORKSPACE_GIB) * 2**30
    per_image = {m.name: m.image_gflops * 1e9 * grid.views / setup.flops_per_s for m in grid.models}
    options = []
    for parts in [p for p in range(1, gpus + 1) if gpus % p == 0 and p <= len(grid.models)]:
        groups = _partition(grid.models, parts, room, lambda m: per_image[m.name])
        if groups is None:
            continue
        shards = gpus // parts
        walls, cores, cpu_total = [], [], 0.0
        for group in groups:
            gpu_img = sum(per_image[m.name] for m in group)
            views = {m.group for m in group}
            cpu_img = (setup.cpu_ms["decode"] + sum(setup.cpu_ms[v] for v in views)) / 1e3 / setup.cpu_scale
            text = sum(grid.text_flops(m) for m in group) / setup.flops_per_s
            loads = sum(load_s(m, setup) for m in group)
            walls.append(loads + text + grid.images / shards * max(gpu_img, cpu_img / setup.cores_per_gpu))
            cores.append(cpu_img / gpu_img)
            cpu_total += cpu_img * grid.images
        options.append({
            "cpu_core_h": cpu_total / 3600,
            "wall_h": max(walls) / 3600, "groups": len(groups), "shards": shards,
            "cores_needed": max(cores), "models_per_gpu": max(len(g) for g in groups),
            "fewest_models_per_gpu": min(len(g) for g in groups),
            "resident_gib": max(sum(m.image_mparams * 1e6 * 2 for m in g) for g in groups) / 2**30,
            "loads": sum(len(g) for g in groups) * shards, "decodes": grid.images * len(groups),
            "load_h_per_gpu": max(sum(load_s(m, setup) for m in g) for g in groups) / 3600,
        })
    if not options:
        raise SystemExit("no grouping of the models fits the GPU memory")
    best = min(options, key=lambda o: o["wall_h"])
    best["all_resident"] = next((o for o in options if o["groups"] == 1), None)
    return best


def cores_needed(schedule, grid: Grid, setup: Setup, gpus: int, slack: float = 0.05, **kw) -> float:
    """Fewest cores per GPU for which `schedule`'s wall time is within `slack` of unlimited cores."""
    def wall(cores: float) -> float:
        return schedule(grid, Setup(**{**asdict(setup), "cores_per_gpu": cores}), gpus, **kw)["wall_h"]

    target = wall(1e9) * (1 + slack)
    low, high = 0.125, 1024.0
    while high - low > 0.125:
        mid = (low + high) / 2
        low, high = (low, mid) if wall(mid) <= target else (mid, high)
    return high


# --------------------------------------------------------------------------------------------------
# Output


def report(grid: Grid, setup: Setup, gpu_counts: tuple[int, ...], checks: list[dict], utilisation: list[dict],
           cpu: dict | None) -> dict:
    out: dict = {"setup": asdict(setup), "models": [asdict(m) for m in grid.models], "checks": checks,
                 "utilisation": utilisation,
                 "datasets": [asdict(d) for d in grid.datasets]}
    p = print
    p(f"Assumptions: {setup.gpu.upper()} at {setup.peak_tflops:g} TFLOP/s dense bf16 × MFU {setup.mfu:g} = "
      f"{setup.flops_per_s / 1e12:.0f} TFLOP/s sustained per GPU; {setup.cores_per_gpu:g} CPU cores per GPU; "
      f"CPU times as measured ÷ {setup.cpu_scale:g}; checkpoints read at {setup.load_gbps:g} GB/s "
      f"+ {LOAD_FIXED_S:g} s per load.\n")

    p("### Test sets\n")
    p("| dataset | split | images | classes | templates | prompts | declared in |")
    p("|---|---|---:|---:|---:|---:|---|")
    prompts = grid.prompts()
    shown = set()
    for d in grid.datasets:
        first = d.classifier not in shown
        shown.add(d.classifier)
        count = f"{prompts[d.classifier]:,}" if first else f"(shares {d.classifier})"
        p(f"| {d.title} | {d.split} | {d.images:,} | {d.classes} | {d.templates} | {count} | `{d.source}` |")
    p(f"| **total** | | **{grid.images:,}** | | | **{sum(prompts.values()):,}** | |\n")
    p(f"Image forwards per model: {grid.images:,} images × {grid.views} resolutions = {grid.images * grid.views:,}.\n")

    p("### Counted FLOPs against published figures\n")
    p("| architecture | counted GFLOPs | published | source | deviation |")
    p("|---|---:|---:|---|---:|")
    for row in checks:
        p(f"| {row['arch']} | {row['counted']:.2f} | {row['published']:.2f} | {row['source']} | {row['deviation_pct']:+.2f} % |")
    p("")

    if utilisation:
        p("### Utilisation of published ViT inference throughputs\n")
        p("| measurement | architecture | GFLOPs per image | images/s | TFLOP/s | MFU | source |")
        p("|---|---|---:|---:|---:|---:|---|")
        for row in utilisation:
            p(f"| {row['label']} | {row['arch']} | {row['gflops']:.1f} | {row['images_per_s']:,.0f} | {row['tflops']:.0f} | "
              f"{row['mfu']:.2f} | {row['source']} |")
        p("")

    total_flops = sum(grid.image_flops(m) + grid.text_flops(m) for m in grid.models)
    p("### Per backbone\n")
    p("| model | family | architecture | native | views | image GFLOPs | text GFLOPs/prompt | image Mparams | grid PFLOP | GPU-h |")
    p("|---|---|---|---:|---|---:|---:|---:|---:|---:|")
    for m in grid.models:
        flops = grid.image_flops(m) + grid.text_flops(m)
        p(f"| {m.name} | {m.family} | {m.arch} | {m.native} | {m.pipeline} | {m.image_gflops:.1f} | {m.text_gflops:.1f} | "
          f"{m.image_mparams:.0f} | {flops / 1e15:,.0f} | {flops / setup.flops_per_s / 3600:.2f} |")
    p("")

    p("### GPU-hours per family\n")
    p("| family | models | image GFLOPs per forward (min–max) | image GPU-h | text GPU-h | GPU-h | share |")
    p("|---|---:|---|---:|---:|---:|---:|")
    families: dict[str, list[ModelCost]] = {}
    for m in grid.models:
        families.setdefault(m.family, []).append(m)
    out["families"] = {}
    for family, members in sorted(families.items(), key=lambda kv: -sum(grid.image_flops(m) for m in kv[1])):
        image_h = sum(grid.image_flops(m) for m in members) / setup.flops_per_s / 3600
        text_h = sum(grid.text_flops(m) for m in members) / setup.flops_per_s / 3600
        low, high = min(m.image_gflops for m in members), max(m.image_gflops for m in members)
        share = (image_h + text_h) * 3600 * setup.flops_per_s / total_flops
        out["families"][family] = {"models": len(members), "image_h": image_h, "text_h": text_h}
        p(f"| {family} | {len(members)} | {low:,.0f}–{high:,.0f} | {image_h:.2f} | {text_h:.2f} | {image_h + text_h:.2f} | {100 * share:.1f} % |")
    image_h = sum(grid.image_flops(m) for m in grid.models) / setup.flops_per_s / 3600
    text_h = sum(grid.text_flops(m) for m in grid.models) / setup.flops_per_s / 3600
    p(f"| **total** | **{len(grid.models)}** | | **{image_h:.2f}** | **{text_h:.2f}** | **{image_h + text_h:.2f}** | 100 % |\n")
    p(f"Grid total: {total_flops / 1e18:.2f} EFLOP (10^18 FLOPs); at {setup.flops_per_s / 1e12:.0f} TFLOP/s that is "
      f"{total_flops / setup.flops_per_s / 3600:.1f} GPU-hours.\n")
    p("GPU-hours at other utilisations: " + "; ".join(
        f"{gpu.upper()} " + ", ".join(f"{total_flops / (GPUS[gpu][0] * 1e12 * mfu) / 3600:.1f} at MFU {mfu:.2f}"
                                      for mfu in (0.15, 0.25, 0.35, 0.50))
        for gpu in ("h200", "a100")) + ".\n")
    biggest = max(grid.models, key=lambda m: grid.image_flops(m) + grid.text_flops(m))
    big_h = (grid.image_flops(biggest) + grid.text_flops(biggest)) / setup.flops_per_s / 3600
    out["totals"] = {"eflop": total_flops / 1e18, "gpu_h": total_flops / setup.flops_per_s / 3600,
                     "biggest_model": biggest.name, "biggest_model_h": big_h}

    groups = sorted({m.group for m in grid.models}, key=lambda g: (g.split("@")[0], int(g.split("@")[1])))
    p("### CPU cost per image (one core)\n")
    if cpu:
        p("Measured now (`--measure-cpu`), milliseconds per image, fastest of 5 rounds:\n")
        p("| images | mean file | decode | " + " | ".join(groups) + " |")
        p("|---|---:|---:|" + "---:|" * len(groups))
        for name, row in cpu.items():
            p(f"| {name} 500×375 JPEG | {row['mean_kb']:.0f} KB | {row['ms']['decode']:.2f} | "
              + " | ".join(f"{row['ms'][g]:.2f}" for g in groups) + " |")
        p("")
    group_sizes = {g: sum(1 for m in grid.models if m.group == g) for g in groups}
    p("Used for the plan (ms per image; views: the 5 paper-protocol views of one group):\n")
    p("| | decode | " + " | ".join(f"{g} ({group_sizes[g]})" for g in groups) + " |")
    p("|---|---:|" + "---:|" * len(groups))
    p("| ms | " + f"{setup.cpu_ms['decode']:.2f} | " + " | ".join(f"{setup.cpu_ms[g]:.2f}" for g in groups) + " |\n")
    mm_core_h = sum(grid.images * setup.cpu_s(m.group) for m in grid.models) / 3600
    dm_core_h = grid.images * (setup.cpu_ms["decode"] + sum(setup.cpu_ms[g] for g in groups)) / 1e3 / setup.cpu_scale / 3600
    p(f"CPU work for the whole grid: model-major {mm_core_h:.1f} core-hours ({grid.images:,} images decoded and "
      f"viewed once per model, {len(grid.models)} times); data-major {dm_core_h:.2f} core-hours (each image decoded once "
      f"and viewed once per group, {len(groups)} groups, when all models are resident).\n")
    out["cpu"] = {"model_major_core_h": mm_core_h, "data_major_core_h": dm_core_h, "measured": cpu}

    p("Cores per GPU that keep one GPU busy (model-major, one model at a time):\n")
    p("| model | image GFLOPs | images/s per GPU | core-ms per image | cores needed |")
    p("|---|---:|---:|---:|---:|")
    rates = []
    for m in grid.models:
        rate = setup.flops_per_s / (m.image_gflops * 1e9 * grid.views)
        rates.append((rate * setup.cpu_s(m.group), m, rate))
    rates.sort(key=lambda r: -r[0])
    for need, m, rate in rates[:4] + rates[-2:]:
        p(f"| {m.name} | {m.image_gflops:.1f} | {rate:,.0f} | {setup.cpu_s(m.group) * 1e3:.1f} | {need:.1f} |")
    weighted = mm_core_h * 3600 / (image_h * 3600)
    p(f"\nTime-weighted over the grid: {weighted:.2f} cores per GPU on average; the smallest models need "
      f"{rates[0][0]:.0f}.\n")

    p("### Wall time\n")
    p(f"{setup.cores_per_gpu:g} CPU cores per GPU. *As built*: the Ray executor, every GPU on one model at a time. "
      "*Packed*: model-major with each worker on its own model, (model, dataset) cells or image ranges of them no "
      f"longer than 1/{SPLIT_PER_SHARE} of a GPU's even share, longest first. *Data-major*: P model groups resident "
      "× S data shards, the best P.\n")
    p("| GPUs | even spread, GPU only | as built | of which loading | packed, cells | packed, ranges | "
      "data-major | P × S | model loads: as built / ranges / data-major |")
    p("|---:|---:|---:|---:|---:|---:|---:|---|---|")
    out["wall"] = {}
    for gpus in gpu_counts:
        built = model_major_ray(grid, setup, gpus)
        cells = model_major(grid, setup, gpus)
        ranges = model_major(grid, setup, gpus, split=True)
        dm = data_major(grid, setup, gpus)
        even = total_flops / setup.flops_per_s / gpus / 3600
        out["wall"][gpus] = {"even_h": even, "as_built": built, "packed_cells": cells, "packed_ranges": ranges,
                             "data_major": dm}
        p(f"| {gpus} | {even:.2f} h | {built['wall_h']:.2f} h | {built['load_h']:.2f} h | {cells['wall_h']:.2f} h | "
          f"{ranges['wall_h']:.2f} h | {dm['wall_h']:.2f} h | {dm['groups']} × {dm['shards']} | "
          f"{built['loads']} / {ranges['loads']} / {dm['loads']} |")
    p("")
    cells = model_major(grid, setup, gpu_counts[-1])
    p(f"Largest (model, dataset) cell: {cells['largest_unit']}, {cells['largest_unit_h']:.2f} h on one GPU.\n")
    dm = data_major(grid, setup, gpu_counts[0])
    p(f"Data-major on {gpu_counts[0]} GPUs: {dm['groups']} × {dm['shards']}, {dm['fewest_models_per_gpu']} to "
      f"{dm['models_per_gpu']} models per GPU; CPU work {dm['cpu_core_h']:.1f} core-hours against model-major's "
      f"{mm_core_h:.1f} ({dm['decodes']:,} decodes instead of {grid.images * len(grid.models):,}).\n")
    built = model_major_ray(grid, setup, gpu_counts[0])
    p(f"As built on {gpu_counts[0]} GPUs: loading {built['load_h']:.2f} h and text classifiers {built['text_h']:.2f} h "
      f"of {built['wall_h']:.2f} h ({100 * (built['load_h'] + built['text_h']) / built['wall_h']:.0f} %).\n")
    one = data_major(grid, setup, gpu_counts[0])["all_resident"]
    if one:
        p(f"All {len(grid.models)} models resident on one GPU: {one['resident_gib']:.0f} GiB of bf16 image towers "
          f"({setup.memory_gib:g} GiB GPU, {WORKSPACE_GIB:g} GiB kept for activations); loading them takes "
          f"{one['load_h_per_gpu'] * 60:.0f} min per GPU at the load assumption above.\n")
    p(f"The largest single model, {biggest.name}, is {big_h:.2f} GPU-hours.\n")

    p("### CPU cores per GPU\n")
    g = gpu_counts[0]
    p(f"On {g} GPUs: the fewest cores per GPU that keep each schedule within 5 % of its wall time with unlimited "
      f"cores, and its wall time with {setup.cores_per_gpu:g} cores per GPU, for CPU costs 1×, 2× and 4× the "
      "measured ones (photographs larger than 500×375 cost proportionally more to decode and resize):\n")
    p("| CPU cost | as built: cores/GPU | packed: cores/GPU | data-major: cores/GPU | as built | packed | data-major |")
    p("|---:|---:|---:|---:|---:|---:|---:|")
    out["cores"] = {}
    for factor in (1, 2, 4):
        scaled = Setup(**{**asdict(setup), "cpu_scale": setup.cpu_scale / factor})
        need = {
            "as_built": cores_needed(model_major_ray, grid, scaled, g),
            "packed": cores_needed(model_major, grid, scaled, g, split=True),
            "data_major": cores_needed(data_major, grid, scaled, g),
        }
        walls = {
            "as_built": model_major_ray(grid, scaled, g)["wall_h"],
            "packed": model_major(grid, scaled, g, split=True)["wall_h"],
            "data_major": data_major(grid, scaled, g)["wall_h"],
        }
        out["cores"][factor] = {"needed": need, "wall_h": walls}
        p(f"| {factor}× | {need['as_built']:.1f} | {need['packed']:.1f} | {need['data_major']:.1f} | "
          f"{walls['as_built']:.2f} h | {walls['packed']:.2f} h | {walls['data_major']:.2f} h |")
    p("")
    return out


def _walls(grid: Grid, base: Setup, gpu: str, gpus: int) -> tuple[float, ...]:
    """The three schedules' wall times on `gpus` of `gpu` at every MFU and core count of the fit table."""
    walls = []
    for mfu in (0.15, 0.25, 0.35, 0.50):
        for cores in (4, 14):
            setup = Setup(**{**asdict(base), "gpu": gpu, "peak_tflops": GPUS[gpu][0], "memory_gib": GPUS[gpu][1],
                             "mfu": mfu, "cores_per_gpu": cores})
            walls += [model_major_ray(grid, setup, gpus)["wall_h"], model_major(grid, setup, gpus, split=True)["wall_h"],
                      data_major(grid, setup, gpus)["wall_h"]]
    return tuple(walls)


def fit_table(grid: Grid, base: Setup, gpus: int = 8) -> dict:
    """Which (GPU, MFU, cores) combinations finish the grid within TARGET_HOURS on `gpus` GPUs."""
    print(f"### What fits {TARGET_HOURS:g} hours on one {gpus}-GPU node\n")
    print(f"Schedules as in the wall-time table; CPU costs as measured × {1 / base.cpu_scale:g}. "
          f"✓: within {TARGET_HOURS:g} h.\n")
    print("| GPU | MFU | cores/GPU | as built | packed, ranges | data-major |")
    print("|---|---:|---:|---:|---:|---:|")
    out = {}
    for gpu in ("h200", "h100", "a100"):
        peak, memory = GPUS[gpu]
        if gpu == "h100" and _walls(grid, base, "h100", gpus) == _walls(grid, base, "h200", gpus):
            print("| H100 | all | all | as H200 | as H200 | as H200 |")  # same peak; its 80 GB bind no schedule here
            continue
        for mfu in (0.15, 0.25, 0.35, 0.50):
            for cores in (4, 14):
                setup = Setup(**{**asdict(base), "gpu": gpu, "peak_tflops": peak, "memory_gib": memory, "mfu": mfu,
                                 "cores_per_gpu": cores})
                built = model_major_ray(grid, setup, gpus)["wall_h"]
                mm = model_major(grid, setup, gpus, split=True)["wall_h"]
                dm = data_major(grid, setup, gpus)["wall_h"]
                out[f"{gpu}/{mfu}/{cores}"] = {"as_built_h": built, "packed_h": mm, "data_major_h": dm}
                mark = lambda h: f"{h:.2f} h" + (" ✓" if h <= TARGET_HOURS else "")
                print(f"| {gpu.upper()} | {mfu:.2f} | {cores} | {mark(built)} | {mark(mm)} | {mark(dm)} |")
    schedules = {"as built": lambda st: model_major_ray(grid, st, gpus)["wall_h"],
                 "packed": lambda st: model_major(grid, st, gpus, split=True)["wall_h"],
                 "data-major": lambda st: data_major(grid, st, gpus)["wall_h"]}

    def least(name: str, field_name: str, low: float, high: float) -> float:
        """Smallest value of `field_name` (mfu or cores_per_gpu) for which the schedule fits TARGET_HOURS."""
        wall = schedules[name]
        for _ in range(40):
            mid = (low + high) / 2
            if wall(Setup(**{**asdict(base), field_name: mid})) <= TARGET_HOURS:
                high = mid
            else:
                low = mid
        return high

    print(f"\nOn {gpus} × {base.gpu.upper()}: the smallest MFU that fits {TARGET_HOURS:g} h with {base.cores_per_gpu:g} cores "
          "per GPU is " + ", ".join(f"{least(n, 'mfu', 0.01, 1.0):.2f} ({n})" for n in schedules)
          + f"; at MFU {base.mfu:g} the fewest cores per GPU that fit are "
          + ", ".join(f"{least(n, 'cores_per_gpu', 0.05, 256.0):.1f} ({n})" for n in schedules) + ".")
    total_flops = sum(grid.image_flops(m) + grid.text_flops(m) for m in grid.models)
    need = total_flops / (gpus * TARGET_HOURS * 3600)
    print(f"\nWith no overhead at all, {TARGET_HOURS:g} hours on {gpus} GPUs needs {need / 1e12:.0f} TFLOP/s sustained per GPU: "
          + ", ".join(f"MFU {need / (GPUS[g][0] * 1e12):.2f} on {g.upper()}" for g in GPUS) + ".\n")
    out["needed_tflops"] = need / 1e12
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", choices=sorted(GPUS), default="h200")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak per GPU (default: the --gpu's)")
    parser.add_argument("--memory-gib", type=float, help="GPU memory (default: the --gpu's)")
    parser.add_argument("--mfu", type=float, default=DEFAULT_MFU, help="model-FLOPs utilisation (measured: bench/gpu_check.sh)")
    parser.add_argument("--cores-per-gpu", type=float, default=DEFAULT_CORES_PER_GPU)
    parser.add_argument("--cpu-scale", type=float, default=1.0, help="how many times faster a server core is than the measuring one")
    parser.add_argument("--load-gbps", type=float, default=LOAD_GBPS)
    parser.add_argument("--gpus", default=",".join(map(str, DEFAULT_GPU_COUNTS)), help="GPU counts for the wall-time table")
    parser.add_argument("--measure-cpu", action="store_true", help="measure decode and view making on this CPU and use it")
    parser.add_argument("--cpu-images", type=int, default=200)
    parser.add_argument("--json", help="also write every number to this JSON file")
    parser.add_argument("--costs", help="reuse the counted FLOPs of an earlier --json file instead of counting again")
    args = parser.parse_args()

    start = time.perf_counter()
    if args.costs:
        earlier = json.loads(Path(args.costs).read_text(encoding="utf-8"))
        models = [ModelCost(**row) for row in earlier["models"]]
        checks, utilisation = earlier["checks"], earlier["utilisation"]
    else:
        models = model_costs()
        checks, utilisation = published_checks(), utilisation_checks()
    datasets = dataset_costs()
    grid = Grid(models, datasets, resolutions_per_image())
    groups = sorted({m.group for m in models})
    cpu = measure_cpu(groups, args.cpu_images) if args.measure_cpu else None
    cpu_ms = dict(cpu["textured"]["ms"]) if cpu else dict(MEASURED_CPU_MS)
    peak, memory = GPUS[args.gpu]
    setup = Setup(args.gpu, args.peak_tflops or peak, args.memory_gib or memory, args.mfu, args.cores_per_gpu, cpu_ms,
                  args.cpu_scale, args.load_gbps)
    out = report(grid, setup, tuple(int(g) for g in args.gpus.split(",")), checks, utilisation, cpu)
    out["fit"] = fit_table(grid, setup)
    print(f"(computed in {time.perf_counter() - start:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
