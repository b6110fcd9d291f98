"""Fault injection that stays: hard kills, concurrent runs, bad files, fuzzed bytes, malicious checkpoints, full
disks and files made read-only.

Each test prints one `FAULTS:` line with its figures (trials, kills survived, files tried, inputs fuzzed);
`pytest -s -k faults` shows them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lr0fm.store import ResultStore
from storecheck import assert_same_predictions, cells, coverage, integrity

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "250",
       "PYTHONPATH": str(ROOT / "tests")}
CLI = [sys.executable, "-c", "from lr0fm.cli import main; main()"]


def figures(**values) -> None:
    print("FAULTS: " + ", ".join(f"{k}={v}" for k, v in values.items()))


# --------------------------------------------------------------------------------------------------
# 6. Crash consistency: SIGKILL at random moments, then resume


SWEEP = """
import sys
from lr0fm.api import run_evaluation
from lr0fm.plan import EvalConfig
run_evaluation(EvalConfig(db=sys.argv[1], limit=int(sys.argv[2]), chunk_size=100, batch_size=50, workers=0, device="cpu"))
"""


def kill_at_random(command: list[str], whole: float, window: tuple[float, float], seed: int,
                   check, kills: int = 3) -> tuple[int, int]:
    """Start `command` and SIGKILL it at a random moment in `window` × `whole` seconds, until `kills` kills
    have landed mid-run (at most 3 × `kills` tries); `check()` after each. Returns (kills, tries)."""
    rng = random.Random(seed)
    survived = attempts = 0
    while survived < kills and attempts < 3 * kills:  # each resume has less left to do: aim early
        attempts += 1
        child = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(*window) * whole)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            survived += 1
        child.wait()
        check()
    assert survived >= kills, f"only {survived} of {attempts} kills landed mid-run"
    return survived, attempts


@pytest.mark.slow
def test_a_sweep_killed_at_random_moments_resumes_to_the_same_predictions(tmp_path):
    limit = 1500
    reference = tmp_path / "reference.sqlite"
    subprocess.run([sys.executable, "-c", SWEEP, str(reference), str(limit)], check=True, env=ENV, timeout=600)
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", SWEEP, str(tmp_path / "timing.sqlite"), str(limit)], check=True, env=ENV,
                   timeout=600)
    whole = time.monotonic() - start
    db = tmp_path / "killed.sqlite"

    def intact() -> None:
        if db.exists():
            assert integrity(db) == "ok"

    survived, attempts = kill_at_random([sys.executable, "-c", SWEEP, str(db), str(limit)], whole, (0.15, 0.45), 11,
                                        intact)
    subprocess.run([sys.executable, "-c", SWEEP, str(db), str(limit)], check=True, env=ENV, timeout=600)
    assert integrity(db) == "ok"
    assert coverage(db) == {r: (limit, 1) for r in coverage(reference)}
    assert_same_predictions(db, reference)
    figures(test="sweep SIGKILL", kills=survived, attempts=attempts, samples_compared=limit * len(coverage(reference)))


TRAIN = """
import sys
import lr0fm
lr0fm.train_tokens("lr0fm-tiny", sys.argv[1], sys.argv[2], steps=40, batch_size=16, workers=0, device="cpu",
                   checkpoint_every=1, log_every=10, resume=sys.argv[3] == "resume")
