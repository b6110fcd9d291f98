"""Train the bundled lr0fm-tiny model; the defaults reproduce src/lr0fm/assets/lr0fm-tiny.safetensors.

Fashion-MNIST train split (60,000 images) at the native 32 px only: no low-resolution augmentation,
since the benchmark measures how a model trained at native resolution copes with low resolution.
The text tower (all-MiniLM-L6-v2) is frozen; only the image tower, the text projection and the
logit scale are learned. CPU only, deterministic for a given seed, thread count and torch build.

Shipped recipe: 5 epochs, batch 128, AdamW (lr 3e-3, wd 0.05, 200 warm-up steps, cosine), half of
the patch tokens dropped in the first 4 epochs (about 2x cheaper per step, so more passes fit the
CPU budget) and every token in the last one, so the tower ends trained on what evaluation feeds it.
No shift/flip by default: in this budget the model underfits, and augmentation cost accuracy.
About 12 minutes on 2 idle cores.

    python scripts/train_tiny.py                 # the shipped recipe
    python scripts/train_tiny.py --checkpoint /tmp/tiny.ckpt   # same, resumable if interrupted
    python scripts/train_tiny.py --epochs 1 --out /tmp/pilot.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.transformer import PatchDropout
from PIL import Image

from lr0fm.data import fashion_mnist
from lr0fm.fileio import atomic_path
from lr0fm.models.tiny import DEFAULT_CONFIG, MiniLMEncoder, TinyCLIP, TinyModel, save_tiny
from lr0fm.zeroshot import build_classifier

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "src" / "lr0fm" / "assets" / "lr0fm-tiny.safetensors"

# Captions seen only in training, so the projection does not overfit the evaluation templates' wording.
EXTRA_TEMPLATES = [
    "a picture of a {}.",
    "an image of a {}.",
    "a {}.",
    "a photo of my {}.",
    "a cropped photo of a {}.",
    "a centered photo of a {}.",
]


def to_native(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (N, 28, 28) -> uint8 (N, 3, size, size), exactly as evaluation prepares native images."""
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        rgb = Image.fromarray(image).convert("RGB")
        out[i] = np.asarray(rgb.resize((size, size), Image.Resampling.BICUBIC))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def augment(batch: torch.Tensor, pad: int, flip_prob: float, generator: torch.Generator) -> torch.Tensor:
    """Random shift by up to `pad` px (zero = the black background) and horizontal flip, per image."""
    if pad == 0 and flip_prob == 0:
        return batch
    n, _, h, w = batch.shape
    padded = F.pad(batch, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]
    shifted = padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    flip = torch.rand(n, generator=generator) < flip_prob
    return torch.where(flip[:, None, None, None], shifted.flip(-1), shifted)


