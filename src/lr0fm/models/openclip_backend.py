"""open_clip models: pretrained tags, hub repos, or an architecture with a local weights file."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import torch

from ..errors import UserError
from .base import OPENAI_MEAN, OPENAI_STD, ImageConfig, ZeroShotModel
from .hub import hub_mode, load_failure


def family_of(name: str, tag: str | None) -> str:
    """The LR0.FM family of an open_clip model, which picks its `paper` resolution protocol."""
    lowered = name.lower()
    tag = (tag or "").lower()
    if tag == "openai" or "openai" in lowered:
        return "clip"
    if tag.startswith("metaclip") or "metaclip" in lowered:
        return "metaclip"
    if "siglip" in lowered:
        return "siglip"
    if "clipa" in lowered:
        return "clipa"
    if lowered.startswith("coca") or "coca" in lowered:
        return "coca"
    if "eva" in lowered:
        return "eva"
    return "openclip"


class OpenClipModel(ZeroShotModel):
    def __init__(self, spec: str, family: str, clip: torch.nn.Module, tokenizer, image: ImageConfig):
        self.spec = spec
        self.family = family
        self.module = clip
        self.tokenizer = tokenizer
        self.image = image
        self.logit_scale = float(clip.logit_scale.exp().item()) if getattr(clip, "logit_scale", None) is not None else 100.0
        bias = getattr(clip, "logit_bias", None)
        self.logit_bias = float(bias.item()) if bias is not None else 0.0

    @property
    def visual(self) -> torch.nn.Module:
        return self.module.visual

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.module.encode_image(self.normalize(pixels))

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.device)
        return self.module.encode_text(tokens)


def _image_config(clip: torch.nn.Module) -> ImageConfig:
    cfg = getattr(clip.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size") or clip.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    return ImageConfig(int(size), tuple(cfg.get("mean") or OPENAI_MEAN), tuple(cfg.get("std") or OPENAI_STD))


@contextlib.contextmanager
def _root_logging_silenced():
    # open_clip logs each download failure at ERROR level before raising; we raise our own sentence instead.
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        root.setLevel(previous)


def check_openclip(arch: str, tag: str | None) -> dict:
    """The pretrained config of `arch`/`tag` ({} without a tag); a UserError for an unknown architecture or tag."""
    import open_clip

    if arch not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if m.lower().startswith(arch.lower()[:5])][:8]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"Unknown open_clip architecture {arch!r}{hint}; "
                        "`python -c \"import open_clip; print(open_clip.list_models())\"` lists them all.")
    if not tag:
        return {}
    config = open_clip.get_pretrained_cfg(arch, tag)
    if not config:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise UserError(f"Unknown pretrained tag {tag!r} for {arch}; use one of: {', '.join(tags) or '(none: pass --weights FILE)'}.")
    return config


def load_openclip(name: str, tag: str | None = None, weights: str | None = None) -> OpenClipModel:
    """An open_clip model: `name` is an architecture (with an optional pretrained `tag` or a local `weights`
    file) or "hf-hub:ORG/NAME"."""
    import open_clip

    spec = f"openclip:{name}" + (f"/{tag}" if tag else "")
    if name.startswith("hf-hub:"):
        with hub_mode() as online, _root_logging_silenced():
            try:
                clip = open_clip.create_model(name)
                tokenizer = open_clip.get_tokenizer(name)
            except Exception as error:
                raise load_failure(spec, online, error) from error
        return OpenClipModel(spec, family_of(name, None), clip, tokenizer, _image_config(clip))

    arch = name
    tag_cfg = check_openclip(arch, tag)
    quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    preprocess = {k: tag_cfg[k] for k in ("mean", "std") if k in tag_cfg}
    if weights:
        with _root_logging_silenced():
            clip = open_clip.create_model(arch, pretrained=None, force_quick_gelu=quick_gelu, force_preprocess_cfg=preprocess)
        load_weights_file(clip, weights, arch)
    elif tag:
        with hub_mode() as online, _root_logging_silenced():
            try:
                clip = open_clip.create_model(arch, pretrained=tag, force_quick_gelu=quick_gelu)
            except RuntimeError as error:
                raise load_failure(spec, online, error) from error
    else:
        with _root_logging_silenced():
            clip = open_clip.create_model(arch, pretrained=None)
        logging.getLogger(__name__).warning("openclip:%s has no pretrained tag and no --weights: random weights", arch)
    return OpenClipModel(spec, family_of(arch, tag), clip, _tokenizer(arch, weights), _image_config(clip))


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def _tokenizer(arch: str, weights: str | None):
    """open_clip's tokenizer for `arch`. One that lives on the Hugging Face hub is read from the weights
    file's folder when that folder holds it (saved with save_pretrained), else from the hub's cache or the
    hub; when it cannot be had, one sentence names it and says how to supply it."""
    import open_clip
    from open_clip.tokenizer import HFTokenizer

    text = (open_clip.get_model_config(arch) or {}).get("text_cfg", {})
    hub_name = text.get("hf_tokenizer_name")
    if not hub_name:
        return open_clip.get_tokenizer(arch)
    folder = Path(weights).expanduser().parent if weights else None
    if folder is not None and any((folder / name).is_file() for name in TOKENIZER_FILES):
        return HFTokenizer(str(folder), context_length=text.get("context_length", 77),
                           tokenizer_mode=text.get("tokenizer_mode"), **text.get("tokenizer_kwargs", {}))
    with hub_mode() as online:
        try:
            return open_clip.get_tokenizer(arch)
        except OSError:
            where = "is not in the local cache and the hub cannot be reached" if not online else "could not be had"
            raise UserError(
                f"The tokenizer of openclip:{arch}, {hub_name} on the Hugging Face hub, {where}; run once online to "
                f"cache it, or save it (transformers' AutoTokenizer.save_pretrained) into the folder of the "
                f"--weights file."
            ) from None


def load_weights_file(clip: torch.nn.Module, weights: str, arch: str) -> None:
    """Load a safetensors file or a torch checkpoint (weights_only=True) into `clip`, strictly."""
    import open_clip
    from open_clip.factory import load_state_dict

    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(f"Weights file {weights} does not exist; pass the path of a .safetensors or .pt checkpoint.")
    try:
        with warnings.catch_warnings():  # torch's note on a bare pickle's protocol: our sentence below says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            open_clip.load_checkpoint(clip, str(path), strict=True, weights_only=True)
    except Exception as error:
        # open_clip fails on another architecture's weights with RuntimeError or AssertionError (its
        # positional-embedding resizers assert); a file we can read as a state dict is a misfit, not garbage.
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                state = load_state_dict(str(path), weights_only=True)
        except Exception:
            state = None
        if not isinstance(state, dict) or not state:
            raise _unreadable(weights, error) from error
        expected = clip.state_dict()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        reshaped = [
            f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
            for k, v in expected.items()
            if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
        ]
        detail = (
            f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}), "
            f"{len(reshaped)} with other shapes (e.g. {reshaped[:2]})"
        )
        raise UserError(f"Weights file {weights} does not fit architecture {arch}: {detail}; check the ARCH in the model spec.") from error


def _unreadable(weights: str, error: Exception) -> UserError:
    return UserError(
        f"Could not read weights file {weights} ({type(error).__name__}); it must be a safetensors file or a "
        "torch checkpoint loadable with weights_only=True."
    )
