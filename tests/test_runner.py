"""Planning and executing the grid end to end: result rows, stored predictions, resume, reuse, bad input, bad images."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import math
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import lr0fm
from conftest import evaluation
from lr0fm.errors import UserError
from lr0fm.plan import EvalConfig
from lr0fm.store import ResultStore

TEMPLATES = ("a photo of a {}.", "{} in a picture.")


def run(db, models=("fake:colours",), datasets=(), **options):
    options = {"resolutions": "native,16,8", "batch_size": 2, "workers": 0, "device": "cpu", **options}
    return evaluation(EvalConfig(models=list(models), datasets=list(datasets), db=db, **options))


def random_levels_folder(root, classnames, count, seed=0):
    """`count` solid grey images with random levels, spread round-robin over the classes."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, 256, count)
    images = {name: [] for name in classnames}
    for i, level in enumerate(levels):
        images[classnames[i % len(classnames)]].append(int(level))
    for name, values in images.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, level in enumerate(values):
            Image.new("RGB", (24, 20), (level,) * 3).save(root / name / f"{i:03d}.png")
    (root / "templates.txt").write_text("\n".join(TEMPLATES) + "\n")
    return root


def only_run_id(db):
    with sqlite3.connect(db) as conn:
        (run_id,), = conn.execute("SELECT id FROM runs").fetchall()
    return run_id


