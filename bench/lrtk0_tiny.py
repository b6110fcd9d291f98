"""LR-TK0 on the bundled lr0fm-tiny: does a small token budget buy low-resolution accuracy, and at what cost at native?

For each variant (always-on tokens as in the paper, resolution-conditioned tokens, VPT-deep with the same
parameter budget, the patch-embedding tuning baseline) and each seed, tokens are trained on the Fashion-MNIST
*train* split (labels unused) and evaluated zero-shot on the test split at native (32 px) and 24/16/12/8 px,
canonical protocol. The plain model is the baseline. Top-1 is reported as mean ± sample std over seeds, and
the table is appended to bench/RESULTS.md together with the command that produced it. The learning rate is
chosen beforehand on held-out train images by bench/lrtk0_search.py.

Trained tokens and the results database stay in --work, so rerunning the same command reuses finished runs.

Usage:
    python bench/lrtk0_tiny.py [--steps 300] [--batch-size 128] [--seeds 0,1,2] [--variants always,resolution,vpt,patch]
                               [--limit N] [--work ~/.cache/lr0fm/bench-lrtk0-tiny] [--workers 2] [--no-append]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

import lr0fm  # noqa: E402
from lr0fm.tokens import read_tokens  # noqa: E402

BENCH = Path(__file__).resolve().parent
RESOLUTIONS = ["native", "24", "16", "12", "8"]
LABELS = {"always": "LR-TK0 (always on)", "resolution": "LR-TK0, resolution-conditioned", "vpt": "VPT-deep (matched budget)",
          "patch": "patch-embedding tuning (MSPE-style)"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lr0fm-tiny")
    parser.add_argument("--weights", default=None, help="Other weights for the model (e.g. a retrained lr0fm-tiny).")
    parser.add_argument("--pool", default="fashion_mnist:train")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default="always,resolution,vpt")
    parser.add_argument("--limit", type=int, default=None, help="Evaluate on the first N test images only.")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "lr0fm" / "bench-lrtk0-tiny")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-append", action="store_true", help="Print the table without appending it to RESULTS.md.")
    return parser.parse_args(argv)


def top1(frame) -> dict[str, float]:
    return {str(row["resolution"]): 100 * float(row["top1"]) for _, row in frame.iterrows()}


def evaluate(spec: str, args) -> dict[str, float]:
    frame = lr0fm.evaluate(spec, args.dataset, resolutions=",".join(RESOLUTIONS), protocol="canonical",
                           db=args.work / "results.sqlite", limit=args.limit, workers=args.workers, device=args.device,
                           batch_size=256, weights=args.weights)
    return top1(frame)


def main(argv=None) -> None:
    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = [v.strip() for v in args.variants.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)

    rows: dict[str, list[dict[str, float]]] = {"baseline": [evaluate(args.model, args)]}
    timings: dict[str, list[float]] = {}
    parameters: dict[str, int] = {}
    for seed in seeds:  # seed-major, so a stopped run already holds every variant for the first seeds
        for variant in variants:
            out = args.work / f"{variant}-seed{seed}-{args.steps}x{args.batch_size}-lr{args.lr:g}.safetensors"
            if not out.exists():
                result = lr0fm.train_tokens(args.model, args.pool, out, steps=args.steps, batch_size=args.batch_size,
                                            lr=args.lr, seed=seed, variant=variant, workers=args.workers, weights=args.weights,
                                            device=args.device, checkpoint_every=max(1, args.steps // 4), resume=True)
                print(f"{variant} seed {seed}: trained in {result.seconds:.0f} s, final loss {result.final_loss:.4f}", flush=True)
            metadata, _ = read_tokens(out)
            timings.setdefault(variant, []).append(float(metadata["training"]["seconds"]))
            parameters[variant] = int(metadata["training"]["token_parameters"])
            rows.setdefault(variant, []).append(evaluate(f"{args.model}+tokens={out}", args))
            print(f"{variant} seed {seed}: " + ", ".join(f"{r} {rows[variant][-1][r]:.2f}" for r in RESOLUTIONS), flush=True)

    table = render(rows, timings, parameters, args, seeds)
    print(table)
    if not args.no_append:
        with open(BENCH / "RESULTS.md", "a", encoding="utf-8") as handle:
            handle.write(table + "\n")
        print(f"Appended to {BENCH / 'RESULTS.md'}")


def render(rows, timings, parameters, args, seeds) -> str:
    command = "python bench/lrtk0_tiny.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    evaluated = f"first {args.limit}" if args.limit else "all 10,000"
    lines = [
        f"## LR-TK0 on {args.model} ({date.today().isoformat()})",
        "",
        f"`{command}`",
        "",
        f"Tokens trained on `{args.pool}` (labels unused), {args.steps} steps × {args.batch_size} images "
        f"(+3 low-resolution views each), lr {args.lr}, seeds {', '.join(map(str, seeds))}; zero-shot top-1 (%) on "
        f"{args.dataset} test ({evaluated} images), canonical protocol. Mean ± std over seeds.",
        "",
        "| model | token params | train s/run | " + " | ".join(f"{r} px" if r != "native" else "native 32 px" for r in RESOLUTIONS) + " |",
        "|---|---:|---:|" + "---:|" * len(RESOLUTIONS),
    ]
    for name, runs in rows.items():
        cells = []
        for resolution in RESOLUTIONS:
            values = np.array([run[resolution] for run in runs])
            spread = f" ± {values.std(ddof=1):.2f}" if len(values) > 1 else ""
            cells.append(f"{values.mean():.2f}{spread}")
        label = LABELS.get(name, "plain model (no tokens)")
        params = f"{parameters[name]:,}" if name in parameters else "0"
        seconds = f"{np.mean(timings[name]):.0f}" if name in timings else "–"
        lines.append(f"| {label} | {params} | {seconds} | " + " | ".join(cells) + " |")
    lines += ["", *targets(rows)]
    return "\n".join(lines) + "\n"


def mean_std(values, fmt: str = ".1f") -> str:
    values = np.asarray(values, dtype=float)
    mean = format(values.mean(), fmt)
    return f"{mean} ± {format(values.std(ddof=1), fmt.lstrip('+'))}" if len(values) > 1 else mean


def targets(rows) -> list[str]:
    """Each variant against the demonstration's targets, per seed, then mean ± std."""
    base = rows["baseline"][0]
    lowest = RESOLUTIONS[-1]
    gap = base["native"] - base[lowest]
    gains = {name: [run[lowest] - base[lowest] for run in runs] for name, runs in rows.items() if name != "baseline"}
    lines = [f"Gap between the plain model's native and {lowest}-px top-1: {gap:.2f} points."]
    for name, runs in rows.items():
        if name == "baseline":
            continue
        closed = [100 * g / gap for g in gains[name]]
        native = [run["native"] - base["native"] for run in runs]
        line = (f"* {LABELS.get(name, name)}: closes {mean_std(closed)} % of it; native changes by "
                f"{mean_std(native, '+.2f')} points")
        if name != "always" and "always" in gains and len(gains["always"]) == len(gains[name]):
            kept = [100 * g / a for g, a in zip(gains[name], gains["always"])]
            line += f"; keeps {mean_std(kept)} % of the always-on tokens' {lowest}-px gain (same seed)"
        lines.append(line + ".")
    return lines


if __name__ == "__main__":
    main()