"""


@pytest.mark.slow
def test_token_training_killed_at_random_moments_resumes_bit_for_bit(tmp_path):
    from lr0fm.tokens.files import read_tokens
    from test_tokens import write_pool

    pool = write_pool(tmp_path / "pool", 48, groups=4, size=(32, 32))
    straight = tmp_path / "straight.safetensors"
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", TRAIN, str(pool), str(straight), "fresh"], check=True, env=ENV, timeout=600)
    whole = time.monotonic() - start
    out = tmp_path / "killed.safetensors"

    def whole_or_absent() -> None:  # the tokens file is written at the end, atomically
        if out.exists():
            read_tokens(out)

    survived, attempts = kill_at_random([sys.executable, "-c", TRAIN, str(pool), str(out), "resume"], whole,
                                        (0.3, 0.6), 5, whole_or_absent)
    subprocess.run([sys.executable, "-c", TRAIN, str(pool), str(out), "resume"], check=True, env=ENV, timeout=600)
    _, a = read_tokens(straight)
    _, b = read_tokens(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    figures(test="training SIGKILL", kills=survived, attempts=attempts, tensors_compared=len(a))


# --------------------------------------------------------------------------------------------------
# 7. Concurrency: two evaluations into one database at once


EVAL = CLI + ["eval", "--workers", "0"]


def at_once(*commands, timeout=600):
    children = [subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for command in commands]
    return [(child.wait(timeout), *child.communicate()) for child in children]


@pytest.mark.slow
@pytest.mark.parametrize("second", ["same", "overlapping"])
def test_two_evaluations_at_once_share_one_database(tmp_path, second):
    limit = "1200"
    first = EVAL + ["--limit", limit, "-r", "native,16,8"]
    other = first if second == "same" else EVAL + ["--limit", limit, "-r", "native,12,8"]
    db = tmp_path / "same.sqlite"
    (a, a_out, a_err), (b, b_out, b_err) = at_once(first + ["--db", str(db)], other + ["--db", str(db)])
    assert (a, b) == (0, 0), a_err + b_err
    assert "Traceback" not in a_err + b_err
    assert integrity(db) == "ok"
    resolutions = {"native", "16", "8"} | ({"12"} if second == "overlapping" else set())
    assert coverage(db) == {r: (int(limit), 1) for r in resolutions}  # each sample once
    single = tmp_path / "single.sqlite"
    subprocess.run(EVAL + ["--limit", limit, "-r", ",".join(sorted(resolutions)), "--db", str(single)], check=True,
                   env=ENV, capture_output=True, timeout=600)
    assert_same_predictions(db, single)
    with ResultStore(db) as store:
        assert store.leases() == []
    waited = "Waiting for" in a_err + b_err
    figures(test=f"concurrent {second}", processes=2, samples_checked=int(limit) * len(resolutions), waited=waited)


# --------------------------------------------------------------------------------------------------
# 8. A corpus of bad files


def bad_corpus(folder: Path) -> tuple[set[str], set[str]]:
    """Files that must be skipped and files that must evaluate, written into `folder`: the runner tests'
    odd images (zero bytes, random bytes, truncated JPEG and PNG, CMYK, RGBA, 16-bit, palette, 1-bit, ...)
    and the rest of the issue's list."""
    from test_runner import noise, write_odd_images

    bad, good = write_odd_images(folder)
    (folder / "text.png").write_text("this is not an image\n")
    Image.new("L", (12_000, 12_000)).save(folder / "bomb.png")  # 144 Mpx: past Pillow's limit, 140 kB on disk
    (folder / "dangling.png").symlink_to(folder / "gone.png")
    (folder / "loop-a.png").symlink_to(folder / "loop-b.png")
    (folder / "loop-b.png").symlink_to(folder / "loop-a.png")
    bad |= {"text.png", "bomb.png", "dangling.png", "loop-a.png", "loop-b.png"}

    palette = noise((30, 20), seed=1).convert("P", palette=Image.ADAPTIVE, colors=16)
    palette.save(folder / "palette-transparent.png", transparency=0)
    frames = [noise((30, 20), "P", seed=seed) for seed in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    noise((1, 1)).save(folder / "one-by-one.png")
    good |= {"palette-transparent.png", "animated.gif", "one-by-one.png"}
    from PIL import features

    if features.check("webp"):
        noise((30, 20)).save(folder / "photo.webp")
        good.add("photo.webp")
    unreadable = folder / "unreadable.png"
    noise((30, 20)).save(unreadable)
    unreadable.chmod(0)
    # Root reads any file: there the unreadable file is a readable one.
    (bad if not os.access(unreadable, os.R_OK) else good).add("unreadable.png")
    return bad, good


def test_a_corpus_of_bad_files_is_evaluated_or_counted_and_named(tmp_path, fake, colour_model, make_folder):
    import lr0fm
    from conftest import evaluation
    from lr0fm.plan import EvalConfig

    fake(colour_model())
    root = make_folder(tmp_path / "data", {"alpha": [10], "bravo": [40]})
    bad, good = bad_corpus(root / "charlie")
    try:
        rows, outcomes = evaluation(EvalConfig(models=["fake:colours"], datasets=[f"folder:{root}"],
                                               resolutions="native,16,8", db=tmp_path / "r.sqlite", workers=0,
                                               batch_size=4, device="cpu"))
    finally:
        (root / "charlie" / "unreadable.png").chmod(0o644)
    files = 2 + len(bad) + len(good)
    assert [(r["n"], r["n_skipped"]) for r in rows] == [(files - len(bad), len(bad))] * 3
    assert {Path(p).name for p in outcomes[0].skipped_images} == bad
    dataset = lr0fm.load_dataset(f"folder:{root}")
    assert len(dataset) == files  # nothing that looks like an image vanished from the count
    figures(test="bad files", files=files, skipped=len(bad), evaluated=files - len(bad))


# --------------------------------------------------------------------------------------------------
# 9. A fuzzer on the decode path


FUZZ_EXAMPLES = 150


@pytest.fixture(scope="module")
def one_file_dataset(tmp_path_factory):
    """A folder dataset of one image whose bytes each example overwrites, and view makers of every pipeline."""
    from lr0fm.data import load_dataset
    from lr0fm.degrade import ViewMaker

    root = tmp_path_factory.mktemp("fuzz")
    (root / "only").mkdir()
    Image.new("RGB", (8, 8)).save(root / "only" / "x.png")
    dataset = load_dataset(f"folder:{root}")
    makers = [ViewMaker("canonical", 32, ["native", "16", "8"]),
              ViewMaker("paper", 32, ["native", "16", "8"], "openclip"),
              ViewMaker("paper", 32, ["native", "16"], "blip"),
              ViewMaker("paper", 32, ["native", "8"], "albef")]
    return dataset, root / "only" / "x.png", makers


def check_views(dataset, path, makers, data: bytes, counter: dict) -> None:
    from lr0fm.execute import ImageViews as _Views

    path.write_bytes(data)
    for maker in makers:
        index, label, ok, views = _Views(dataset, maker, 0, 1)[0]
        assert isinstance(ok, bool)
        assert views.dtype == torch.uint8 and views.shape == (len(maker.resolutions), 3, 32, 32)
        if not ok:
            assert int(views.max()) == 0  # a skipped image is a zero placeholder, counted as not ok
        counter["views_made" if ok else "skips_counted"] += 1
    counter["inputs"] += 1


def test_fuzzed_bytes_give_a_view_or_a_counted_skip(one_file_dataset):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    dataset, path, makers = one_file_dataset
    counter = {"inputs": 0, "views_made": 0, "skips_counted": 0}
    seeds = []
    for format, save in (("PNG", {}), ("JPEG", {"quality": 80}), ("GIF", {}), ("BMP", {}), ("TIFF", {})):
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (9, 13, 3), dtype=np.uint8)).save(buffer, format, **save)
        seeds.append(buffer.getvalue())

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.one_of(
        st.binary(max_size=2048),
        st.tuples(st.sampled_from(seeds), st.integers(0, 4000), st.integers(0, 255), st.integers(1, 4000))
        .map(lambda t: t[0][: t[1] % len(t[0])] + bytes([t[2]]) + t[0][t[1] % len(t[0]) + 1:][: t[3]]),
    ))
    def fuzz(data):
        check_views(dataset, path, makers, data, counter)

    fuzz()
    assert counter["inputs"] >= FUZZ_EXAMPLES and counter["skips_counted"] > 0 and counter["views_made"] > 0
    figures(test="fuzzed bytes", **counter)


MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F", "LAB", "HSV")


def test_random_valid_images_of_every_mode_give_views(one_file_dataset):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    dataset, path, makers = one_file_dataset
    counter = {"inputs": 0, "views_made": 0, "skips_counted": 0}

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.sampled_from(MODES), st.integers(1, 300), st.integers(1, 300), st.integers(0, 2**32 - 1),
           st.sampled_from(("PNG", "TIFF", "JPEG", "GIF", "WEBP", "BMP")))
    def fuzz(mode, width, height, seed, format):
        rng = np.random.default_rng(seed)
        image = Image.frombytes("RGB", (width, height), rng.integers(0, 256, width * height * 3, dtype=np.uint8).tobytes())
        try:
            image = image.convert(mode)
        except (ValueError, OSError):
            image = image.convert("L").convert(mode) if mode.startswith("I") or mode == "F" else image
        buffer = io.BytesIO()
        try:
            image.save(buffer, format)
        except (OSError, ValueError, KeyError):
            return  # Pillow cannot write this mode in this format: nothing to read back
        check_views(dataset, path, makers, buffer.getvalue(), counter)
        assert counter["skips_counted"] == 0, f"a valid {mode} {format} {width}x{height} image was skipped"

    fuzz()
    assert counter["inputs"] > FUZZ_EXAMPLES // 3
    figures(test="random valid images", **counter)


