"""Where a command runs and at what precision: one device parser, one precision parser, one autocast.

    device = resolve_device("auto")                                    # cuda when there is a GPU, else cpu
    precision = parse_precision("auto", ("auto", "fp32", "bf16"), device, auto="bf16")
    with autocast(device, precision):
        ...

Precisions are "fp32", "bf16" and "fp16"; each command accepts its own subset, and "auto" where it has one
(it means the command's GPU precision on CUDA and fp32 elsewhere).
"""

from __future__ import annotations

import contextlib

import torch

from .errors import UserError

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _choices(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device named by `device`.

    Args:
        device: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".

    Returns:
        The torch.device.

    Raises:
        UserError: the name is not a device, or it names CUDA on a machine without a CUDA GPU.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise UserError(f"Unknown device {device!r}; use auto, cpu, cuda or cuda:N.") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"Device {device} was requested but no CUDA GPU is available; use --device cpu.")
    return resolved


def parse_precision(text: str, allowed: tuple[str, ...], device: torch.device, *, auto: str = "fp32",
                    fp16_on_cpu: bool = True) -> str:
    """The precision a command runs at on `device`.

    Args:
        text: the user's choice, e.g. the value of --precision.
        allowed: the choices the command accepts, in the order its help lists them (may include "auto").
        device: the resolved device the command runs on.
        auto: what "auto" means on a CUDA device; on any other device it means "fp32".
        fp16_on_cpu: False to refuse fp16 on the CPU.

    Returns:
        "fp32", "bf16" or "fp16".

    Raises:
        UserError: `text` is not one of `allowed`, or it is fp16 on the CPU where that is refused.
    """
    if text not in allowed:
        raise UserError(f"Unknown precision {text!r}; use {_choices(allowed)}.")
    precision = (auto if device.type == "cuda" else "fp32") if text == "auto" else text
    if precision == "fp16" and device.type == "cpu" and not fp16_on_cpu:
        others = [name for name in allowed if name not in ("auto", "fp16")]
        raise UserError(f"fp16 needs a GPU; use --precision {_choices(others)} on CPU.")
    return precision


def autocast(device: torch.device, precision: str):
    """A context manager running the forward passes inside it at `precision`.

    Args:
        device: the device the model is on.
        precision: a resolved precision, "fp32", "bf16" or "fp16" (see parse_precision).

    Returns:
        contextlib.nullcontext() for fp32, else torch.autocast for the device with the precision's dtype.

    Raises:
        KeyError: `precision` is not one of the three.
    """
    dtype = DTYPES[precision]
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


__all__ = ["DTYPES", "autocast", "parse_precision", "resolve_device"]
