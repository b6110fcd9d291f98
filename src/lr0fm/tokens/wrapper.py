"""LR-TK0: learnable low-resolution tokens added to a frozen ViT through forward hooks.

Variants (all keep the backbone frozen and add one learnable temperature for the training loss):

* ``always``: the paper's tokens. One (1, N, D) set added to the patch embeddings before the class token and
  the position embedding are attached, and one set added to the patch positions right before each block
  (prefix tokens untouched). With `first_block` k > 0 only blocks k.. get a set, and there is no input set.
* ``resolution``: the same tokens, each set scaled by a gate computed from the octaves of resolution the
  image lost, d = log2(native / source): min(d, 1) times a tiny MLP of d. The ramp makes the tokens vanish
  exactly for images that were never low resolution (the base model's output, so no native loss) and fade
  in over the first octave; the MLP learns each set's strength below that.
* ``vpt``: the VPT-deep baseline. P learnable prompt tokens are inserted after the prefix tokens before
  block k and replaced before every later block; they are dropped after the last block, so pooling and
  heads see the original sequence.
* ``patch``: a patch-embedding tuning baseline in the spirit of MSPE (multi-scale patch embedding). A copy of
  the projection that makes the patch tokens (`Anatomy.patch_projection`), initialised from the frozen
  original, is the only thing learned; it replaces the original for the images whose source resolution is
  below native, and native images (or an unknown source resolution) go through the original, so there the
  model is exactly the base model. The images still reach the model at its native size, so the copy keeps
  the original's shape and only its weights adapt to upsampled low-resolution pixels.

With tokens switched off (`TokenModel.tokens_off()`) no hook touches a tensor: outputs equal the base model's.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Iterator

import torch
from torch import nn

from ..errors import UserError
from ..models.base import ZeroShotModel, fingerprint_module
from .backbones import Anatomy, add_to_patch_embedding, locate, vision_tower

VARIANTS = {
    "always": "the paper's LR-TK0: additive per-position tokens, always on",
    "resolution": "additive tokens scaled by a learned function of the source resolution (fades out at native)",
    "vpt": "VPT-deep baseline: prompt tokens inserted before each block (sized to the tokens' parameter budget)",
    "patch": "patch-embedding tuning baseline: a learned copy of the patch embedding for images below native",
}
CONDITIONED = ("resolution", "patch")  # the variants that need each image's source resolution
GATE_HIDDEN = 16
INIT_TEMPERATURE = 0.07  # CLIP's; the authors' open_clip code started at 1 by mistake (PAPER.md §5)
MAX_LOGIT_SCALE = 100.0


@dataclass(frozen=True)
class TokenLayout:
    """Everything that fixes the shapes of a token set; stored in the tokens file."""

    variant: str
    backbone: str  # "open_clip", "timm" or "transformers"
    num_patches: int
    width: int
    num_blocks: int
    num_prefix: int
    native: int  # the model's input size, the reference of the resolution gate
    first_block: int = 0
    prompts: int = 0  # VPT-deep prompt tokens per block (0 for the other variants)
    gate_hidden: int = 0  # hidden width of the resolution gate (0 for the other variants)

    @property
    def has_input_set(self) -> bool:
        return self.variant not in ("vpt", "patch") and self.first_block == 0

    @property
    def conditioned(self) -> bool:
        """Whether the variant needs each image's source resolution (`TokenModel.encode_image`)."""
        return self.variant in CONDITIONED

    @property
    def block_sets(self) -> int:
        return self.num_blocks - self.first_block

    @property
    def num_sets(self) -> int:
        return int(self.has_input_set) + self.block_sets

    def to_dict(self) -> dict:
        return asdict(self)


def matched_prompts(num_patches: int, num_blocks: int, first_block: int = 0) -> int:
    """Prompt tokens per block giving VPT-deep at least the parameter budget of the additive tokens."""
    sets = int(first_block == 0) + num_blocks - first_block
    return math.ceil(sets * num_patches / (num_blocks - first_block))