# --------------------------------------------------------------------------------------------------
# 10. Malicious checkpoints: refused in one sentence, never executed


class Planted:
    """Unpickling this creates a file: what a malicious checkpoint could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def one_sentence(code: int, out: str, err: str, after_progress: bool = False) -> str:
    """The error sentence of a run that exited 2 (`after_progress`: below the progress bars of a run that
    failed in the middle)."""
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and "error: " in err, err
    tail = err[err.index("error: "):] if after_progress else err
    assert tail.startswith("error: ") and tail.strip().count("\n") <= 2, err  # one sentence, maybe wrapped
    return " ".join(tail.split())


@pytest.mark.slow
def test_malicious_checkpoints_are_refused_and_never_run(tmp_path):
    import pickle

    planted = tmp_path / "planted.txt"
    evil = {"state_dict": {"x": torch.zeros(1)}, "hook": Planted(planted)}
    files = {}
    files["zip.pt"] = lambda p: torch.save(evil, p)
    files["legacy.pt"] = lambda p: torch.save(evil, p, _use_new_zipfile_serialization=False)
    files["bare.pt"] = lambda p: p.write_bytes(pickle.dumps(evil))
    files["renamed.safetensors"] = lambda p: torch.save(evil, p)
    for name, write in files.items():
        write(tmp_path / name)

    pool = tmp_path / "pool"
    from test_tokens import write_pool

    write_pool(pool, 8, size=(32, 32))
    runs = []
    for name in files:  # as weights of the bundled model
        runs.append(CLI + ["eval", "--model", "lr0fm-tiny", "--weights", str(tmp_path / name), "--limit", "2",
                           "--db", str(tmp_path / "r.sqlite")])
    for name in ("zip.pt", "renamed.safetensors"):  # as a tokens file
        runs.append(CLI + ["eval", "--model", f"lr0fm-tiny+tokens={tmp_path / name}", "--limit", "2",
                           "--db", str(tmp_path / "r.sqlite")])
    # A poisoned training checkpoint under --resume.
    out = tmp_path / "tokens.safetensors"
    torch.save(evil, tmp_path / "tokens.safetensors.ckpt")
    runs.append(CLI + ["tokens", "train", "--model", "lr0fm-tiny", "--pool", str(pool), "--out", str(out),
                       "--steps", "2", "-b", "4", "--workers", "0", "--device", "cpu", "--resume"])
    # An hf: folder whose weights are a pickle.
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "clip"}))
    torch.save(evil, hf / "pytorch_model.bin")
    runs.append(CLI + ["eval", "--model", f"hf:{hf}", "--limit", "2", "--db", str(tmp_path / "r.sqlite")])

    refused = 0
    for command in runs:
        done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
        message = one_sentence(done.returncode, done.stdout, done.stderr)
        assert not planted.exists(), (command, message)
        assert not out.exists()
        refused += 1
    assert not (tmp_path / "r.sqlite").exists() or integrity(tmp_path / "r.sqlite") == "ok"
    figures(test="malicious checkpoints", files=refused, executed=0)


# --------------------------------------------------------------------------------------------------
# 11. Disk trouble: the database's file size limit reached in the middle of a run


def limited(max_bytes: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return apply


@pytest.mark.slow
def test_a_full_disk_stops_in_one_sentence_and_the_rerun_resumes(tmp_path):
    limit = "3000"
    command = EVAL + ["--limit", limit]
    reference = tmp_path / "reference.sqlite"
    subprocess.run(command + ["--db", str(reference)], check=True, env=ENV, capture_output=True, timeout=600)
    db = tmp_path / "full" / "results.sqlite"
    db.parent.mkdir()
    # Keep the classifier cache out of the limit's way: the same files the reference run wrote.
    shutil.copytree(tmp_path / "cache", db.parent / "cache")
    full_size = reference.stat().st_size
    done = subprocess.run(command + ["--db", str(db)], env=ENV, capture_output=True, text=True, timeout=600,
                          preexec_fn=limited(full_size * 3 // 4))
    stopped_then_resumed("disk full", (done.returncode, done.stdout, done.stderr), command, db, reference, limit)


def stopped_then_resumed(name: str, stopped: tuple[int, str, str], command: list[str], db: Path, reference: Path,
                         limit: str) -> None:
    """A run that could not write its database: one sentence and exit 2, the database intact with whole
    chunks kept; the same command run again resumes to the reference's predictions."""
    message = one_sentence(*stopped, after_progress=True)
    assert "Cannot write to the results database" in message and "rerun the same command to resume" in message
    assert integrity(db) == "ok"
    with ResultStore(db) as store:
        prefix = store.completed_prefix(1, "native")
        assert store.results() == [] and 0 < prefix < int(limit)  # whole chunks kept, the rest missing
    done = subprocess.run(command + ["--db", str(db)], env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert_same_predictions(db, reference)
    assert coverage(db) == {r: (int(limit), 1) for r in coverage(reference)}
    figures(test=name, trials=1, samples_kept_through_the_failure=prefix)


def immutable(paths: list[Path], on: bool) -> bool:
    """chattr ±i on each existing path (root on ext4 and the like): writes through open files then fail
    with EPERM, which a chmod cannot do to a process that has the file open. False where it cannot be set."""
    tool = shutil.which("chattr")
    if tool is None:
        return False
    return all(subprocess.run([tool, "+i" if on else "-i", str(p)], capture_output=True).returncode == 0
               for p in paths if p.exists())


def chunks_in(db: Path) -> int:
    """Chunks committed to `db` so far (0 before its tables exist)."""
    if not db.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
            return conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    except sqlite3.OperationalError:  # created but without its tables yet
        return 0


@pytest.mark.slow
def test_a_database_made_read_only_mid_run_stops_in_one_sentence_and_the_rerun_resumes(tmp_path):
    probe = tmp_path / "probe"
    probe.touch()
    if not immutable([probe], True):
        pytest.skip("chattr +i is not permitted here (needs root and a file system with the immutable flag)")
    immutable([probe], False)
    limit = "3000"
    command = EVAL + ["--limit", limit]
    reference = tmp_path / "reference.sqlite"
    subprocess.run(command + ["--db", str(reference)], check=True, env=ENV, capture_output=True, timeout=600)
    db = tmp_path / "results.sqlite"
    files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-journal")]
    child = subprocess.Popen(command + ["--db", str(db)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and child.poll() is None and not chunks_in(db):  # the first chunk is in
            time.sleep(0.05)
        assert child.poll() is None, "the run ended before the file could be made read-only"
        made = immutable(files, True)
        out, err = child.communicate(timeout=300)
    finally:
        immutable(files, False)
    assert made
    stopped_then_resumed("database read-only", (child.returncode, out, err), command, db, reference, limit)
