"""Train LR-TK0 tokens by multi-scale self-distillation (PAPER.md §3.2-3.5, with the §5 fixes).

Teacher: the same network with tokens off, no grad, on the native view. Student: tokens on, on the native
view and one view per resolution bucket, all cut from the same crop. Loss: the sum over views of the
symmetric InfoNCE between teacher and student embeddings with a learnable temperature. "Tokens" are whatever
the variant learns (wrapper.VARIANTS): for the patch variant, the copy of the patch embedding that embeds the
low-resolution views (the native view goes through the frozen original), trained without weight decay.

A checkpoint (`OUT.ckpt`) is written every `checkpoint_every` steps; `resume=True` continues from it with
the same tokens, optimizer, schedule, RNG and batch order, so a killed run ends exactly where an
uninterrupted one would. The tokens file is the last step's tokens: nothing is selected on a test set.

Several processes (`torchrun --nproc-per-node N -m lr0fm tokens train ...`, see tokens.distributed) train on
the same global batches as one process: `batch_size` is the global batch, each process embeds its share,
and the loss is computed on the gathered global batch, so N processes give one process's tokens up to
floating-point rounding (the order of the sums differs). The checkpoint records how many processes wrote it,
but not as part of the run's identity: `resume=True` with another number of processes is allowed and continues
with the same global batches, matching the uninterrupted run to that same rounding (bit for bit only with the
same number of processes, on the same kind of device).
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..device import autocast, parse_precision
from ..errors import UserError
from ..fileio import atomic_path
from .distributed import EveryProcessError, Processes, environment, start as start_processes
from .files import save_tokens
from .losses import multi_view_loss
from .pool import BatchPlan, StepSampler, ViewSet, load_pool
from .views import CROP_SCALE, parse_buckets
from .wrapper import MAX_LOGIT_SCALE, VARIANTS, TokenModel, wrap

log = logging.getLogger("lr0fm.tokens")
CHECKPOINT_FORMAT = "lr0fm-tokens-checkpoint"
PRECISIONS = ("auto", "fp32", "bf16")  # auto: bf16 autocast on GPU, fp32 on CPU


@dataclass
class TokenTrainConfig:
    model: str
    pool: str
    out: str | Path
    weights: str | None = None
    data_root: str | None = None
    steps: int = 1000
    batch_size: int = 64  # native images per step, over all processes; each brings 1 + len(buckets) views
    group_size: int = 4  # K images per group in a batch, when the pool has groups
    lr: float = 5e-4
    weight_decay: float = 0.2  # on tokens (and gate weights); never on the temperature
    warmup: int | None = None  # None: a tenth of the steps, at most 2,000
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    clip_grad: float | None = 5.0
    seed: int = 0
    variant: str = "always"
    first_block: int = 0
    prompts: int | None = None  # VPT-deep prompts per block; None: the additive tokens' parameter budget
    buckets: str | Sequence | None = None  # None: scaled to the native size (views.default_buckets)
    crop_scale: tuple[float, float] = CROP_SCALE
    init_std: float = 0.02
    checkpoint_every: int = 500
    resume: bool = False
    overwrite: bool = False
    device: str = "auto"
    workers: int = 2
    precision: str = "auto"  # one of PRECISIONS
    log_every: int = 50


@dataclass
class TrainResult:
    path: Path
    checkpoint: Path
    steps: int
    final_loss: float
    losses: list[float] = field(repr=False)
    seconds: float
    resumed_from: int
    token_parameters: int
    skipped_images: int
    grad_norms: list[float] = field(default_factory=list, repr=False)  # per step, before clipping
    processes: int = 1


def checkpoint_path(out: str | Path) -> Path:
    return Path(f"{Path(out).expanduser()}.ckpt")


def _validate(config: TokenTrainConfig, world: int = 1) -> None:
    if config.variant not in VARIANTS:
        raise UserError(f"Unknown token variant {config.variant!r}; use one of: {', '.join(VARIANTS)}.")
    if config.steps <= 0 or config.checkpoint_every <= 0 or config.log_every <= 0:
        raise UserError("--steps, --checkpoint-every and the log interval must be positive.")
    if config.lr <= 0 or config.weight_decay < 0 or (config.warmup is not None and config.warmup < 0):
        raise UserError("--lr must be positive, --weight-decay and --warmup zero or more.")
    if config.workers < 0:
        raise UserError("--workers must be zero or more.")
    if config.batch_size % world:
        raise UserError(f"--batch-size {config.batch_size} is the global batch, split evenly across the {world} "
                        f"processes; make it a multiple of {world} or start another number of processes.")
    low, high = config.crop_scale
    if not 0 < low <= high <= 1:
        raise UserError("The crop scale must satisfy 0 < low <= high <= 1.")
    out = Path(config.out).expanduser()
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give the path of the .safetensors file to write.")
    if not config.resume and not config.overwrite and (out.exists() or checkpoint_path(out).exists()):
        raise UserError(f"{out} or its checkpoint {checkpoint_path(out).name} already exists; pass --resume to continue "
                        "that run, --overwrite to start again, or another --out.")


def _schedule(steps: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def _run_key(config: TokenTrainConfig, model: TokenModel, pool_fingerprint: str, buckets, warmup: int) -> dict:
    """What must not change between a run and its resumption."""
    return {
        "base_spec": model.base.spec, "base_fingerprint": model.base.fingerprint(), "pool": config.pool,
        "pool_fingerprint": pool_fingerprint, "steps": config.steps, "batch_size": config.batch_size,
        "group_size": config.group_size, "lr": config.lr, "weight_decay": config.weight_decay, "warmup": warmup,
        "betas": list(config.betas), "eps": config.eps, "clip_grad": config.clip_grad, "seed": config.seed,
        "layout": model.layout.to_dict(), "buckets": [list(b) for b in buckets],
        "crop_scale": list(config.crop_scale), "init_std": config.init_std, "precision": config.precision,
    }


def _save_checkpoint(path: Path, state: dict) -> None:
    """Write the checkpoint atomically: a kill mid-write leaves the previous one intact."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path, run_key: dict) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"Checkpoint {path} holds pickled objects that lr0fm refuses to load, because unpickling "
                        f"them could run code; delete it and train again with --overwrite.") from None
    except Exception:
        raise UserError(f"Checkpoint {path} is unreadable; delete it and train again with --overwrite.") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not an LR-TK0 training checkpoint; delete it or pick another --out.")
    saved = state["run"]
    changed = [k for k in sorted(set(run_key) | set(saved)) if saved.get(k) != run_key.get(k)]
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} then, {run_key.get(k)!r} now" for k in changed[:4])
        raise UserError(f"--resume: checkpoint {path} belongs to a different run ({detail}); "
                        "resume with the same settings or start again with --overwrite.")
    return state


