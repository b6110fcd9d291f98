"""lr0fm: how zero-shot classification of vision-language models breaks at low resolution, and how to fix it."""

__version__ = "0.1.0"

from .api import evaluate, load_dataset, load_model, open_results  # noqa: E402

__all__ = ["__version__", "evaluate", "load_dataset", "load_model", "open_results"]
