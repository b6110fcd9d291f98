"""Token training on several processes, as `torchrun` starts them.

    torchrun --nproc-per-node 4 -m lr0fm tokens train --model eva02-b16 --pool pool/ --out t.safetensors -b 256

torchrun gives each process WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. With WORLD_SIZE above 1
the trainer joins a process group (NCCL on CUDA, each process on cuda:LOCAL_RANK; gloo on the CPU), and:

* `--batch-size` stays the *global* batch: every step, each process takes its contiguous share of the batch
  the plan (pool.BatchPlan) gives for that step, with the same per-image view seeds as one process would;
* teacher and student embeddings are gathered from every process (the students' with their gradients), so
  every process computes the loss of the whole global batch, exactly as one process does;
* the gradients are averaged by DistributedDataParallel. A process's own embeddings get the gradient of the
  global loss from every process (the gather's backward sums them), i.e. N times its share, and averaging
  over the N processes leaves exactly one process's gradient of the global loss;
* process 0 alone writes the checkpoint and the tokens file, and logs; the others wait at a barrier.

Without WORLD_SIZE (or with WORLD_SIZE=1) nothing here starts a process group and training is the plain
single-process loop.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..device import resolve_device
from ..errors import UserError


def environment() -> tuple[int, int, int]:
    """The (world size, rank, local rank) torchrun gave this process; (1, 0, 0) outside torchrun.

    Raises:
        UserError: the variables are set but are not whole numbers in range.
    """
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UserError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers; start the processes with torchrun.") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise UserError(f"RANK {rank} does not fit WORLD_SIZE {world}; start the processes with torchrun.")
    return world, rank, local


class EveryProcessError(UserError):
    """A UserError that every training process raises alike; process 0 alone needs to report it."""


def _gather(tensor: torch.Tensor, dim: int, world: int) -> torch.Tensor:
    parts = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=dim)


class _GatherWithGrad(torch.autograd.Function):
    """All processes' tensors concatenated along `dim`, differentiable.

    In the backward each process holds the gradient of its own copy of the loss with respect to the whole
    concatenation; a process's part receives the sum of its slice over all processes (all-reduce, then this
    process's slice). As every process computes the same loss, that is N times the gradient of one loss, and
    DistributedDataParallel's average over the N processes brings it back to exactly one.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, dim: int, world: int, rank: int) -> torch.Tensor:
        ctx.dim, ctx.rank, ctx.size = dim, rank, tensor.shape[dim]
        return _gather(tensor, dim, world)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()  # all_reduce works in place; autograd's buffer is left alone
        dist.all_reduce(grad)
        return grad.narrow(ctx.dim, ctx.rank * ctx.size, ctx.size), None, None, None


class _Student(torch.nn.Module):
    """The student pass as a module holding the tokens alone: the frozen base model stays outside, so
    DistributedDataParallel broadcasts and averages the token parameters only."""

    def __init__(self, model):
        super().__init__()
        self.tokens = model.tokens
        self.encode = model.encode_image  # a bound method, not a submodule

    def forward(self, pixels: torch.Tensor, source_resolution=None) -> torch.Tensor:
        return self.encode(pixels, source_resolution=source_resolution)