def make_layout(anatomy: Anatomy, native: int, variant: str = "always", first_block: int = 0,
                prompts: int | None = None) -> TokenLayout:
    if variant not in VARIANTS:
        raise UserError(f"Unknown token variant {variant!r}; use one of: {', '.join(VARIANTS)}.")
    if not 0 <= first_block < anatomy.num_blocks:
        raise UserError(f"--first-block {first_block} is out of range; this model has blocks 0..{anatomy.num_blocks - 1}.")
    if variant == "vpt":
        if anatomy.rope:
            raise UserError("The VPT-deep baseline cannot run on towers with rotary position embeddings (e.g. EVA02): "
                            "their rotary table has no room for prompt tokens; use --variant always or resolution.")
        prompts = matched_prompts(anatomy.num_patches, anatomy.num_blocks, first_block) if prompts is None else int(prompts)
        if prompts <= 0:
            raise UserError(f"--prompts must be a positive number of prompt tokens, not {prompts}.")
    elif prompts:
        raise UserError("--prompts applies to --variant vpt only.")
    if variant == "patch" and first_block:
        raise UserError("--first-block applies to the token variants; --variant patch tunes the patch embedding alone.")
    return TokenLayout(
        variant=variant, backbone=anatomy.kind, num_patches=anatomy.num_patches, width=anatomy.width,
        num_blocks=anatomy.num_blocks, num_prefix=anatomy.num_prefix, native=int(native), first_block=int(first_block),
        prompts=int(prompts or 0) if variant == "vpt" else 0, gate_hidden=GATE_HIDDEN if variant == "resolution" else 0,
    )