def param_groups(module: torch.nn.Module, weight_decay: float):
    """No decay on biases, norms, embeddings (class token, positions) or the logit scale."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 and "positional_embedding" not in name else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.inference_mode()
def zero_shot_accuracy(model: TinyModel, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500):
    classifier = build_classifier(model, fashion_mnist.CLASSNAMES, fashion_mnist.TEMPLATES)
    correct = 0
    for start in range(0, len(images), batch_size):
        pixels = images[start : start + batch_size].float() / 255
        scores = F.normalize(model.encode_image(pixels), dim=-1) @ classifier
        correct += (scores.argmax(-1) == labels[start : start + batch_size]).sum().item()
    return correct / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads; the shipped weights used 2")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--patch-dropout", type=float, default=0.5, help="fraction of patch tokens dropped in training")
    parser.add_argument("--unmasked-epochs", type=int, default=1, help="final epochs trained with every patch token")
    parser.add_argument("--shift", type=int, default=0, help="random shift augmentation, in pixels")
    parser.add_argument("--flip", type=float, default=0.0, help="horizontal flip probability")
    parser.add_argument("--eval-every-epoch", type=int, default=0, help="print top-1 on the first N test images per epoch")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only (smoke tests)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="save state here after every epoch and resume from it if it exists (same result)")
    args = parser.parse_args()
    recipe = {k: v for k, v in vars(args).items() if k not in ("out", "eval_every_epoch", "checkpoint")}

    torch.set_num_threads(args.threads)
    # Multi-threaded CPU index_put (the backward of picking each image's template) adds with atomics,
    # in a varying order; the deterministic kernels make the run repeatable bit for bit.
    torch.use_deterministic_algorithms(True)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    config = dict(DEFAULT_CONFIG)
    size = config["image_size"]

    started = time.time()
    train_images, train_labels = fashion_mnist.load_arrays("train")
    test_images, test_labels = fashion_mnist.load_arrays("test")
    if args.limit:
        train_images, train_labels = train_images[: args.limit], train_labels[: args.limit]
    train_x, test_x = to_native(train_images, size), to_native(test_images, size)
    train_y, test_y = torch.from_numpy(train_labels), torch.from_numpy(test_labels)

    text = MiniLMEncoder().eval()
    templates = list(fashion_mnist.TEMPLATES) + EXTRA_TEMPLATES
    with torch.no_grad():  # MiniLM is frozen: embed every training caption once
        captions = [t.replace("{}", c) for t in templates for c in fashion_mnist.CLASSNAMES]
        caption_emb = text(captions).view(len(templates), len(fashion_mnist.CLASSNAMES), -1)

    module = TinyCLIP(config)
    mean = torch.tensor(config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["std"]).view(1, 3, 1, 1)
    optimizer = torch.optim.AdamW(param_groups(module, args.weight_decay), lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    steps_per_epoch = math.ceil(len(train_x) / args.batch_size)
    total_steps = args.epochs * steps_per_epoch

    def lr_at(step: int) -> float:
        if step < args.warmup_steps:
            return args.lr * (step + 1) / args.warmup_steps
        progress = (step - args.warmup_steps) / max(1, total_steps - args.warmup_steps)
        return 0.5 * args.lr * (1 + math.cos(math.pi * progress))

    print(f"setup {time.time() - started:.1f}s: {len(train_x)} train images, {len(captions)} captions, "
          f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f}M trainable parameters", flush=True)
    step = first_epoch = 0
    if args.checkpoint and args.checkpoint.exists():
        state = torch.load(args.checkpoint, weights_only=True)
        if state["recipe"] != json.dumps(recipe, sort_keys=True):
            raise SystemExit(f"{args.checkpoint} was written by a different recipe; delete it or pass another path")
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])  # patch dropout draws from the global generator
        first_epoch, step = state["epoch"], state["step"]
        print(f"resumed from {args.checkpoint} after epoch {first_epoch}", flush=True)
    for epoch in range(first_epoch, args.epochs):
        module.train()
        # Patch dropout (FLIP) only changes training; the state dict and evaluation are unaffected.
        masked = args.patch_dropout > 0 and epoch < args.epochs - args.unmasked_epochs
        module.visual.patch_dropout = PatchDropout(args.patch_dropout) if masked else torch.nn.Identity()
        epoch_start = time.time()
        order = torch.randperm(len(train_x), generator=generator)
        loss_sum = correct = seen = 0
        for start in range(0, len(order), args.batch_size):
            index = order[start : start + args.batch_size]
            pixels = augment(train_x[index], args.shift, args.flip, generator).float().div_(255)
            labels = train_y[index]
            # One caption template per image; the 10 class captions in that template are its choices.
            template = torch.randint(0, len(templates), (len(index),), generator=generator)
            image = F.normalize(module.encode_image((pixels - mean) / std), dim=-1)
            classes = F.normalize(module.project_text(caption_emb), dim=-1)  # (T, C, D)
            # CLIP's image->text contrastive loss, with the candidate texts being the 10 class captions
            # rather than the batch's own captions: with 10 classes a batch of 128 holds ~13 images per
            # class, so in-batch InfoNCE would score identical captions (and same-class images) as
            # negatives of each other, which is ill-posed. Against the deduplicated class captions the
            # loss is a plain cross-entropy to the true class.
            scale = module.logit_scale.exp().clamp(max=100.0)
            scores = scale * torch.einsum("bd,bcd->bc", image, classes[template])
            loss = F.cross_entropy(scores, labels)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += loss.item() * len(index)
            correct += (scores.argmax(-1) == labels).sum().item()
            seen += len(index)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss_sum / seen:.4f}, train top-1 {correct / seen:.4f}, "
              f"logit scale {module.logit_scale.exp().item():.1f}, {time.time() - epoch_start:.0f}s", flush=True)
        if args.eval_every_epoch:
            module.eval()
            module.text = text
            n = args.eval_every_epoch
            print(f"  test top-1 on {n} images: {zero_shot_accuracy(TinyModel(module), test_x[:n], test_y[:n]):.4f}", flush=True)
            del module.text
        if args.checkpoint:  # everything the remaining epochs depend on, written atomically
            state = {"recipe": json.dumps(recipe, sort_keys=True), "epoch": epoch + 1, "step": step,
                     "module": module.state_dict(), "optimizer": optimizer.state_dict(),
                     "generator": generator.get_state(), "torch_rng": torch.get_rng_state()}
            with atomic_path(args.checkpoint) as tmp:
                torch.save(state, tmp)

    module.eval()
    module.text = text
    accuracy = zero_shot_accuracy(TinyModel(module), test_x, test_y)
    print(f"zero-shot top-1 on the test split at {size} px (prompt ensemble of "
          f"{len(fashion_mnist.TEMPLATES)} templates): {accuracy:.4f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_tiny(module, args.out, {"recipe": recipe, "test_top1": round(accuracy, 4)})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) after {time.time() - started:.0f}s total")


if __name__ == "__main__":
    main()
