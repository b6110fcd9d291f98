"""Cell leases: one process computes a cell, others skip it, wait for it, or take it over when its owner dies."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import evaluation
from lr0fm import leases
from lr0fm.api import run_evaluation
from lr0fm.execute import LocalExecutor
from lr0fm.leases import Heartbeat, Owner
from lr0fm.plan import EvalConfig
from lr0fm.store import LeaseLost, ResultStore, RunKey
from test_runner import METRICS, chunk_coverage, random_levels_folder

KEY = RunKey("m", "f", "d", "df", "test", "canonical")


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def someone_else(pid=None, host=None) -> Owner:
    return Owner(host or socket.gethostname(), os.getpid() if pid is None else pid, "other-token")


@pytest.fixture
def store(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as opened:
        yield opened


def test_a_live_claim_holds_a_dead_or_silent_one_does_not(store, monkeypatch):
    run = store.run_id(KEY, {})
    me = Owner.me()
    other = someone_else()
    first = store.claim(run, ["native", "16"], other)
    assert first.mine == ["native", "16"] and not first.held

    second = store.claim(run, ["native", "16", "8"], me)
    assert second.mine == ["8"] and second.held == {"native": other.describe(), "16": other.describe()}
    assert store.claim(run, ["8"], me).mine == ["8"]  # a claim is re-entrant for its owner

    # Its owner gone from this host: the lease is free at once, heartbeat or not.
    store.release(other)
    store.claim(run, ["native"], someone_else(pid=dead_pid()))
    assert store.claim(run, ["native"], me).mine == ["native"]

    # On another host only the heartbeat tells: a silent owner loses the cell after LEASE_TTL_S.
    remote = someone_else(host="elsewhere.invalid")
    store.claim(run, ["16"], remote)
    assert "16" in store.claim(run, ["16"], me).held
    monkeypatch.setattr(leases, "LEASE_TTL_S", -1.0)
    assert store.claim(run, ["16"], me).mine == ["16"]


def test_writes_need_the_lease_and_finishing_ends_it(store):
    run = store.run_id(KEY, {})
    me, other = Owner.me(), someone_else(host="elsewhere.invalid")
    labels, ok, top5 = np.arange(4) % 3, np.ones(4, bool), np.zeros((4, 5), int)
    store.claim(run, ["native"], other)
    with pytest.raises(LeaseLost, match="taken over by elsewhere.invalid pid"):
        store.add_chunk(run, 0, labels, ok, {"native": top5}, owner=me)
    assert store.completed_prefix(run, "native") == 0  # nothing written

    store.release(other)
    assert store.claim(run, ["native"], me).mine == ["native"]
    store.add_chunk(run, 0, labels, ok, {"native": top5}, owner=me)
    store.finish_resolution(run, "native", 3, 32, owner=me)
    assert store.leases() == []
    # A finished cell is not claimed again, except to recompute it (force).
    later = store.claim(run, ["native"], other)
    assert later.finished == ["native"] and later.mine == []
    assert store.claim(run, ["native"], other, force=True).mine == ["native"]


def test_dry_run_claims_nothing_and_heartbeats_refresh(store, tmp_path):
    run = store.run_id(KEY, {})
    me = Owner.me()
    assert store.claim(run, ["native"], me, dry_run=True).mine == ["native"]
    assert store.leases() == []
    store.claim(run, ["native"], me)
    before = store.leases()[0]["heartbeat"]
    time.sleep(0.05)
    beats = []
    with Heartbeat(lambda: beats.append(store_in_thread(tmp_path, me)), interval=0.02):
        time.sleep(0.3)
    assert beats and beats[-1] == 1
    assert store.leases()[0]["heartbeat"] > before


def store_in_thread(tmp_path, owner):
    with ResultStore(tmp_path / "r.sqlite") as own:  # a connection belongs to its thread
        return own.heartbeat(owner)


def test_a_store_of_schema_1_gains_the_lease_table(tmp_path):
    import sqlite3

    from lr0fm import store as module

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    for statement in module._SCHEMA_V1.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {module.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with ResultStore(path) as opened:
        assert opened._conn.execute("PRAGMA user_version").fetchone()[0] == module.SCHEMA_VERSION
        assert opened.leases() == []


# --------------------------------------------------------------------------------------------------
# The executor


def held_by_someone_else(db, config, owner, resolutions):
    """Make the run of `config` exist and let `owner` claim `resolutions` of it, as a running process would."""
    from lr0fm import loader
    from lr0fm.data import load_dataset
    from lr0fm.models import parse_spec

    model = loader.load(parse_spec(config.models[0]), "cpu")
    dataset = load_dataset(config.datasets[0])
    key = RunKey(model.spec, model.fingerprint(), dataset.name, dataset.fingerprint(), dataset.split, "canonical")
    with ResultStore(db) as store:
        run = store.run_id(key, {})
        assert store.claim(run, resolutions, owner).mine == list(resolutions)
    return run


def config_for(tmp_path, colour_model, **options):
    root = random_levels_folder(tmp_path / "data", list(colour_model().levels), 12)
    options = {"resolutions": "native,16,8", "batch_size": 4, "workers": 0, "device": "cpu", **options}
    return EvalConfig(models=["fake:colours"], datasets=[f"folder:{root}"], db=tmp_path / "r.sqlite", **options)


def test_cells_another_process_computes_are_left_to_it_without_wait(tmp_path, fake, colour_model):
    model = fake(colour_model())
    config = config_for(tmp_path, colour_model, wait=False)
    other = someone_else(host="elsewhere.invalid")
    held_by_someone_else(config.db, config, other, ["16", "8"])
    result = run_evaluation(config)
    assert [o.computed for o in result.outcomes] == [["native"]]
    assert result.busy == [("fake:colours", result.outcomes[0].dataset, ["16", "8"], other.describe())]
    assert model.images_seen == 12  # native only
    assert [r["resolution"] for r in result.rows] == ["native"]


def test_waiting_reuses_what_the_other_finishes_and_takes_over_from_the_dead(tmp_path, fake, colour_model, monkeypatch):
    model = fake(colour_model())
    config = config_for(tmp_path, colour_model)
    reference, _ = evaluation(config_for(tmp_path / "ref", colour_model))
    model.reset_counts()
    other = someone_else(host="elsewhere.invalid")
    run = held_by_someone_else(config.db, config, other, ["16", "8"])
    monkeypatch.setattr(LocalExecutor, "poll_s", 0.05)

    def the_other_process():
        # Finishes 16 px (as a faithful copy of the same evaluation), then dies holding 8 px.
        time.sleep(0.3)
        from lr0fm.store import ResultStore as Store

        with Store(config.db) as mine, Store(tmp_path / "ref" / "r.sqlite") as ref:
            labels, top5, ok = ref.predictions(reference[0]["run_id"], "16")
            mine.add_chunk(run, 0, labels, ok, {"16": top5}, owner=other)
            mine.finish_resolution(run, "16", 6, 16, owner=other)
        monkeypatch.setattr(leases, "LEASE_TTL_S", 0.5)  # its heartbeats stop: the lease expires

    thread = threading.Thread(target=the_other_process)
    thread.start()
    result = run_evaluation(config)
    thread.join()
    outcome, = result.outcomes
    assert outcome.computed == ["native", "8"] and outcome.reused == ["16"] and not outcome.held
    assert model.images_seen == 12 * 2  # native, then 8 px once its owner was gone: 16 px never
    assert [[r[k] for k in METRICS] for r in result.rows] == [[r[k] for k in METRICS] for r in reference]
    assert chunk_coverage(config.db) == {r: (12, 1) for r in ("native", "16", "8")}
    with ResultStore(config.db) as store:
        assert store.leases() == []


def test_no_wait_on_the_command_line_names_the_holder_and_exits_1(tmp_path, fake, colour_model):
    from typer.testing import CliRunner

    from lr0fm.cli import app

    fake(colour_model())
    config = config_for(tmp_path, colour_model)
    other = someone_else(host="elsewhere.invalid")
    held_by_someone_else(config.db, config, other, ["8"])
    out = CliRunner().invoke(app, ["eval", "-m", "fake:colours", "-d", config.datasets[0], "-r", "native,16,8",
                                   "--db", str(config.db), "--workers", "0", "--no-wait"])
    assert out.exit_code == 1, out.output
    text = " ".join(out.output.split())
    assert f"another lr0fm process ({other.describe()}) is computing it" in text
    assert "rerun the same command" in text
