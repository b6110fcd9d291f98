"""Device and precision parsing (lr0fm.device)."""

import contextlib

import pytest
import torch

from lr0fm.device import autocast, parse_precision, resolve_device
from lr0fm.errors import UserError

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
EVAL = ("fp32", "bf16", "fp16")
TOKENS = ("auto", "fp32", "bf16")
SYNTH = ("auto", "fp32", "fp16", "bf16")


def test_resolve_device():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device().type == resolve_device("auto").type
    with pytest.raises(UserError, match=r"Unknown device 'tpu'; use auto, cpu, cuda or cuda:N\."):
        resolve_device("tpu")


def test_cuda_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == CPU
    for name in ("cuda", "cuda:1"):
        with pytest.raises(UserError, match=f"Device {name} was requested but no CUDA GPU is available; use --device cpu."):
            resolve_device(name)


@pytest.mark.parametrize("allowed, message", [
    (EVAL, "use fp32, bf16 or fp16."),
    (TOKENS, "use auto, fp32 or bf16."),
    (SYNTH, "use auto, fp32, fp16 or bf16."),
])
def test_unknown_precision_lists_the_choices(allowed, message):
    with pytest.raises(UserError) as error:
        parse_precision("fp8", allowed, CPU)
    assert str(error.value) == f"Unknown precision 'fp8'; {message}"


def test_precision_outside_a_commands_subset():
    with pytest.raises(UserError, match="Unknown precision 'auto'; use fp32, bf16 or fp16."):
        parse_precision("auto", EVAL, CPU)
    with pytest.raises(UserError, match="Unknown precision 'fp16'; use auto, fp32 or bf16."):
        parse_precision("fp16", TOKENS, CUDA)


def test_fp16_on_cpu():
    with pytest.raises(UserError) as error:
        parse_precision("fp16", SYNTH, CPU, auto="fp16", fp16_on_cpu=False)
    assert str(error.value) == "fp16 needs a GPU; use --precision fp32 or bf16 on CPU."
    assert parse_precision("fp16", EVAL, CPU) == "fp16"  # evaluation leaves fp16 autocast on CPU to torch
    assert parse_precision("fp16", SYNTH, CUDA, auto="fp16", fp16_on_cpu=False) == "fp16"


def test_auto_resolution():
    assert parse_precision("auto", TOKENS, CPU, auto="bf16") == "fp32"
    assert parse_precision("auto", SYNTH, CPU, auto="fp16", fp16_on_cpu=False) == "fp32"
    assert parse_precision("auto", TOKENS, CUDA, auto="bf16") == "bf16"
    assert parse_precision("auto", SYNTH, CUDA, auto="fp16") == "fp16"
    assert parse_precision("auto", TOKENS, torch.device("meta"), auto="bf16") == "fp32"
    assert parse_precision("bf16", TOKENS, CPU) == "bf16"


def test_autocast():
    assert isinstance(autocast(CPU, "fp32"), contextlib.nullcontext)
    layer = torch.nn.Linear(4, 4)
    with autocast(CPU, "fp32"):
        assert layer(torch.ones(1, 4)).dtype == torch.float32
    with autocast(CPU, "bf16"):
        assert layer(torch.ones(1, 4)).dtype == torch.bfloat16
    with pytest.raises(KeyError):
        autocast(CPU, "auto")
