"""Executors: run a Plan's work units into the results store.

* `LocalExecutor` (``--executor local``, the default): this process, one device (`local.py`).
* `RayExecutor` (``--executor ray``): a Ray cluster; CPU tasks decode, GPU actors forward, the driver is
  the one writer of the database (`cluster.py`; Ray is the optional extra ``lr0fm[ray]``).

Both share the run loop, the cell bookkeeping and the batch steps of `base.py`.
"""

from __future__ import annotations

from ..plan import EXECUTORS, EvalConfig
from .base import Chunk, EvalResult, Executor, ImageViews, ModelFacts, provenance
from .local import LocalExecutor, predict_range, run_unit


def executor_for(config: EvalConfig) -> Executor:
    """The executor `config.executor` names (checked by `plan.plan`)."""
    if config.executor == "ray":
        from .cluster import RayExecutor

        return RayExecutor()
    return LocalExecutor()


__all__ = ["Chunk", "EXECUTORS", "EvalResult", "Executor", "ImageViews", "LocalExecutor", "ModelFacts",
           "executor_for", "predict_range", "provenance", "run_unit"]
