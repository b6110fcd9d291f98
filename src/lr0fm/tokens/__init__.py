"""LR-TK0: learnable low-resolution tokens for frozen ViTs (wrapper, views, pools, loss, trainer, files),
and the baselines trained the same way: VPT-deep prompts and a tuned low-resolution patch embedding.

    model = lr0fm.load_model("lr0fm-tiny")
    tokenized = wrap(model)                      # tokens on, backbone frozen
    with tokenized.tokens_off(): ...             # the original model, exactly
    lr0fm.train_tokens("lr0fm-tiny", "fashion_mnist:train", "tiny.tokens.safetensors", steps=300)
    lr0fm.load_model("lr0fm-tiny+tokens=tiny.tokens.safetensors")   # any evaluation takes this spec
"""

from .files import attach_tokens, read_tokens, save_tokens
from .train import TokenTrainConfig, TrainResult
from .wrapper import VARIANTS, LowResTokens, TokenLayout, TokenModel, matched_prompts, wrap

__all__ = [
    "VARIANTS", "LowResTokens", "TokenLayout", "TokenModel", "TokenTrainConfig", "TrainResult", "attach_tokens",
    "matched_prompts", "read_tokens", "save_tokens", "wrap",
]