class LowResTokens(nn.Module):
    """The learnable parameters of one variant, and the hooks that apply them to a tower.

    Args:
        layout: the shapes and the variant.
        init_std: standard deviation of the token init (truncated at two); 0 starts the tokens at zero.
        seed: seed of the token and gate init (None: the global RNG).
        patch_projection: the tower's patch projection (`Anatomy.patch_projection`); the ``patch`` variant
            starts its copy from it, and needs it.
    """

    def __init__(self, layout: TokenLayout, init_std: float = 0.02, seed: int | None = 0,
                 patch_projection: nn.Module | None = None):
        super().__init__()
        self.layout = layout
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        n, d = layout.num_patches, layout.width

        def init(*shape: int) -> nn.Parameter:
            values = torch.empty(*shape)
            if init_std > 0:
                values.normal_(0.0, init_std, generator=generator).clamp_(-2 * init_std, 2 * init_std)
            else:
                values.zero_()
            return nn.Parameter(values)

        if layout.variant == "vpt":
            self.prompts = init(layout.block_sets, layout.prompts, d)
        elif layout.variant == "patch":
            if patch_projection is None:
                raise ValueError("the patch variant starts from the tower's patch projection; pass patch_projection")
            self.patch = copy.deepcopy(patch_projection).float().requires_grad_(True)
            self.patch._forward_hooks.clear()  # a copy of the module, not of whatever observes the original
            self.patch._forward_pre_hooks.clear()
        else:
            self.input_tokens = init(1, n, d) if layout.has_input_set else None
            self.block_tokens = init(layout.block_sets, n, d)
        if layout.variant == "resolution":
            # nn.Linear initialises from the global RNG; seeded here, the gate, like the tokens, depends on
            # `seed` alone (not on what ran before, nor on the process among several training together).
            with torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext():
                if seed is not None:
                    torch.manual_seed(seed)
                self.gate = nn.Sequential(nn.Linear(1, layout.gate_hidden), nn.GELU(),
                                          nn.Linear(layout.gate_hidden, layout.num_sets))
            with torch.no_grad():  # start as the always-on tokens from half the native size down
                self.gate[2].weight.zero_()
                self.gate[2].bias.fill_(1.0)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / INIT_TEMPERATURE)))
        self.enabled = True
        self._gates: torch.Tensor | None = None  # (B, num_sets) while a resolution-conditioned forward runs
        self._below: torch.Tensor | None = None  # (B,) bool, images below native, while a patch forward runs

    def token_parameters(self) -> int:
        """Parameters that change the image embeddings (the temperature only shapes the training loss)."""
        return sum(p.numel() for name, p in self.named_parameters() if name != "logit_scale")

    def decays(self, name: str) -> bool:
        """Whether AdamW's weight decay applies to the parameter `name`: the token sets, prompts and gate
        weights; never the temperature, the biases, nor the patch embedding copy (decay would pull it from
        the pretrained weights it starts at toward zero)."""
        return self.get_parameter(name).ndim >= 2 and not name.startswith("patch.")

    def gates(self, source_resolution: torch.Tensor) -> torch.Tensor:
        """(B,) source resolutions in pixels -> (B, num_sets) token strengths, 0 at native and above."""
        native = float(self.layout.native)
        first = self.gate[0]
        lost = torch.log2(native / source_resolution.float().clamp(1.0, native)).unsqueeze(1)
        lost = lost.to(first.weight.device, first.weight.dtype)
        return lost.clamp(max=1.0) * self.gate(lost)

    def below_native(self, source_resolution: torch.Tensor) -> torch.Tensor:
        """(B,) source resolutions in pixels -> (B,) bool: the images the patch variant's copy embeds."""
        return source_resolution < self.layout.native

    @contextlib.contextmanager
    def conditioned(self, source_resolution, batch: int) -> Iterator[None]:
        """Within the block, forwards use the gates (resolution variant) or the patch embedding (patch
        variant) of these source resolutions; the other variants ignore them."""
        if not self.layout.conditioned or not self.enabled:
            yield
            return
        if source_resolution is None:  # unknown: assume the image was never smaller than native
            source_resolution = self.layout.native
        values = torch.as_tensor(source_resolution).reshape(-1)
        if values.numel() == 1:
            values = values.expand(batch)
        if values.numel() != batch:
            raise ValueError(f"source_resolution has {values.numel()} entries for a batch of {batch}")
        if self.layout.variant == "patch":
            self._below = self.below_native(values)
        else:
            self._gates = self.gates(values)
        try:
            yield
        finally:
            self._gates = self._below = None

    def _scaled(self, tokens: torch.Tensor, set_index: int) -> torch.Tensor:
        """(1, N, D) tokens, times each image's gate for this set -> (1 or B, N, D)."""
        if self._gates is None:
            return tokens
        return tokens * self._gates[:, set_index].view(-1, 1, 1).to(tokens.dtype)

    # hooks -------------------------------------------------------------------------------------------

    def attach(self, anatomy: Anatomy) -> list:
        layout = self.layout
        if (anatomy.num_patches, anatomy.width, anatomy.num_blocks) != (layout.num_patches, layout.width, layout.num_blocks):
            raise UserError(
                f"These tokens are shaped for {layout.num_patches} patches × width {layout.width} × {layout.num_blocks} blocks, "
                f"but the model has {anatomy.num_patches} × {anatomy.width} × {anatomy.num_blocks}; use the base model they were trained on."
            )
        if layout.variant == "patch":
            return [anatomy.patch_projection.register_forward_hook(self._low_res_patch_hook())]
        handles = []
        if layout.has_input_set:
            handles.append(anatomy.patch_embed.register_forward_hook(self._patch_hook(anatomy)))
        for position, block in enumerate(anatomy.blocks[layout.first_block:]):
            handles.append(block.register_forward_pre_hook(self._block_hook(anatomy, position), with_kwargs=True))
        if layout.variant == "vpt":
            handles.append(anatomy.blocks[-1].register_forward_hook(self._strip_prompts_hook(anatomy)))
        return handles

    def _patch_hook(self, anatomy: Anatomy):
        def hook(module, inputs, output):
            if not self.enabled:
                return None
            return add_to_patch_embedding(output, self._scaled(self.input_tokens, 0), anatomy)
        return hook

    def _low_res_patch_hook(self):
        """The copy's output replaces the original projection's for the images below native; native images
        (and every image when none is below native) keep the original's output untouched."""
        def hook(module, inputs, output):
            if not self.enabled or self._below is None or not bool(self._below.any()):
                return None
            rows = self._below.nonzero().flatten().to(output.device)
            pixels = inputs[0].index_select(0, rows)
            weights = {name: p.to(pixels.dtype) for name, p in self.patch.named_parameters()}
            low = torch.func.functional_call(self.patch, weights, (pixels,))
            return output.index_copy(0, rows, low.to(output.dtype))
        return hook

    def _block_hook(self, anatomy: Anatomy, position: int):
        set_index = int(self.layout.has_input_set) + position
        n, prefix = self.layout.num_patches, self.layout.num_prefix

        def apply(x: torch.Tensor) -> torch.Tensor:
            if anatomy.sequence_first:  # (L, B, D) towers: work in (B, L, D), hand back their layout
                return apply_batch_first(x.transpose(0, 1)).transpose(0, 1)
            return apply_batch_first(x)

        def apply_batch_first(x: torch.Tensor) -> torch.Tensor:
            if self.layout.variant == "vpt":
                prompts = self.prompts[position].to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
                keep_from = prefix if position == 0 else prefix + self.layout.prompts  # replace the last block's prompts
                return torch.cat([x[:, :prefix], prompts, x[:, keep_from:]], dim=1)
            tokens = self._scaled(self.block_tokens[position].unsqueeze(0), set_index).to(x.dtype)
            return torch.cat([x[:, :-n], x[:, -n:] + tokens], dim=1)  # patches are the last N positions

        def hook(module, args, kwargs):
            if not self.enabled:
                return None
            if args:
                return (apply(args[0]), *args[1:]), kwargs
            for name in ("hidden_states", "x", "q_x"):
                if name in kwargs:
                    return args, {**kwargs, name: apply(kwargs[name])}
            raise RuntimeError(f"cannot find the hidden states among the inputs of {type(module).__name__}")
        return hook

    def _strip_prompts_hook(self, anatomy: Anatomy):
        prefix, prompts = self.layout.num_prefix, self.layout.prompts

        def strip(x: torch.Tensor) -> torch.Tensor:
            if anatomy.sequence_first:
                return torch.cat([x[:prefix], x[prefix + prompts:]], dim=0)
            return torch.cat([x[:, :prefix], x[:, prefix + prompts:]], dim=1)

        def hook(module, inputs, output):
            if not self.enabled:
                return None
            if isinstance(output, tuple):  # older transformers layers return (hidden_states, ...)
                return (strip(output[0]), *output[1:])
            return strip(output)
        return hook


