"""Speed of the two metric computations that are more than arithmetic.

* `fit_war_weights` on the paper's 66-backbone table at 16 px (seeded differential evolution), what
  `lr0fm weights fit` runs;
* `bootstrap_robustness` with 1,000 resamples of a 10,000-image dataset at five resolutions, what
  `lr0fm report` runs per model and dataset.

Usage:
    python bench/metrics_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lr0fm import metrics, reference


def best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    table = reference.paper_accuracy()
    fit = best_of(args.repeats, lambda: metrics.fit_war_weights(table, resolution=16, seed=0))
    rng = np.random.default_rng(0)
    cells = {r: rng.random(10_000) < 0.6 for r in ("native", "128", "64", "32", "16")}
    boot = best_of(args.repeats, lambda: metrics.bootstrap_robustness({"imagenet": cells}, n_resamples=1000))
    print("| computation | seconds (best of %d) |" % args.repeats)
    print("|---|---:|")
    print(f"| fit_war_weights, paper table (66 backbones × 15 datasets), 16 px | {fit:.2f} |")
    print(f"| bootstrap_robustness, 10,000 images × 5 resolutions, 1,000 resamples | {boot:.2f} |")


if __name__ == "__main__":
    main()
