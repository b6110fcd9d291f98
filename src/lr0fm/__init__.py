"""lr0fm: how zero-shot classification of vision-language models breaks at low resolution, and how to fix it."""

__version__ = "0.1.0"

__all__ = ["__version__", "evaluate", "load_dataset", "load_model", "open_results", "synthesize", "train_tokens"]


def __getattr__(name: str):
    # The API pulls in torch; load it on first use so torch-free rooms (store, metrics) stay light.
    if name in __all__ or name == "api":  # lr0fm.api.list_models() etc. work after a plain `import lr0fm`
        import importlib

        api = importlib.import_module(f"{__name__}.api")
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'lr0fm' has no attribute {name!r}")
