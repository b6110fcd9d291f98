"""The Ray executor on a Ray cluster started by the test on loopback, against the in-process executor.

* the default world (lr0fm-tiny on all 10,000 Fashion-MNIST test images) gives the in-process
  predictions, sample by sample, with two model workers;
* a model worker killed in the middle of a range (the executor's test hook) is restarted, its range is
  sent again, and every cell ends complete with each sample stored once;
* the driver killed with SIGKILL mid-run leaves whole ranges; the rerun keeps every committed range as
  it is and computes only the missing ones, including ranges missing between committed ones.

Each slow test prints a `FAULTS:` line with its figures (`pytest -s -k cluster`).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from lr0fm.errors import UserError
from lr0fm.execute.cluster import KILL_HOOK
from lr0fm.plan import EvalConfig, WorkUnit, plan
from storecheck import assert_same_predictions, cells, coverage, integrity

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "250",
       "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}  # the head and its drivers alike
CLI = [sys.executable, "-c", "from lr0fm.cli import main; main()"]
# A driver with settings the CLI does not expose: small ranges, so a run has many of them.
DRIVER = """
import sys
from lr0fm.api import run_evaluation
from lr0fm.plan import EvalConfig
run_evaluation(EvalConfig(db=sys.argv[1], limit=int(sys.argv[2]), executor="ray", address=sys.argv[3],
                          model_workers=2, chunk_size=500, batch_size=100, workers=0))