def chunk_coverage(db):
    """resolution -> (samples stored, number of stored rows per sample index)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT resolution, start, stop FROM chunks").fetchall()
    coverage = {}
    for resolution, start, stop in rows:
        coverage.setdefault(resolution, []).extend(range(start, stop))
    return {r: (len(v), max(np.bincount(v))) for r, v in coverage.items()}


METRICS = ("resolution", "pixels", "top1", "top5", "mean_per_class_recall", "n", "n_skipped")


# --------------------------------------------------------------------------------------------------
# Results and predictions


def test_result_rows_and_predictions(tmp_path, fake, colour_model, make_folder):
    model = fake(colour_model())
    images = {name: [level, level] for name, level in model.levels.items()}
    images["alpha"].append(245)  # looks like foxtrot: wrong top-1, and alpha is the farthest class: wrong top-5
    images["charlie"].append(150)  # looks like delta: wrong top-1, charlie third nearest: right top-5
    root = make_folder(tmp_path / "data", images, TEMPLATES)
    (root / "bravo" / "999.png").write_bytes(b"")  # unreadable: counted, not scored
    db = tmp_path / "out" / "results.sqlite"

    table = lr0fm.evaluate("fake:colours", f"folder:{root}", resolutions="8,native,16", db=db,
                           batch_size=4, workers=0, device="cpu")
    assert table["resolution"].tolist() == ["native", "16", "8"]
    assert table["pixels"].tolist() == [32, 16, 8]
    assert table["top1"].tolist() == pytest.approx([12 / 14] * 3)
    assert table["top5"].tolist() == pytest.approx([13 / 14] * 3)
    assert table["n"].tolist() == [14] * 3 and table["n_skipped"].tolist() == [1] * 3
    assert set(table["model_spec"]) == {"fake:colours"} and set(table["dataset"]) == {f"folder:{root}"}
    # Every image is seen once per resolution.
    assert model.images_seen == 15 * 3

    dataset = lr0fm.load_dataset(f"folder:{root}")
    with ResultStore(db) as store:
        run_id = int(table["run_id"][0])
        for resolution in ("native", "16", "8"):
            labels, top5, ok = store.predictions(run_id, resolution)
            assert labels.tolist() == dataset.labels
            assert ok.tolist() == [dataset.describe(i) != "bravo/999.png" for i in range(len(dataset))]
            for i in np.flatnonzero(ok):
                level = dataset.load_image(i).getpixel((0, 0))[0]
                assert top5[i].tolist() == model.expected_top5(level), dataset.describe(i)
        provenance = store.run(run_id)["provenance"]
    assert provenance["protocol"] == "canonical" and provenance["n_images"] == 15
    assert provenance["model_fingerprint"] == model.fingerprint()


def test_fewer_than_five_classes_store_minus_one(tmp_path, fake, colour_model, make_folder):
    fake(colour_model(classnames=("alpha", "bravo"), levels=(20, 220)))
    root = make_folder(tmp_path / "data", {"alpha": [20], "bravo": [220, 20]}, TEMPLATES)
    rows, _ = run(tmp_path / "r.sqlite", datasets=[f"folder:{root}"], resolutions="native")
    assert [(r["top1"], r["top5"]) for r in rows] == [(pytest.approx(2 / 3), 1.0)]
    with ResultStore(tmp_path / "r.sqlite") as store:
        _, top5, _ = store.predictions(rows[0]["run_id"], "native")
    assert top5.tolist() == [[0, 1, -1, -1, -1], [1, 0, -1, -1, -1], [0, 1, -1, -1, -1]]


# --------------------------------------------------------------------------------------------------
# Resume, reuse, force


def test_resume_after_crash_stores_each_sample_once(tmp_path, fake, colour_model):
    root = random_levels_folder(tmp_path / "data", list(colour_model().levels), 20)
    dataset = [f"folder:{root}"]
    options = {"batch_size": 2, "chunk_size": 4}
    n_resolutions = 3

    reference = fake(colour_model())
    reference_rows, _ = run(tmp_path / "reference.sqlite", datasets=dataset, **options)

    crashing = fake(colour_model(fail_after=5 * n_resolutions + 2))  # dies inside the sixth batch
    db = tmp_path / "resumed.sqlite"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(db, datasets=dataset, **options)
    run_id = only_run_id(db)
    with ResultStore(db) as store:
        assert store.results() == []
        committed = {r: store.completed_prefix(run_id, r) for r in ("native", "16", "8")}
    done = committed["native"]
    assert set(committed.values()) == {done} and 0 < done < 20 and done % 4 == 0

    crashing.fail_after = None
    crashing.reset_counts()
    rows, outcomes = run(db, datasets=dataset, **options)
    # Only the samples after the last committed chunk were evaluated again.
    assert crashing.images_seen == (20 - done) * n_resolutions
    assert crashing.image_calls == math.ceil((20 - done) / 2) * n_resolutions
    assert outcomes[0].computed == ["native", "16", "8"]
    assert chunk_coverage(db) == {r: (20, 1) for r in ("native", "16", "8")}
    assert [[r[k] for k in METRICS] for r in rows] == [[r[k] for k in METRICS] for r in reference_rows]
    with ResultStore(db) as resumed, ResultStore(tmp_path / "reference.sqlite") as whole:
        for resolution in ("native", "16", "8"):
            for got, want in zip(resumed.predictions(rows[0]["run_id"], resolution),
                                 whole.predictions(reference_rows[0]["run_id"], resolution)):
                np.testing.assert_array_equal(got, want)
    assert reference.images_seen == 20 * n_resolutions


def test_finished_cells_are_reused_forced_or_extended(tmp_path, fake, colour_model):
    model = fake(colour_model())
    root = random_levels_folder(tmp_path / "data", list(model.levels), 6)
    dataset = [f"folder:{root}"]
    db = tmp_path / "r.sqlite"
    first, _ = run(db, datasets=dataset, resolutions="native,16")
    assert model.images_seen == 12

    model.reset_counts()
    again, outcomes = run(db, datasets=dataset, resolutions="native,16")
    assert (model.image_calls, model.text_calls) == (0, 0)
    assert outcomes[0].reused == ["native", "16"] and outcomes[0].computed == []
    assert again == first

    model.reset_counts()
    forced, outcomes = run(db, datasets=dataset, resolutions="native,16", force=True)
    assert model.images_seen == 12 and outcomes[0].computed == ["native", "16"]
    assert [[r[k] for k in METRICS] for r in forced] == [[r[k] for k in METRICS] for r in first]
    assert chunk_coverage(db) == {"native": (6, 1), "16": (6, 1)}

    model.reset_counts()
    extended, outcomes = run(db, datasets=dataset, resolutions="native,16,8")
    assert model.images_seen == 6 and outcomes[0].computed == ["8"] and outcomes[0].reused == ["native", "16"]
    assert [r["resolution"] for r in extended] == ["native", "16", "8"]
    # The classifier came from the on-disk cache, not from the text tower.
    assert model.text_calls == 0


def test_classifier_cache_lives_next_to_the_db(tmp_path, fake, colour_model, make_folder):
    model = fake(colour_model())
    root = make_folder(tmp_path / "data", {"alpha": [10], "echo": [200]}, TEMPLATES)
    db = tmp_path / "results" / "r.sqlite"
    run(db, datasets=[f"folder:{root}"], resolutions="native")
    cache = tmp_path / "results" / "cache" / "classifiers"
    assert model.text_calls == 1 and [p.suffix for p in cache.iterdir()] == [".safetensors"]
    model.reset_counts()
    run(db, datasets=[f"folder:{root}"], resolutions="native,8", force=True)
    assert model.text_calls == 0 and model.image_calls > 0
    assert len(list(cache.iterdir())) == 1


def test_workers_give_the_same_predictions(tmp_path, fake, colour_model):
    fake(colour_model())
    root = random_levels_folder(tmp_path / "data", list(colour_model().levels), 14, seed=3)
    results = {}
    for workers in (0, 2):
        db = tmp_path / f"w{workers}.sqlite"
        rows, _ = run(db, datasets=[f"folder:{root}"], workers=workers, batch_size=3, chunk_size=4)
        with ResultStore(db) as store:
            results[workers] = (rows, [store.predictions(rows[0]["run_id"], r) for r in ("native", "16", "8")])
    (rows0, predictions0), (rows2, predictions2) = results[0], results[2]
    assert [[r[k] for k in METRICS] for r in rows0] == [[r[k] for k in METRICS] for r in rows2]
    for got, want in zip(predictions2, predictions0):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    # Predictions differ between samples, so a reordering would show.
    assert len({tuple(row) for row in predictions0[0][1]}) > 2


# --------------------------------------------------------------------------------------------------
# Bad input: a clear UserError, and nothing written


@pytest.mark.parametrize("change, fragment", [
    ({"models": ["nope:model"]}, "Unknown model"),
    ({"models": ["fake:colours", "nope:model"]}, "Unknown model"),  # checked before the first model runs
    ({"models": ["openclip:ViT-Nope-1"]}, "Unknown open_clip architecture"),
    ({"datasets": ["imagenet-nope"]}, "Unknown dataset"),
    ({"protocol": "sharp"}, "Unknown protocol"),
    ({"resolutions": "native,32"}, "not below the model's native 32"),
    ({"resolutions": "native,64,16"}, "not below the model's native 32"),
    ({"resolutions": "native,abc"}, "not a whole number"),
    ({"models": ["fake:colours", "fake:other"], "weights": "w.safetensors"}, "exactly one --model"),
    ({"limit": 0}, "--limit must be a positive"),
    ({"precision": "fp8"}, "Unknown precision"),
    ({"device": "tpu"}, "Unknown device"),
])
def test_bad_input_writes_nothing(tmp_path, fake, colour_model, make_folder, change, fragment):
    fake(colour_model())
    fake(colour_model(spec="fake:other"))
    root = make_folder(tmp_path / "data", {"alpha": [10], "echo": [200]}, TEMPLATES)
    options = {"datasets": [f"folder:{root}"], **change}
    db = tmp_path / "out" / "results.sqlite"
    with pytest.raises(UserError, match=fragment):
        run(db, **options)
    assert not (tmp_path / "out").exists()


def test_resolution_too_large_for_a_later_model_fails_before_the_first_runs(tmp_path, fake, colour_model, make_folder):
    first = colour_model(size=64)
    fake(first)
    root = make_folder(tmp_path / "data", {"alpha": [10], "echo": [200]}, TEMPLATES)
    with pytest.raises(UserError, match="lr0fm-tiny: Resolution 48 is not below the model's native 32"):
        run(tmp_path / "out" / "results.sqlite", models=["fake:colours", "lr0fm-tiny"], datasets=[f"folder:{root}"],
            resolutions="native,48,16")
    assert first.image_calls == 0 and not (tmp_path / "out").exists()


def test_missing_folder_root_explains_the_layout(tmp_path, fake, colour_model, make_folder):
    fake(colour_model())
    good = make_folder(tmp_path / "data", {"alpha": [10]}, TEMPLATES)
    with pytest.raises(UserError) as caught:
        run(tmp_path / "out" / "r.sqlite", datasets=[f"folder:{good}", f"folder:{tmp_path / 'no-such-folder'}"])
    message = str(caught.value)
    assert "does not exist" in message and "one sub-folder per class" in message and "classnames.txt" in message
    assert not (tmp_path / "out").exists()


def test_missing_weights_file_writes_nothing(tmp_path, tiny_openclip, make_folder):
    arch, _ = tiny_openclip
    root = make_folder(tmp_path / "data", {"alpha": [10]}, TEMPLATES)
    with pytest.raises(UserError, match="does not exist"):
        run(tmp_path / "out" / "r.sqlite", models=[f"openclip:{arch}"], datasets=[f"folder:{root}"],
            weights=str(tmp_path / "missing.safetensors"))
    assert not (tmp_path / "out").exists()


def test_db_that_is_a_directory(tmp_path, fake, colour_model, make_folder):
    fake(colour_model())
    root = make_folder(tmp_path / "data", {"alpha": [10]}, TEMPLATES)
    (tmp_path / "db").mkdir()
    with pytest.raises(UserError, match="is a directory"):
        run(tmp_path / "db", datasets=[f"folder:{root}"])


# --------------------------------------------------------------------------------------------------
# Images: unreadable ones are skipped and counted, odd but valid ones decode


def noise(size, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB").convert(mode)


def write_odd_images(folder: Path) -> tuple[set, set]:
    """Unreadable and odd-but-valid files in `folder`; returns (bad names, good names)."""
    folder.mkdir(parents=True)
    (folder / "zero-bytes.jpg").write_bytes(b"")
    (folder / "random-bytes.jpg").write_bytes(np.random.default_rng(0).bytes(5000))
    noise((96, 96)).save(folder / "truncated.jpg", quality=95)
    noise((96, 96)).save(folder / "truncated.png")
    for name in ("truncated.jpg", "truncated.png"):
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])

    Image.new("CMYK", (30, 20), (0, 128, 128, 0)).save(folder / "cmyk.jpg")
    rgba = noise((30, 20), "RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((30, 20)))
    rgba.save(folder / "rgba.png")
    Image.fromarray(np.arange(600, dtype=np.uint16).reshape(20, 30) * 100).save(folder / "grey16.png")
    noise((30, 20), "P").save(folder / "palette.png")
    noise((30, 20), "1").save(folder / "one-bit.png")
    noise((2000, 3)).save(folder / "wide.png")
    noise((3, 2)).save(folder / "smaller-than-every-resolution.png")
    bad = {"zero-bytes.jpg", "random-bytes.jpg", "truncated.jpg", "truncated.png"}
    good = {"cmyk.jpg", "rgba.png", "grey16.png", "palette.png", "one-bit.png", "wide.png",
            "smaller-than-every-resolution.png"}
    return bad, good


def test_unreadable_images_are_skipped_and_odd_ones_decode(tmp_path, fake, colour_model, make_folder):
    fake(colour_model())
    root = make_folder(tmp_path / "data", {"alpha": [10], "bravo": [40, 40]}, TEMPLATES)
    bad, good = write_odd_images(root / "charlie")
    modes = {name: Image.open(root / "charlie" / name).mode for name in good}
    assert modes["cmyk.jpg"] == "CMYK" and modes["rgba.png"] == "RGBA" and modes["palette.png"] == "P"
    assert modes["grey16.png"].startswith("I") and modes["one-bit.png"] == "1"
    db = tmp_path / "r.sqlite"
    rows, outcomes = run(db, datasets=[f"folder:{root}"], resolutions="native,16,8", batch_size=4)
    total = 3 + len(bad) + len(good)
    assert [(r["n"], r["n_skipped"]) for r in rows] == [(total - len(bad), len(bad))] * 3
    assert {Path(p).name for p in outcomes[0].skipped_images} == bad
    dataset = lr0fm.load_dataset(f"folder:{root}")
    with ResultStore(db) as store:
        for resolution in ("native", "16", "8"):
            _, _, ok = store.predictions(rows[0]["run_id"], resolution)
            skipped = {Path(dataset.describe(i)).name for i in np.flatnonzero(~ok)}
            assert skipped == bad
    from lr0fm.execute import EvalResult

    lines = EvalResult(rows=rows, outcomes=outcomes).unreadable_lines()
    assert len(lines) == 1 and "4 unreadable image(s)" in lines[0]


def test_an_image_over_the_pixel_limit_is_counted_not_warned(tmp_path, fake, colour_model, make_folder, capfd):
    """Pillow warns on images past its decompression-bomb limit; such an image is skipped, counted and named."""
    fake(colour_model())
    root = make_folder(tmp_path / "data", {"alpha": [10], "bravo": [200]}, TEMPLATES)
    side = int((Image.MAX_IMAGE_PIXELS * 1.2) ** 0.5)  # over the warning limit, under the error limit
    Image.new("1", (side, side)).save(root / "bravo" / "huge.png")
    rows, outcomes = run(tmp_path / "r.sqlite", datasets=[f"folder:{root}"], resolutions="native,8")
    assert [(r["n"], r["n_skipped"]) for r in rows] == [(2, 1)] * 2
    assert [Path(p).name for p in outcomes[0].skipped_images] == ["huge.png"]
    assert "DecompressionBomb" not in capfd.readouterr().err


def test_dangling_and_looping_links_are_counted_and_named(tmp_path, fake, colour_model, make_folder):
    """A link that names an image but points nowhere is an unreadable image, not a file that vanishes."""
    fake(colour_model())
    root = make_folder(tmp_path / "data", {"alpha": [10], "bravo": [200]}, TEMPLATES)
    (root / "alpha" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (root / "bravo" / "loop-a.jpg").symlink_to(root / "bravo" / "loop-b.jpg")
    (root / "bravo" / "loop-b.jpg").symlink_to(root / "bravo" / "loop-a.jpg")
    (root / "bravo" / "good-link.png").symlink_to(root / "bravo" / "000.png")  # a working link is an image
    rows, outcomes = run(tmp_path / "r.sqlite", datasets=[f"folder:{root}"], resolutions="native,8")
    assert [(r["n"], r["n_skipped"]) for r in rows] == [(3, 3)] * 2
    assert {Path(p).name for p in outcomes[0].skipped_images} == {"dangling.png", "loop-a.jpg", "loop-b.jpg"}


# --------------------------------------------------------------------------------------------------
# A real open_clip model (random init, saved to a file) end to end


@pytest.fixture(scope="module")
def noise_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("noise")
    for label, name in enumerate(("cat", "dog", "bird")):
        (root / name).mkdir()
        for i in range(4):
            noise((40, 30), seed=10 * label + i).save(root / name / f"{i}.png")
    return root


def direct_top5(arch, weights, root, resolutions):
    """What an evaluation should store, computed with open_clip directly: no lr0fm model or classifier code."""
    import open_clip
    from safetensors.torch import load_file

    from lr0fm.degrade import ViewMaker
    from lr0fm.models.base import OPENAI_MEAN, OPENAI_STD

    clip = open_clip.create_model(arch, pretrained=None).eval()
    clip.load_state_dict(load_file(str(weights)))
    dataset = lr0fm.load_dataset(f"folder:{root}")
    tokenizer = open_clip.get_tokenizer(arch)
    with torch.no_grad():
        classes = []
        for name in dataset.classnames:
            prompts = F.normalize(clip.encode_text(tokenizer([t.replace("{}", name) for t in dataset.templates])), dim=-1)
            classes.append(F.normalize(prompts.mean(0), dim=-1))
        classifier = torch.stack(classes, dim=1)
        maker = ViewMaker("canonical", 32, resolutions)
        views = torch.stack([maker(dataset.load_image(i)) for i in range(len(dataset))]).float() / 255
        mean, std = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
        out = {}
        for position, resolution in enumerate(resolutions):
            image = F.normalize(clip.encode_image((views[:, position] - mean) / std), dim=-1)
            order = (image @ classifier).argsort(dim=-1, descending=True)
            out[str(resolution)] = F.pad(order, (0, 5 - order.shape[1]), value=-1).numpy()
    return out, dataset.labels


def test_real_openclip_model_end_to_end(tmp_path, tiny_openclip, noise_folder):
    arch, weights = tiny_openclip
    db = tmp_path / "r.sqlite"
    table = lr0fm.evaluate(f"openclip:{arch}", f"folder:{noise_folder}", resolutions="native,16,8", db=db,
                           weights=str(weights), batch_size=5, workers=0, device="cpu")
    assert table["resolution"].tolist() == ["native", "16", "8"] and table["pixels"].tolist() == [32, 16, 8]
    assert table["n"].tolist() == [12] * 3 and table["n_skipped"].tolist() == [0] * 3
    assert all(0.0 <= v <= 1.0 for v in [*table["top1"], *table["top5"]])
    expected, labels = direct_top5(arch, weights, noise_folder, ["native", 16, 8])
    with ResultStore(db) as store:
        run_id = int(table["run_id"][0])
        provenance = store.run(run_id)["provenance"]
        for resolution, want in expected.items():
            got_labels, top5, ok = store.predictions(run_id, resolution)
            assert ok.all() and got_labels.tolist() == labels
            np.testing.assert_array_equal(top5, want)
            hits = (top5[:, 0] == np.asarray(labels)).mean()
            assert table.set_index("resolution").loc[resolution, "top1"] == pytest.approx(hits)
    assert provenance["weights_file"] == str(weights.resolve()) and provenance["family"] == "openclip"
    assert (tmp_path / "cache" / "classifiers").is_dir()


def test_views_split_for_a_device_give_the_same_predictions(tmp_path, tiny_openclip, noise_folder, monkeypatch):
    """The accelerator path of the executor (workers send native crops, the low resolutions are resampled
    on the batch) forced on the CPU: the same predictions as views made whole in the workers."""
    from lr0fm.degrade import ViewMaker

    arch, weights = tiny_openclip
    split = ViewMaker.split
    calls = []

    def on_device(self, on_device, upsample=True):
        calls.append(on_device)
        return split(self, True, upsample)

    tables = {}
    for name in ("workers", "device"):
        if name == "device":
            monkeypatch.setattr(ViewMaker, "split", on_device)
        tables[name] = lr0fm.evaluate(f"openclip:{arch}", f"folder:{noise_folder}", resolutions="native,16,8",
                                      db=tmp_path / f"{name}.sqlite", weights=str(weights), batch_size=5, workers=2,
                                      device="cpu")
    assert calls == [False]  # the CPU asked for whole views; the test forced the split
    for name in tables:
        with ResultStore(tmp_path / f"{name}.sqlite") as store:
            tables[name] = [store.predictions(int(tables[name]["run_id"][0]), r)[1] for r in ("native", "16", "8")]
    for got, want in zip(tables["device"], tables["workers"]):
        np.testing.assert_array_equal(got, want)


KILLED_RUN = textwrap.dedent("""
    import os, sys
    import open_clip
    open_clip.add_model_config(sys.argv[1])
    from lr0fm.models.openclip_backend import OpenClipModel
    from lr0fm.api import run_evaluation as run
    from lr0fm.plan import EvalConfig

    calls = 0
    encode = OpenClipModel.encode_image

    def dying(self, pixels):
        global calls
        calls += 1
        if calls > int(sys.argv[6]):
            os._exit(17)  # no cleanup at all, like a kill -9
        return encode(self, pixels)

    OpenClipModel.encode_image = dying
    run(EvalConfig(models=[sys.argv[2]], weights=sys.argv[3], datasets=[sys.argv[4]], db=sys.argv[5],
                   resolutions="native,16", batch_size=2, chunk_size=4, workers=0, device="cpu"))