@dataclass
class Processes:
    """The processes training together, as seen from one of them.

    Attributes:
        world: how many processes train together (1: no process group).
        rank: this process's index, 0 to world - 1; process 0 writes files and logs.
        local_rank: its index on this machine (its GPU, on CUDA).
        device: the device this process trains on.
        owned: whether `start` created the process group (and `close` destroys it).
    """

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owned: bool = False

    @property
    def main(self) -> bool:
        """Whether this is process 0, the one that writes files and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def gather(self, tensor: torch.Tensor, dim: int = 0, grad: bool = False) -> torch.Tensor:
        """Every process's `tensor`, concatenated along `dim` in rank order (the order of the global batch).

        Args:
            tensor: this process's part; same shape on every process.
            dim: the batch dimension.
            grad: keep the autograd graph, so the loss's gradient flows back to each process's own part.

        Returns:
            The concatenation; `tensor` itself when there is one process.
        """
        if not self.distributed:
            return tensor
        if grad:
            return _GatherWithGrad.apply(tensor, dim, self.world, self.rank)
        return _gather(tensor, dim, self.world)

    def student(self, model) -> torch.nn.Module:
        """The student pass of a TokenModel (tokens on), as `student(pixels, source_resolution=...)`.

        Args:
            model: the tokens.wrapper.TokenModel being trained.

        Returns:
            A module running `model.encode_image`; with several processes it is wrapped in
            DistributedDataParallel, which averages the token gradients over the processes in the backward.
        """
        module = _Student(model)
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.distributed:
            dist.barrier()

    def agree(self, error: UserError | None) -> None:
        """Stop every process together when any of them hit a UserError while setting up.

        Args:
            error: this process's error, or None.

        Raises:
            UserError: `error` itself with one process; with several, an EveryProcessError on every process,
                with the message of the lowest rank that had one.
        """
        if not self.distributed:
            if error is not None:
                raise error
            return
        messages: list = [None] * self.world
        dist.all_gather_object(messages, None if error is None else str(error))
        first = next((m for m in messages if m is not None), None)
        if first is not None:
            raise EveryProcessError(first) from error

    def check_same(self, module: torch.nn.Module) -> None:
        """Check that `module`'s parameters are bit for bit the same on every process.

        Raises:
            RuntimeError: they differ (a bug: the processes would be training different tokens).
        """
        if not self.distributed:
            return
        digest = hashlib.sha256()
        for name, value in module.state_dict().items():
            digest.update(name.encode())
            digest.update(value.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
        digests: list = [None] * self.world
        dist.all_gather_object(digests, digest.hexdigest())
        if len(set(digests)) > 1:
            raise RuntimeError(f"The token parameters differ between the {self.world} training processes.")

    def close(self) -> None:
        """Leave the process group if `start` created it."""
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()
            self.owned = False


def process_device(choice: str, world: int, local_rank: int) -> torch.device:
    """The device one of `world` processes trains on.

    Args:
        choice: the --device value: auto, cpu, cuda or cuda:N.
        world: how many processes train together.
        local_rank: this process's index on its machine.

    Returns:
        `resolve_device(choice)` for one process; with several, cuda:LOCAL_RANK for auto (on a GPU machine)
        and cuda, and the CPU for cpu.

    Raises:
        UserError: an unknown device, cuda:N with several processes, or fewer GPUs than processes here.
    """
    device = resolve_device(choice)
    if world == 1 or device.type != "cuda":
        return device
    if choice not in ("auto", "cuda"):
        raise UserError(f"With several processes each trains on cuda:LOCAL_RANK; pass --device cuda instead of {choice}.")
    if local_rank >= torch.cuda.device_count():
        raise UserError(f"Process {local_rank} on this machine has no GPU of its own ({torch.cuda.device_count()} "
                        "visible); start at most one process per GPU (torchrun --nproc-per-node).")
    return torch.device("cuda", local_rank)


def start(choice: str, world: int, rank: int, local_rank: int) -> Processes:
    """Join the processes training together (no process group for one) and pick this process's device.

    Args:
        choice: the --device value.
        world, rank, local_rank: from `environment()`.

    Returns:
        The Processes; call `close()` when training ends.

    Raises:
        UserError: the device cannot be used, or WORLD_SIZE is above 1 without torchrun's MASTER_ADDR/MASTER_PORT.
    """
    device = process_device(choice, world, local_rank)
    if world == 1:
        return Processes(1, 0, 0, device)
    if dist.is_initialized():  # the caller's own process group
        if dist.get_world_size() != world or dist.get_rank() != rank:
            raise UserError(f"The process group has {dist.get_world_size()} processes but WORLD_SIZE is {world}; "
                            "start the processes with torchrun.")
        return Processes(world, rank, local_rank, device)
    if not (os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT")):
        raise UserError(f"WORLD_SIZE is {world} but MASTER_ADDR or MASTER_PORT is not set; start the processes with "
                        "torchrun --nproc-per-node N -m lr0fm tokens train ...")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", rank=rank, world_size=world, device_id=device)
    else:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    return Processes(world, rank, local_rank, device, owned=True)


__all__ = ["EveryProcessError", "Processes", "environment", "process_device", "start"]