def train(config: TokenTrainConfig, callback: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train tokens as configured, on this process or, under torchrun, on all of its processes together.

    Args:
        config: the settings.
        callback: `callback(step, loss)` runs after every step (1-based step), on every process.

    Returns:
        The TrainResult (the same on every process; process 0 wrote the files).

    Raises:
        UserError: bad settings, an unusable pool or model, a checkpoint of another run; with several
            processes every process raises it (an EveryProcessError) unless it concerns its own device.
    """
    world, rank, local_rank = environment()
    processes = start_processes(config.device, world, rank, local_rank)
    try:
        return _train(config, processes, callback)
    finally:
        processes.close()


def _embed(model: TokenModel, student, views: torch.Tensor, sizes: torch.Tensor, device: torch.device,
           precision: str, conditioned: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 views (B, V, 3, n, n) -> teacher embeddings (B, D) of the native views, tokens off and without
    gradient, and student embeddings (V, B, D) of every view, tokens on, in one pass."""
    views = views.to(device, non_blocking=True)
    batch, count = views.shape[0], views.shape[1]
    pixels = views.float().div_(255)
    with autocast(device, precision):
        with torch.no_grad(), model.tokens_off():
            teacher = model.encode_image(pixels[:, 0])
        # One student pass over every view: (V * B, 3, n, n), view-major.
        flat = pixels.transpose(0, 1).reshape(count * batch, *pixels.shape[2:])
        source = sizes.T.reshape(-1).to(device) if conditioned else None
        students = student(flat, source_resolution=source).reshape(count, batch, -1)
    return teacher, students


def _train(config: TokenTrainConfig, processes: Processes, callback) -> TrainResult:
    from ..models import check_base, load_base, parse_spec

    main = processes.main  # process 0 alone logs and writes files
    device = processes.device
    problem = None
    try:  # every setup problem stops all processes together (Processes.agree)
        _validate(config, processes.world)
        spec = parse_spec(config.model, config.weights)
        if spec.tokens or spec.sr:
            raise UserError("Train tokens on a base model spec, without +tokens= or +sr=.")
        check_base(spec)
        precision = parse_precision(config.precision, PRECISIONS, device, auto="bf16")
        pool = load_pool(config.pool, config.data_root)  # pool problems surface before the model loads
        base = load_base(spec, str(device))
        buckets = parse_buckets(config.buckets, base.image_size)
        plan = BatchPlan(len(pool), pool.groups, config.batch_size, config.group_size, config.seed)
        model = wrap(base, config.variant, config.first_block, config.prompts, config.init_std, config.seed)
        tokens = model.tokens.to(device).train()
        tokens.requires_grad_(True)
        warmup = min(2000, config.steps // 10) if config.warmup is None else config.warmup
        out = Path(config.out).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        checkpoint = checkpoint_path(out)

        decay = [p for name, p in tokens.named_parameters() if tokens.decays(name)]
        no_decay = [p for name, p in tokens.named_parameters() if not tokens.decays(name)]  # temperature, biases, patch copy
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=tuple(config.betas), eps=config.eps,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config.steps, warmup))
        run_key = _run_key(config, model, pool.fingerprint(), buckets, warmup)
        state = _load_checkpoint(checkpoint, run_key) if config.resume and checkpoint.exists() else None
    except UserError as error:
        problem = error
    processes.agree(problem)

    start, losses, norms, elapsed_before, skipped = 0, [], [], 0.0, 0
    if state is not None:
        tokens.load_state_dict(state["tokens"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        if torch.cuda.is_available() and state["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        start, losses = int(state["step"]), list(state["losses"])
        norms = list(state.get("grad_norms", [float("nan")] * start))
        elapsed_before, skipped = float(state["seconds"]), int(state["skipped_images"])
        if main:
            log.info("resuming %s at step %d of %d", checkpoint, start, config.steps)
            before = int(state.get("processes", 1))
            if before != processes.world:
                log.info("the checkpoint was written by %d process(es), this run has %d: the same global batches, "
                         "so the same tokens up to floating-point rounding", before, processes.world)
    else:
        if config.resume and main:  # said where the user sees it: --resume found nothing to continue
            log.warning("--resume: no checkpoint at %s, so training starts from step 0.", checkpoint)
        torch.manual_seed(config.seed)

    def save_state(step: int, seconds: float) -> None:
        processes.check_same(tokens)
        if main:
            _save_checkpoint(checkpoint, {
                "format": CHECKPOINT_FORMAT, "run": run_key, "step": step, "losses": losses, "grad_norms": norms,
                "seconds": seconds, "skipped_images": skipped, "processes": processes.world,
                "tokens": tokens.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            })
        processes.barrier()  # no process runs ahead of a checkpoint being written

    loader = torch.utils.data.DataLoader(
        ViewSet(pool, base.image_size, buckets, config.crop_scale),
        batch_sampler=StepSampler(plan, start, config.steps, processes.rank, processes.world),
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    student = processes.student(model)  # with several processes: DistributedDataParallel
    began = time.perf_counter()
    conditioned = model.layout.conditioned  # the resolution and patch variants see each view's source size
    step = start
    for _, ok, views, sizes in loader:
        if processes.distributed:  # which images of the whole global batch could be read
            ok = processes.gather(ok.to(device, torch.uint8)).cpu().bool()
        keep = ok.nonzero().flatten()
        skipped += int(len(ok) - len(keep))
        if len(keep) >= 2:
            if processes.distributed:
                # Each process embeds its whole share (unreadable images too, so that every share has the same
                # shape); the gathered global batch then loses the unreadable ones, as one process drops them.
                teacher, students = _embed(model, student, views, sizes, device, precision, conditioned)
                kept = keep.to(device)
                teacher = processes.gather(teacher)[kept]
                students = processes.gather(students, dim=1, grad=True)[:, kept]
            else:
                teacher, students = _embed(model, student, views[keep], sizes[keep], device, precision, conditioned)
            # Every process computes the same loss of the global batch; see tokens.distributed on the gradient.
            loss, _ = multi_view_loss(teacher, students, tokens.logit_scale.exp())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_grad:
                norm = torch.nn.utils.clip_grad_norm_(tokens.parameters(), config.clip_grad)
            else:
                norm = torch.nn.utils.get_total_norm([p.grad for p in tokens.parameters() if p.grad is not None])
            optimizer.step()
            with torch.no_grad():
                tokens.logit_scale.clamp_(0, math.log(MAX_LOGIT_SCALE))
            losses.append(float(loss.detach()))
            norms.append(float(norm))
        else:
            losses.append(float("nan"))  # a batch of unreadable images: the step passes without an update
            norms.append(float("nan"))
        scheduler.step()
        step += 1
        if main and step % config.log_every == 0:
            log.info("step %d/%d loss %.4f grad norm %.3g lr %.2e", step, config.steps, losses[-1], norms[-1],
                     scheduler.get_last_lr()[0])
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_state(step, elapsed_before + time.perf_counter() - began)
        if callback is not None:
            callback(step, losses[-1])
    seconds = elapsed_before + time.perf_counter() - began
    finite = [x for x in losses if x == x]
    if not finite:
        raise EveryProcessError(f"No image of pool {config.pool} could be read; check the files.")

    training = {key: value for key, value in asdict(config).items() if key not in ("resume", "overwrite", "out", "device", "workers")}
    training.update(
        pool_fingerprint=run_key["pool_fingerprint"], pool_size=len(pool), grouped=pool.groups is not None,
        buckets=run_key["buckets"], warmup=warmup, final_loss=finite[-1], first_loss=finite[0],
        seconds=round(seconds, 1), device=str(device), skipped_images=skipped,
        token_parameters=tokens.token_parameters(), processes=processes.world,
    )
    model.tokens.eval()
    if main:
        save_tokens(model, out, training)
        if skipped:
            log.warning("%d unreadable image(s) of %s were skipped", skipped, config.pool)
    processes.barrier()  # the tokens file exists when any process returns
    return TrainResult(out, checkpoint, config.steps, finite[-1], losses, seconds, start, tokens.token_parameters(),
                       skipped, norms, processes.world)