""")


def test_real_model_resumes_after_a_hard_kill(tmp_path, tiny_openclip, noise_folder, monkeypatch):
    from lr0fm.models.openclip_backend import OpenClipModel

    arch, weights = tiny_openclip
    db = tmp_path / "killed.sqlite"
    spec, dataset = f"openclip:{arch}", f"folder:{noise_folder}"
    config = Path(weights).parent / f"{arch}.json"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(config), spec, str(weights), dataset, str(db), "9"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert killed.returncode == 17, killed.stderr[-2000:]
    run_id = only_run_id(db)
    with ResultStore(db) as store:
        assert store.results() == []
        done = store.completed_prefix(run_id, "native")
    # Died in the fifth batch of 2: at most 8 samples done, committed in whole chunks of 4.
    assert 0 < done <= 8 and done % 4 == 0

    seen = []
    encode = OpenClipModel.encode_image
    monkeypatch.setattr(OpenClipModel, "encode_image", lambda self, pixels: seen.append(len(pixels)) or encode(self, pixels))
    options = dict(resolutions="native,16", batch_size=2, chunk_size=4, workers=0, device="cpu", weights=str(weights))
    resumed = lr0fm.evaluate(spec, dataset, db=db, **options)
    assert sum(seen) == (12 - done) * 2
    assert chunk_coverage(db) == {"native": (12, 1), "16": (12, 1)}
    whole = lr0fm.evaluate(spec, dataset, db=tmp_path / "whole.sqlite", **options)
    columns = list(METRICS)
    assert resumed[columns].to_dict("records") == whole[columns].to_dict("records")