class _Joined(nn.Module):
    """The base model and its tokens as one module, so `.to(device)` moves both."""

    def __init__(self, base: nn.Module, tokens: LowResTokens):
        super().__init__()
        self.base = base
        self.tokens = tokens


class TokenModel(ZeroShotModel):
    """A ZeroShotModel whose image tower carries LR-TK0 tokens; text and logit scale are the base model's."""

    def __init__(self, base: ZeroShotModel, tokens: LowResTokens, anatomy: Anatomy, tokens_file: str | None = None):
        self.base = base
        self.tokens = tokens
        self.anatomy = anatomy
        self.tokens_file = tokens_file
        self.spec = f"{base.spec}+tokens={tokens_file}" if tokens_file else f"{base.spec}+tokens"
        self.family = base.family
        self.image = base.image
        self.logit_scale = base.logit_scale
        self.logit_bias = base.logit_bias
        self.module = _Joined(base.module, tokens)
        self.accepts_source_resolution = tokens.layout.conditioned
        tokens.to(base.device)
        self._handles = tokens.attach(anatomy)

    @property
    def layout(self) -> TokenLayout:
        return self.tokens.layout

    @property
    def visual(self) -> nn.Module:
        return self.base.visual

    def encode_image(self, pixels: torch.Tensor, source_resolution=None) -> torch.Tensor:
        """Pixels in [0, 1] -> embeddings. `source_resolution` (int, or one per image) is the side in pixels
        the picture really had before it was brought to native size; only the resolution and patch variants
        use it (None: native). For a user's image that is the file's own size (its short side)."""
        with self.tokens.conditioned(source_resolution, len(pixels)):
            return self.base.encode_image(pixels)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.base.encode_text(texts)

    @contextlib.contextmanager
    def tokens_off(self) -> Iterator[None]:
        """Run the original model: the hooks stay attached but leave every tensor alone."""
        previous = self.tokens.enabled
        self.tokens.enabled = False
        try:
            yield
        finally:
            self.tokens.enabled = previous

    def detach(self) -> ZeroShotModel:
        """Remove the hooks; the base model is then exactly as before wrapping."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        vision_tower(self.base)._lr0fm_tokens_attached = False
        return self.base

    def fingerprint(self) -> str:
        # Tokens change while training, so their hash is never cached; the base's is.
        digest = hashlib.sha256(self.base.fingerprint().encode())
        digest.update(fingerprint_module(self.tokens).encode())
        return digest.hexdigest()[:16]


def wrap(base: ZeroShotModel, variant: str = "always", first_block: int = 0, prompts: int | None = None,
         init_std: float = 0.02, seed: int | None = 0, layout: TokenLayout | None = None,
         tokens_file: str | None = None) -> TokenModel:
    """Attach fresh LR-TK0 tokens to `base` (frozen, eval mode). `layout` rebuilds a saved token set."""
    visual = vision_tower(base)
    if getattr(visual, "_lr0fm_tokens_attached", False):
        raise UserError(f"{base.spec} already carries LR-TK0 tokens; wrap a freshly loaded base model.")
    anatomy = locate(visual, base.spec)
    if layout is None:
        layout = make_layout(anatomy, base.image_size, variant, first_block, prompts)
    base.module.eval().requires_grad_(False)
    tokens = LowResTokens(layout, init_std=init_std, seed=seed, patch_projection=anatomy.patch_projection)
    model = TokenModel(base, tokens, anatomy, tokens_file)
    visual._lr0fm_tokens_attached = True  # guards against stacking two token sets on one tower
    return model
