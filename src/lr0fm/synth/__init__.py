"""Synthetic HR training pool for LR-TK0: PixArt-α images from captions, with a manifest of caption ids.

The generator (diffusers) is optional: pip install 'lr0fm[synth]'. Reading a pool needs neither torch nor diffusers.
"""

from .pool import MANIFEST, image_file, image_seed, read_captions, read_manifest

__all__ = ["DEFAULT_MODEL", "MANIFEST", "SynthResult", "image_file", "image_seed", "load_pipeline", "read_captions",
           "read_manifest", "synthesize"]


def __getattr__(name: str):
    # generate.py pulls in rich and, on use, torch and diffusers; a pool reader needs none of that.
    if name in ("DEFAULT_MODEL", "SynthResult", "load_pipeline", "synthesize"):
        from . import generate

        return getattr(generate, name)
    raise AttributeError(f"module 'lr0fm.synth' has no attribute {name!r}")