"""


def figures(**values) -> None:
    print("FAULTS: " + ", ".join(f"{k}={v}" for k, v in values.items()))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A Ray head node on loopback with 4 logical CPUs (two model workers and two decode tasks at once);
    its address. Stopped with its process group at the end."""
    port = free_port()
    ray = Path(sys.executable).with_name("ray")
    head = subprocess.Popen([str(ray), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
                             "--num-cpus", "4", "--num-gpus", "0", "--include-dashboard", "false",
                             "--disable-usage-stats"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert head.poll() is None, head.stderr.read().decode()
            probe = subprocess.run([str(ray), "status", "--address", address], env=ENV, capture_output=True)
            if probe.returncode == 0:
                break
            assert time.time() < deadline, probe.stderr.decode()
            time.sleep(1)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The default world in this process, as a function of --limit (None: all 10,000 images): its database."""
    from lr0fm.api import run_evaluation

    made: dict = {}

    def run(limit: int | None = None) -> Path:
        if limit not in made:
            made[limit] = tmp_path_factory.mktemp("local") / "local.sqlite"
            run_evaluation(EvalConfig(db=made[limit], limit=limit, device="cpu"))
        return made[limit]

    return run


SENTINEL = 7  # a class index written over committed ranges: a range computed again would lose it


def mark(db: Path) -> set[int]:
    """Overwrite the top-5 of every committed range with SENTINEL; the starts of those ranges."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT run_id, resolution, start, stop FROM chunks").fetchall()
        for run_id, resolution, start, stop in rows:
            blob = zlib.compress(np.full((stop - start, 5), SENTINEL, dtype="<i4").tobytes())
            conn.execute("UPDATE chunks SET top5 = ? WHERE run_id = ? AND resolution = ? AND start = ?",
                         (blob, run_id, resolution, start))
    return {start for _, _, start, _ in rows}


def assert_ranges(db: Path, reference: Path, marked: set[int], size: int = 500) -> None:
    """Marked ranges still hold SENTINEL (never computed again); every other range the reference's top-5."""
    got, want = cells(db)[0], cells(reference)[0]
    assert got.keys() == want.keys()
    for resolution, (_, top5, _) in got.items():
        for start in range(0, len(top5), size):
            part = top5[start:start + size]
            if start in marked:
                assert (part == SENTINEL).all(), f"range {start} at {resolution} was computed again"
            else:
                np.testing.assert_array_equal(part, want[resolution][1][start:start + size])


@pytest.mark.slow
def test_the_default_world_on_ray_gives_the_in_process_predictions(cluster, reference, tmp_path):
    db = tmp_path / "ray.sqlite"
    began = time.perf_counter()
    done = subprocess.run([*CLI, "eval", "--executor", "ray", "--address", cluster, "--model-workers", "2", "--db", str(db)],
                          env=ENV, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - began
    assert done.returncode == 0, done.stderr
    assert "all models" in done.stderr and "5 cell(s) computed, 0 reused" in done.stderr
    assert "Top-1 %" in done.stdout
    assert_same_predictions(db, reference())
    assert coverage(db) == {r: (10_000, 1) for r in coverage(reference())}
    figures(test="ray default world", images=10_000, resolutions=5, workers=2, seconds=round(seconds, 1))


@pytest.mark.slow
def test_a_worker_killed_mid_range_has_its_range_sent_again(reference, tmp_path):
    db, marker, limit = tmp_path / "ray.sqlite", tmp_path / "killed", 3000
    # No --address: the driver starts a cluster of its own, whose workers see the hook's variable.
    done = subprocess.run([*CLI, "eval", "--executor", "ray", "--limit", str(limit), "--db", str(db)],
                          env={**ENV, KILL_HOOK: str(marker)}, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert marker.read_text().startswith("killed at image 1024"), "the hook did not kill a worker mid-range"
    assert integrity(db) == "ok"
    assert coverage(db) == {r: (limit, 1) for r in coverage(reference(limit))}  # complete, each sample once
    assert_same_predictions(db, reference(limit))
    figures(test="ray worker killed", kills=1, samples_compared=limit * len(coverage(db)))


@pytest.mark.slow
def test_a_driver_killed_mid_run_resumes_only_the_missing_ranges(cluster, reference, tmp_path):
    db, limit = tmp_path / "ray.sqlite", 4000
    command = [sys.executable, "-c", DRIVER, str(db), str(limit), cluster]
    log = (tmp_path / "driver.log").open("w")
    driver = subprocess.Popen(command, env=ENV, stdout=log, stderr=log)
    deadline = time.time() + 600
    while driver.poll() is None and time.time() < deadline:
        if db.exists():
            with sqlite3.connect(db, timeout=30) as conn:  # the driver holds the write lock only briefly
                ranges = conn.execute("SELECT COUNT(DISTINCT start) FROM chunks").fetchone()[0]
            if ranges >= 2:
                driver.send_signal(signal.SIGKILL)
                break
        time.sleep(0.2)
    assert driver.wait() == -signal.SIGKILL, (tmp_path / "driver.log").read_text() or "no range committed in time"
    assert integrity(db) == "ok"
    committed = mark(db)

    def rerun():
        again = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=900)
        assert again.returncode == 0, again.stderr
        assert integrity(db) == "ok"
        assert coverage(db) == {r: (limit, 1) for r in coverage(reference(limit))}  # complete, each sample once

    rerun()
    assert_ranges(db, reference(limit), committed)

    # Ranges lost between committed ones (as a crash with several ranges in flight leaves them): only
    # those are computed again.
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM chunks WHERE start IN (500, 2500)")
        conn.execute("DELETE FROM results")
    kept = mark(db)
    rerun()
    assert_ranges(db, reference(limit), kept)
    figures(test="ray driver SIGKILL", kills=1, ranges_committed_before_kill=len(committed), ranges=limit // 500,
            gap_ranges_recomputed=2, samples_compared=limit * len(coverage(db)))


def test_units_are_cut_into_ranges_at_the_same_image_numbers_on_every_run():
    unit = WorkUnit(None, "d", None, 0, 2500)
    assert unit.ranges(1000) == [(0, 1000), (1000, 2000), (2000, 2500)]
    assert WorkUnit(None, "d", None, 1500, 3100).ranges(1000) == [(1500, 2000), (2000, 3000), (3000, 3100)]
    assert WorkUnit(None, "d", None, 0, 800).ranges(1000) == [(0, 800)]


def test_cluster_flags_without_the_ray_executor_are_one_sentence():
    with pytest.raises(UserError, match="only apply to a cluster; add --executor ray"):
        plan(EvalConfig(address="auto"))
    with pytest.raises(UserError, match="Unknown executor 'spark'"):
        plan(EvalConfig(executor="spark"))
    with pytest.raises(UserError, match="--model-workers must be a positive number"):
        plan(EvalConfig(executor="ray", model_workers=0))


def test_the_ray_executor_without_ray_says_how_to_install_it(monkeypatch, tmp_path):
    from lr0fm.api import run_evaluation

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(UserError, match=r"--executor ray needs Ray: pip install 'lr0fm\[ray\]'"):
        run_evaluation(EvalConfig(executor="ray", db=tmp_path / "r.sqlite", limit=10))
    assert not (tmp_path / "r.sqlite").exists()


def test_the_cli_exits_2_when_ray_cannot_reach_the_cluster(tmp_path):
    done = subprocess.run([*CLI, "eval", "--executor", "ray", "--address", f"127.0.0.1:{free_port()}", "--limit", "10",
                           "--db", str(tmp_path / "r.sqlite")], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Cannot reach a Ray cluster at 127.0.0.1:" in done.stderr and "Traceback" not in done.stderr
