"""BLIP through transformers' BlipForImageTextRetrieval, scored with its image-text contrastive (ITC) head.

Zero-shot classification uses the two unimodal encoders only: the [CLS] token of the vision tower through
`vision_proj`, and the [CLS] token of the text encoder run without image cross-attention through
`text_proj`; cosine similarity of the two decides. The image-text matching head is not used.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import UserError
from .base import OPENAI_MEAN, OPENAI_STD, ImageConfig, ZeroShotModel
from .hub import hub_mode, load_failure


def looks_like_blip(name: str) -> bool:
    """True for a local folder whose config.json says model_type "blip", or a hub id naming BLIP."""
    local = Path(name).expanduser()
    if local.is_dir():
        try:
            return json.loads((local / "config.json").read_text(encoding="utf-8")).get("model_type") == "blip"
        except (OSError, ValueError):
            return False
    return "blip" in name.lower() and "blip-2" not in name.lower() and "blip2" not in name.lower()


class BlipRetrievalModel(ZeroShotModel):
    def __init__(self, spec: str, model: torch.nn.Module, tokenizer, image: ImageConfig, max_length: int):
        self.spec = spec
        self.family = "blip"
        self.module = model
        self.tokenizer = tokenizer
        self.image = image
        self.max_length = max_length
        # The retrieval heads carry no temperature; CLIP's 100 keeps the paper's recipe (argmax does not care).
        self.logit_scale = 100.0

    @property
    def visual(self) -> torch.nn.Module:
        return self.module.vision_model

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden = self.module.vision_model(pixel_values=self.normalize(pixels)).last_hidden_state
        return self.module.vision_proj(hidden[:, 0, :])

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.module.text_encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        return self.module.text_proj(hidden[:, 0, :])


def _image_config(source: str, model, local_only: bool) -> ImageConfig:
    from transformers import AutoImageProcessor

    size = model.config.vision_config.image_size
    mean, std = OPENAI_MEAN, OPENAI_STD  # BLIP's own normalisation, used when no processor config exists
    try:
        processor = AutoImageProcessor.from_pretrained(source, local_files_only=local_only)
        mean, std = tuple(processor.image_mean), tuple(processor.image_std)
    except (OSError, ValueError):
        pass
    return ImageConfig(int(size), mean, std)


def load_blip(name: str) -> "BlipRetrievalModel":
    """`name` is a hub id (e.g. Salesforce/blip-itm-base-coco) or a folder saved with save_pretrained."""
    from transformers import AutoConfig, AutoTokenizer, BlipForImageTextRetrieval
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    spec = f"hf:{name}"
    local = Path(name).expanduser()
    source = str(local) if local.is_dir() else name
    with hub_mode() as online:
        local_only = local.is_dir() or not online
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=local_only)
        except (OSError, ValueError) as error:
            if local.is_dir():
                raise UserError(f"{name} has no readable config.json; save the model there with save_pretrained().") from error
            raise load_failure(spec, online, error) from error
        if config.model_type != "blip":
            raise UserError(f"{spec} is a {config.model_type!r} model, not BLIP; use a BLIP retrieval checkpoint such as hf:Salesforce/blip-itm-base-coco.")
        try:
            model, info = BlipForImageTextRetrieval.from_pretrained(source, local_files_only=local_only, output_loading_info=True)
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        except (OSError, ValueError) as error:
            if local.is_dir():
                raise UserError(f"{name} lacks model weights or tokenizer files; save both there with save_pretrained().") from error
            raise load_failure(spec, online, error) from error
        # A captioning or VQA BLIP checkpoint lacks the ITC projections; transformers would fill them randomly.
        missing = [k for k in info.get("missing_keys", []) if not k.startswith("itm_head")]
        if missing:
            raise UserError(
                f"{spec} is not a BLIP retrieval checkpoint ({len(missing)} ITC weights missing, e.g. {sorted(missing)[0]}); "
                "use one such as hf:Salesforce/blip-itm-base-coco."
            )
        image = _image_config(source, model, local_only)
    max_length = min(int(config.text_config.max_position_embeddings), int(getattr(tokenizer, "model_max_length", 512) or 512))
    return BlipRetrievalModel(spec, model, tokenizer, image, max_length)
