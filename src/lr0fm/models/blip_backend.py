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
from .base import ImageConfig, ZeroShotModel
from .hf_backend import image_config
from .hub import NO_CONFIG, NO_WEIGHTS, pretrained_source


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


def load_blip(name: str) -> "BlipRetrievalModel":
    """`name` is a hub id (e.g. Salesforce/blip-itm-base-coco) or a folder saved with save_pretrained."""
    from transformers import AutoConfig, AutoTokenizer, BlipForImageTextRetrieval
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    with pretrained_source(name) as files:
        spec = files.spec
        config = files.load(AutoConfig.from_pretrained, NO_CONFIG)
        if config.model_type != "blip":
            raise UserError(f"{spec} is a {config.model_type!r} model, not BLIP; use a BLIP retrieval checkpoint such as hf:Salesforce/blip-itm-base-coco.")
        model, info = files.load(BlipForImageTextRetrieval.from_pretrained, NO_WEIGHTS, output_loading_info=True)
        tokenizer = files.load(AutoTokenizer.from_pretrained, NO_WEIGHTS)
        # A captioning or VQA BLIP checkpoint lacks the ITC projections; transformers would fill them randomly.
        missing = [k for k in info.get("missing_keys", []) if not k.startswith("itm_head")]
        if missing:
            raise UserError(
                f"{spec} is not a BLIP retrieval checkpoint ({len(missing)} ITC weights missing, e.g. {sorted(missing)[0]}); "
                "use one such as hf:Salesforce/blip-itm-base-coco."
            )
        image = image_config(files, model)
    max_length = min(int(config.text_config.max_position_embeddings), int(getattr(tokenizer, "model_max_length", 512) or 512))
    return BlipRetrievalModel(spec, model, tokenizer, image, max_length)
