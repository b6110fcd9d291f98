"""lr0fm synth: a tiny randomly initialised PixArt-α pipeline built here, run on a few of the paper's captions."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("diffusers", reason="lr0fm synth needs diffusers (pip install 'lr0fm[synth]')")

from lr0fm import cli
from lr0fm.errors import UserError
from lr0fm.synth import generate, pool
from lr0fm.synth import read_captions, read_manifest, synthesize

invoke = CliRunner().invoke


def _captions_dir() -> Path | None:
    """The paper's caption lists: $LR0FM_CAPTIONS, else shared/reference/captions next to the repo."""
    override = os.environ.get("LR0FM_CAPTIONS")
    candidates = [Path(override)] if override else []
    candidates += [parent / "shared" / "reference" / "captions" for parent in Path(__file__).resolve().parents]
    return next((c for c in candidates if (c / "caption_2k.txt").is_file()), None)


CAPTIONS_DIR = _captions_dir()
needs_captions = pytest.mark.skipif(
    CAPTIONS_DIR is None, reason="paper captions not found: set LR0FM_CAPTIONS to the folder with caption_2k.txt")
PIXELS = 32  # latent 8 × VAE factor 4


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    """A real PixArt-α pipeline (transformer, VAE, T5 encoder, T5 tokenizer, scheduler), tiny and random."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    torch.manual_seed(0)
    transformer = PixArtTransformer2DModel(
        sample_size=8, num_layers=1, patch_size=2, attention_head_dim=8, num_attention_heads=2, caption_channels=16,
        in_channels=4, out_channels=8, cross_attention_dim=16, attention_bias=True, activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000, norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6)
    vae = AutoencoderKL(block_out_channels=(8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 3,
                        up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4, norm_num_groups=4, layers_per_block=1)
    text_encoder = T5EncoderModel(T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
                                           relative_attention_num_buckets=8))
    # A Unigram vocabulary: a few words plus single letters, so any caption tokenizes without network files.
    words = "the a of in on at with and is by for to dog cat sun sea tree city house car people man woman".split()
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("\u2581" + w, -2.0) for w in words]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
    pipeline = PixArtAlphaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                                   scheduler=DPMSolverMultistepScheduler())
    folder = tmp_path_factory.mktemp("tiny-pixart")
    pipeline.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def captions_file() -> Path:
    if CAPTIONS_DIR is None:
        pytest.skip("paper captions not found: set LR0FM_CAPTIONS to the folder with caption_2k.txt")
    return CAPTIONS_DIR / "caption_2k.txt"


def make(captions, out, per_caption=2, **options):
    options = {"steps": 2, "limit_captions": 3, "batch_size": 4, "device": "cpu", **options}
    return synthesize(captions, out, per_caption, **options)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def first_pool(tiny_model, captions_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("pool")
    result = make(captions_file, out, model=tiny_model)
    return out, result


def test_pool_files_and_manifest(first_pool, captions_file):
    out, result = first_pool
    assert (result.captions, result.planned, result.written, result.reused) == (3, 6, 6, 0)
    texts = [line.strip() for line in captions_file.read_text().splitlines()[:3]]
    entries = read_manifest(out)
    assert [(e["group"], e["index"]) for e in entries] == [(g, k) for g in range(3) for k in range(2)]
    for entry in entries:
        assert set(entry) == {"file", "group", "index", "caption", "seed"}
        assert entry["file"] == f"{entry['group']:05d}/{entry['index']:03d}.png"
        assert entry["caption"] == texts[entry["group"]] and not entry["caption"].startswith(" ")
        assert entry["seed"] == pool.image_seed(0, entry["group"], entry["index"])
        assert Image.open(out / entry["file"]).size == (PIXELS, PIXELS)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == [e["file"] for e in entries]
    settings = json.loads((out / "synth.json").read_text())
    assert settings["steps"] == 2 and settings["dtype"] == "float32" and settings["device"] == "cpu"


def test_seeds_fix_each_image(first_pool, tiny_model, captions_file, tmp_path):
    out, _ = first_pool
    # Another folder, another batch size and a subset: the same (caption, index) gives the same image.
    make(captions_file, tmp_path, per_caption=2, model=tiny_model, limit_captions=2, batch_size=1)
    for file in ("00000/000.png", "00001/001.png"):
        assert np.array_equal(pixels(out / file), pixels(tmp_path / file))
    assert not np.array_equal(pixels(out / "00000/000.png"), pixels(out / "00000/001.png"))
    assert len({pool.image_seed(0, g, k) for g in range(50) for k in range(50)}) == 2500
    assert pool.image_seed(1, 0, 0) != pool.image_seed(0, 0, 0)


def test_resume_writes_only_missing_images(tiny_model, captions_file, tmp_path):
    make(captions_file, tmp_path, model=tiny_model)
    original = (tmp_path / "00001/001.png").read_bytes()
    (tmp_path / "00001/001.png").unlink()
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines(keepends=True)
    kept = [line for line in lines if '"00001/001.png"' not in line]
    # Also what a kill leaves: a half-written temp image and a cut-off manifest line.
    (tmp_path / "00001" / ".partial-abc.png").write_bytes(b"\x89PNG half")
    (tmp_path / "manifest.jsonl").write_text("".join(kept) + '{"file": "00002/0')
    result = make(captions_file, tmp_path, model=tiny_model)
    assert (result.written, result.reused) == (1, 5)
    assert (tmp_path / "00001/001.png").read_bytes() == original
    entries = read_manifest(tmp_path)
    assert len(entries) == 6 and len({e["file"] for e in entries}) == 6
    assert not list(tmp_path.rglob(".partial-*"))
    again = make(captions_file, tmp_path, model=tiny_model)
    assert (again.written, again.reused) == (0, 6) and len(read_manifest(tmp_path)) == 6


def test_interrupted_run_resumes_without_duplicates(tiny_model, captions_file, tmp_path, monkeypatch):
    real = generate._generate
    calls = []

    def dies_on_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(generate, "_generate", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        make(captions_file, tmp_path, model=tiny_model, batch_size=2)
    assert len(read_manifest(tmp_path)) == 2 and len(list(tmp_path.rglob("*.png"))) == 2
    assert not list(tmp_path.rglob(".partial-*"))
    monkeypatch.setattr(generate, "_generate", real)
    # An image saved just before a kill, before its manifest line was written, is picked up, not redone.
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "manifest.jsonl").write_text(lines[0])
    result = make(captions_file, tmp_path, model=tiny_model, batch_size=2)
    assert (result.written, result.reused) == (4, 2)
    entries = read_manifest(tmp_path)
    assert [e["file"] for e in entries] == [pool.image_file(g, k) for g in range(3) for k in range(2)]


def test_store_size_and_settings_guard(tiny_model, captions_file, tmp_path):
    make(captions_file, tmp_path, per_caption=1, model=tiny_model, store_size=16)
    for entry in read_manifest(tmp_path):
        assert Image.open(tmp_path / entry["file"]).size == (16, 16)
    with pytest.raises(UserError, match="store_size 16 -> None"):
        make(captions_file, tmp_path, per_caption=1, model=tiny_model)
    other = tmp_path / "other.txt"
    other.write_text("a dog on the sea\na cat\na house\n")
    with pytest.raises(UserError, match="another caption for id 0"):
        make(other, tmp_path, per_caption=1, model=tiny_model, store_size=16)


def test_offline_uncached_model_fails_fast(captions_file, tmp_path):
    started = time.monotonic()
    with pytest.raises(UserError) as raised:
        make(captions_file, tmp_path, model="lr0fm-test/not-a-cached-pixart")
    assert time.monotonic() - started < 20
    message = str(raised.value)
    assert "not in the local cache" in message and "--model DIR" in message and "\n" not in message


def test_captions_file_handling(tmp_path, caplog):
    first = tmp_path / "a.txt"
    first.write_text("  a dog on a beach \n\n a cat\n  a dog on a beach\n", encoding="utf-8")
    second = tmp_path / "b.txt"
    second.write_text(" a café in paris", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="lr0fm.synth"):
        captions = read_captions([first, second])
    assert captions == ["a dog on a beach", "a cat", "a dog on a beach", "a café in paris"]
    assert "appear more than once" in caplog.text
    with pytest.raises(UserError, match="does not exist"):
        read_captions(tmp_path / "missing.txt")
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(UserError, match="No captions"):
        read_captions(tmp_path / "blank.txt")


@needs_captions
def test_paper_caption_lists():
    assert len(read_captions(CAPTIONS_DIR / "caption_2k.txt")) == 2000  # its last line is blank
    assert len(read_captions([CAPTIONS_DIR / "caption_2k.txt", CAPTIONS_DIR / "caption_5k.txt"])) == 7000


def test_cli_synth(tiny_model, captions_file, tmp_path, monkeypatch, capsys):
    shown = invoke(cli.app, ["synth", "--help"])
    assert shown.exit_code == 0 and "Example" in shown.stdout
    ran = invoke(cli.app, ["synth", "--captions", str(captions_file), "--per-caption", "1", "--limit-captions", "2",
                           "--model", tiny_model, "--steps", "2", "--device", "cpu", "--out", str(tmp_path / "pool")])
    assert ran.exit_code == 0, ran.output
    assert [e["group"] for e in read_manifest(tmp_path / "pool")] == [0, 1]
    monkeypatch.setattr("sys.argv", ["lr0fm", "synth", "--captions", str(tmp_path / "none.txt"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2 and "does not exist" in capsys.readouterr().err
