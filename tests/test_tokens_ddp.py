"""Token training on two processes (torchrun, gloo on the CPU) against one process with the same global batch.

The runs train the resolution-conditioned variant: the tokens and the gate MLP, fed each view's source size.
Each torchrun start loads lr0fm-tiny twice, so the tests that launch one take more than ten seconds.
"""

import shutil
import socket
import subprocess
import sys

import pytest
import torch

from lr0fm.errors import UserError
from lr0fm.tokens.distributed import environment
from lr0fm.tokens.files import read_tokens
from lr0fm.tokens.pool import BatchPlan, StepSampler
from lr0fm.tokens.wrapper import LowResTokens, TokenLayout

POOL = "fashion_mnist:train"
# Tiny runs: four steps of a global batch of 8 (4 images per process), a checkpoint every 2 steps.
SETTINGS = dict(steps=4, batch_size=8, lr=5e-3, checkpoint_every=2, variant="resolution", workers=0, device="cpu")
FLAGS = ["--steps", "4", "-b", "8", "--lr", "5e-3", "--checkpoint-every", "2", "--variant", "resolution", "--workers", "0",
         "--device", "cpu"]
# Two processes sum the gradients in another order than one: the tokens agree to rounding (up to about 2e-6
# seen), far below one step's update (lr 5e-3). Losses and gradient norms agree to RTOL; a gradient N times
# too large would double the norms.
ATOL = 1e-4
RTOL = 1e-4

# Trains like FLAGS, stopping on every process after step 3 (the last checkpoint is step 2's).
STOPPED = f"""
import sys
import lr0fm

def stop(step, loss):
    if step == 3:
        raise SystemExit(3)

lr0fm.train_tokens("lr0fm-tiny", "{POOL}", sys.argv[1], callback=stop, **{SETTINGS!r})
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    """`torchrun --nproc-per-node N ARGS...` on a free port; ARGS start with `-m lr0fm` or a script."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def train_command(out, *extra: str) -> list[str]:
    return ["-m", "lr0fm", "tokens", "train", "--model", "lr0fm-tiny", "--pool", POOL, "--out", str(out), *FLAGS, *extra]


def checkpoint(out) -> dict:
    return torch.load(f"{out}.ckpt", map_location="cpu", weights_only=True)


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Uninterrupted runs: one process (in this process) and two (torchrun, through the command line)."""
    import lr0fm

    folder = tmp_path_factory.mktemp("ddp")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun runs each process
    try:
        one = lr0fm.train_tokens("lr0fm-tiny", POOL, folder / "one.safetensors", **SETTINGS)
    finally:
        torch.set_num_threads(threads)
    two = folder / "two.safetensors"
    launched = torchrun(*train_command(two))
    assert launched.returncode == 0, launched.stderr[-3000:]
    return folder, one, two, launched


@pytest.mark.slow
def test_two_processes_train_the_tokens_of_one(straight):
    folder, one, two, launched = straight
    metadata, tokens_two = read_tokens(two)
    _, tokens_one = read_tokens(one.path)
    difference = max_difference(tokens_one, tokens_two)
    print(f"max |tokens(1 process) - tokens(2 processes)| = {difference:.3g}")
    assert all(torch.allclose(tokens_one[k], tokens_two[k], rtol=0, atol=ATOL) for k in tokens_one), difference
    # The same losses, and the same gradient norms: the gradients are those of one process, not N times them.
    state = checkpoint(two)
    assert state["step"] == 4 and state["processes"] == 2
    assert torch.allclose(torch.tensor(state["losses"]), torch.tensor(one.losses), rtol=RTOL)
    assert torch.allclose(torch.tensor(state["grad_norms"]), torch.tensor(one.grad_norms), rtol=RTOL)
    assert metadata["training"]["processes"] == 2 and metadata["training"]["batch_size"] == 8
    # Process 0 alone reports.
    assert launched.stderr.count("Wrote ") == 1 and "+tokens=" in launched.stderr


@pytest.mark.slow
def test_stopped_two_process_run_resumes_exactly(straight, tmp_path):
    folder, one, two, _ = straight
    out = tmp_path / "stopped.safetensors"
    script = tmp_path / "stopped.py"
    script.write_text(STOPPED)
    stopped = torchrun(str(script), str(out))
    assert stopped.returncode != 0 and not out.exists()
    assert checkpoint(out)["step"] == 2
    shutil.copy(f"{out}.ckpt", tmp_path / "alone.safetensors.ckpt")

    resumed = torchrun(*train_command(out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed at step 2" in resumed.stderr
    _, expected = read_tokens(two)
    _, tokens = read_tokens(out)
    assert all(torch.equal(tokens[k], expected[k]) for k in expected)  # the same processes: bit for bit
    assert checkpoint(out)["losses"] == checkpoint(two)["losses"]

    # The two processes' checkpoint resumed by one process: the same global batches, so equal to rounding.
    import lr0fm

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = lr0fm.train_tokens("lr0fm-tiny", POOL, tmp_path / "alone.safetensors", resume=True, **SETTINGS)
    finally:
        torch.set_num_threads(threads)
    assert alone.resumed_from == 2 and alone.processes == 1
    _, tokens_alone = read_tokens(alone.path)
    assert max_difference(tokens_alone, expected) <= ATOL


@pytest.mark.slow
def test_a_batch_that_does_not_split_is_one_sentence(tmp_path):
    out = tmp_path / "odd.safetensors"
    launched = torchrun(*train_command(out, "-b", "7"))  # the later -b wins
    assert launched.returncode != 0 and not out.exists()
    sentence = "--batch-size 7 is the global batch, split evenly across the 2 processes; make it a multiple of 2"
    assert launched.stderr.count(sentence) == 1, launched.stderr[-3000:]  # process 0 alone says it
    assert "exitcode  : 2" in launched.stderr  # each process ends with the usage-error status
    assert "lr0fm/tokens" not in launched.stderr  # no traceback of lr0fm's own


def test_process_shares_laid_end_to_end_are_the_global_batch():
    plan = BatchPlan(40, [str(i // 5) for i in range(40)], 8, 4, seed=3)
    for world in (1, 2, 4, 8):
        shares = [list(StepSampler(plan, 2, 5, rank, world)) for rank in range(world)]
        for step, batch in enumerate(StepSampler(plan, 2, 5)):
            assert sum((share[step] for share in shares), []) == batch  # same images, same view seeds
    with pytest.raises(UserError, match="multiple of 3"):
        StepSampler(plan, 0, 1, 0, 3)


def test_the_gate_starts_from_the_seed_alone():
    """Not from the global RNG: every process (and every run) starts the resolution gate alike."""
    layout = TokenLayout("resolution", "open_clip", num_patches=4, width=8, num_blocks=2, num_prefix=1, native=32,
                         gate_hidden=16)
    torch.manual_seed(1)
    first = LowResTokens(layout, seed=5).state_dict()
    torch.manual_seed(2)
    state = torch.get_rng_state()
    second = LowResTokens(layout, seed=5).state_dict()
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left as it was
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(LowResTokens(layout, seed=6).state_dict()["gate.0.weight"], first["gate.0.weight"])


def test_torchrun_environment(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert environment() == (1, 0, 0)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(UserError, match="torchrun"):
        environment()
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert environment() == (4, 3, 1)
