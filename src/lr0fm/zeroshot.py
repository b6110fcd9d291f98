"""Text classifiers (prompt ensembling, cached on disk) and scoring of image embeddings."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .fileio import atomic_path
from .models.base import ZeroShotModel


def classifier_key(model: ZeroShotModel, classnames: list[str], templates: list[str]) -> str:
    payload = json.dumps([model.spec, model.fingerprint(), classnames, templates]).encode()
    return hashlib.sha256(payload).hexdigest()[:24]


@torch.inference_mode()
def build_classifier(
    model: ZeroShotModel, classnames: list[str], templates: list[str], batch_size: int = 256
) -> torch.Tensor:
    """(D, C) class weights: each prompt embedding normalised, averaged per class, renormalised."""
    if not classnames or not templates:
        raise ValueError("a zero-shot classifier needs at least one class name and one template")
    prompts = [template.replace("{}", name) for name in classnames for template in templates]
    embeddings = []
    for start in range(0, len(prompts), batch_size):
        embeddings.append(F.normalize(model.encode_text(prompts[start : start + batch_size]).float(), dim=-1))
    per_prompt = torch.cat(embeddings).view(len(classnames), len(templates), -1)
    return F.normalize(per_prompt.mean(dim=1), dim=-1).T.contiguous()


def cached_classifier(
    model: ZeroShotModel, classnames: list[str], templates: list[str], cache_dir: str | Path | None
) -> torch.Tensor:
    """build_classifier, reused from `cache_dir` when the model, class names and templates match."""
    if cache_dir is None:
        return build_classifier(model, classnames, templates)
    path = Path(cache_dir) / f"{classifier_key(model, classnames, templates)}.safetensors"
    if path.exists():
        try:
            return load_file(str(path))["classifier"]
        except Exception:  # a damaged cache file is rebuilt, never trusted
            path.unlink(missing_ok=True)
    classifier = build_classifier(model, classnames, templates)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a killed run never leaves half a cache entry
        save_file({"classifier": classifier.cpu().contiguous()}, tmp, metadata={"spec": model.spec})
    return classifier


def logits(model: ZeroShotModel, image_embeddings: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """scale × cosine(image, class) (+ bias for sigmoid heads, which keeps the ranking)."""
    image_embeddings = F.normalize(image_embeddings.float(), dim=-1)
    return model.logit_scale * image_embeddings @ classifier.to(image_embeddings.device) + model.logit_bias


def top_k(scores: torch.Tensor, k: int = 5) -> torch.Tensor:
    """(B, C) scores -> (B, k) class indices, best first; padded with -1 when there are fewer than k classes."""
    k_available = min(k, scores.shape[-1])
    indices = scores.topk(k_available, dim=-1).indices
    if k_available < k:
        indices = F.pad(indices, (0, k - k_available), value=-1)
    return indices
