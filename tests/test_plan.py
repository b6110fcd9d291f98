"""The planner: policy, work units, resolutions per model, and stored cells subtracted without loading."""

import pytest

from conftest import evaluation
from lr0fm import loader
from lr0fm.errors import UserError
from lr0fm.models import parse_spec
from lr0fm.plan import EvalConfig, WorkUnit, plan


def config(tmp_path, **fields):
    return EvalConfig(**{"db": tmp_path / "r.sqlite", "workers": 0, "device": "cpu", **fields})


def test_a_plain_eval_is_one_unit_per_cell_with_policy_stop(tmp_path):
    work = plan(config(tmp_path, limit=40))
    assert work.policy == "stop" and not work.batch and work.suite is None
    assert work.config.datasets == ["fashion_mnist"] and work.config.protocol == "canonical"
    tiny = parse_spec("lr0fm-tiny")
    assert work.models == [tiny] and work.requested is None
    assert work.units == [WorkUnit(tiny, "fashion_mnist", ("native", "24", "16", "12", "8"), 0, 40)]
    assert not work.stored and not work.skipped and not (tmp_path / "r.sqlite").exists()  # nothing written


def test_requested_resolutions_are_parsed_once_and_fitted_per_model(tmp_path):
    work = plan(config(tmp_path, resolutions="8,native,16", limit=10))
    assert work.requested == ("native", "8", "16") and work.units[0].resolutions == ("native", "8", "16")
    assert work.resolutions_for(64) == (("native", "8", "16"), ())
    with pytest.raises(UserError, match="Resolution 32 is not below the model's native 32 px"):
        plan(config(tmp_path, resolutions="native,32"))
    with pytest.raises(UserError, match=r"^lr0fm-tiny: Resolution 64"):  # several models: named
        plan(config(tmp_path, models=["lr0fm-tiny", "clip-vit-b32"], resolutions="native,64"))


def test_a_suite_or_all_is_a_batch_with_policy_skip(tmp_path):
    work = plan(config(tmp_path, models=["albef-4m", "clip-vit-b32"], suite="lr0fm", data_root=str(tmp_path)))
    assert work.policy == "skip" and work.batch and work.suite.name == "lr0fm"
    assert [str(m) for m in work.models] == ["clip-vit-b32"] and work.config.protocol == "paper"
    assert [(s.model, s.dataset) for s in work.skipped][0] == ("albef-4m", "")
    missing = [s.dataset for s in work.skipped[1:]]
    assert missing == list(work.dataset_names) and not work.units  # no dataset under the empty root
    assert work.resolutions_for(64) == (("native", "32", "16"), ("128", "64"))


def test_duplicate_specs_are_planned_once(tmp_path):
    work = plan(config(tmp_path, models=["lr0fm-tiny", " lr0fm-tiny "], limit=5))
    assert len(work.models) == 1 and len(work.units) == 1


def test_stored_cells_are_subtracted_before_any_model_loads(tmp_path, monkeypatch):
    first = config(tmp_path, limit=24, resolutions="native,8")
    rows, _ = evaluation(first)
    assert {r["resolution"] for r in rows} == {"native", "8"}

    work = plan(first)
    assert not work.units and [(c.model, c.reused) for c in work.stored] == [("lr0fm-tiny", ["native", "8"])]
    monkeypatch.setattr(loader, "load", lambda *a, **k: pytest.fail("a model was loaded although its cells are stored"))
    again, outcomes = evaluation(first)
    assert again == rows and outcomes[0].reused == ["native", "8"] and not outcomes[0].computed

    # A new resolution, --force or a weights file: the model must load (the store decides per fingerprint).
    assert len(plan(config(tmp_path, limit=24, resolutions="native,8,16")).units) == 1
    assert len(plan(config(tmp_path, limit=24, resolutions="native,8", force=True)).units) == 1
