"""Hugging Face transformers models: CLIPModel and SiglipModel, from a hub id or a local folder."""

from __future__ import annotations

import torch

from ..errors import UserError
from .base import OPENAI_MEAN, OPENAI_STD, ImageConfig, ZeroShotModel
from .hub import NO_CONFIG, NO_WEIGHTS, PretrainedSource, pretrained_source

SUPPORTED_TYPES = ("clip", "siglip")


def _features(output) -> torch.Tensor:
    # transformers 5 returns a model output from get_*_features; older versions a plain tensor.
    if isinstance(output, torch.Tensor):
        return output
    return output.pooler_output


class HFModel(ZeroShotModel):
    def __init__(self, spec: str, family: str, model: torch.nn.Module, tokenizer, image: ImageConfig, text_padding):
        self.spec = spec
        self.family = family
        self.module = model
        self.tokenizer = tokenizer
        self.image = image
        self.text_padding = text_padding
        # A tokenizer saved without model_max_length reports ~1e30: SigLIP's max-length padding then fails;
        # the text tower's position limit bounds it.
        self.context_length = min(int(tokenizer.model_max_length), int(model.config.text_config.max_position_embeddings))
        self.logit_scale = float(model.logit_scale.exp().item())
        bias = getattr(model, "logit_bias", None)
        self.logit_bias = float(bias.item()) if bias is not None else 0.0

    @property
    def visual(self) -> torch.nn.Module:
        return self.module.vision_model

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return _features(self.module.get_image_features(pixel_values=self.normalize(pixels)))

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        # SigLIP was trained on max-length padded text; CLIP pads to the longest prompt.
        tokens = self.tokenizer(
            texts, padding=self.text_padding, truncation=True, max_length=self.context_length, return_tensors="pt"
        ).to(self.device)
        kwargs = {"input_ids": tokens["input_ids"]}
        if "attention_mask" in tokens and self.text_padding != "max_length":
            kwargs["attention_mask"] = tokens["attention_mask"]
        return _features(self.module.get_text_features(**kwargs))


def image_config(files: PretrainedSource, model) -> ImageConfig:
    """Input size from the model config; mean/std from the processor config, else CLIP's (also BLIP's)."""
    from transformers import AutoImageProcessor

    size = model.config.vision_config.image_size
    mean, std = OPENAI_MEAN, OPENAI_STD
    try:
        processor = AutoImageProcessor.from_pretrained(files.source, local_files_only=files.local_only)
        mean, std = tuple(processor.image_mean), tuple(processor.image_std)
    except (OSError, ValueError):
        pass  # no preprocessor_config.json: keep the defaults
    return ImageConfig(int(size), mean, std)


def family_of(name: str, model_type: str) -> str:
    lowered = name.lower()
    if model_type == "siglip":
        return "siglip"
    if "metaclip" in lowered:
        return "metaclip"
    if "openai" in lowered:
        return "clip"
    if "laion" in lowered or "datacomp" in lowered or "dfn" in lowered:
        return "openclip"
    return "clip"


def load_hf(name: str) -> HFModel:
    from transformers import AutoConfig, AutoTokenizer, CLIPModel, SiglipModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    with pretrained_source(name) as files:
        config = files.load(AutoConfig.from_pretrained, NO_CONFIG)
        if config.model_type not in SUPPORTED_TYPES:
            raise UserError(f"{files.spec} is a {config.model_type!r} model; hf: supports CLIPModel and SiglipModel ({', '.join(SUPPORTED_TYPES)}).")
        model_class = SiglipModel if config.model_type == "siglip" else CLIPModel
        model = files.load(model_class.from_pretrained, NO_WEIGHTS)
        tokenizer = files.load(AutoTokenizer.from_pretrained, NO_WEIGHTS)
        image = image_config(files, model)
    padding = "max_length" if config.model_type == "siglip" else True
    return HFModel(files.spec, family_of(name, config.model_type), model, tokenizer, image, padding)
