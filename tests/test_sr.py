"""The super-resolution front end (`SPEC+sr=FILE`): random-init spandrel architectures saved to files as a
user's would be, read back, put in front of lr0fm-tiny, and evaluated.

Checked against independent computations: the network spandrel rebuilds computes what the saved module
computes; the r x r images it is given are the native crops brought down with torch's antialiased bicubic
(computed here from the dataset's own images, not through `degrade`); its output reaches the image tower
resized to native the same way; native views and their predictions are the plain model's, bit for bit.
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

spandrel = pytest.importorskip("spandrel")

from safetensors.torch import save_file  # noqa: E402
from spandrel.architectures.Compact import Compact  # noqa: E402
from spandrel.architectures.ESRGAN import ESRGAN  # noqa: E402
from spandrel.architectures.SwinIR import SwinIR  # noqa: E402

from lr0fm import cli, load_model  # noqa: E402
from lr0fm.api import run_evaluation  # noqa: E402
from lr0fm.data import load_dataset  # noqa: E402
from lr0fm.errors import UserError  # noqa: E402
from lr0fm.execute.local import predict_range  # noqa: E402
from lr0fm.models import parse_spec  # noqa: E402
from lr0fm.plan import EvalConfig  # noqa: E402
from lr0fm.resolution import parse_resolutions  # noqa: E402
from lr0fm.store import ResultStore  # noqa: E402
from lr0fm.superres import SRModel, read_sr  # noqa: E402

NATIVE = 32  # lr0fm-tiny


def networks() -> dict:
    """Small random-init networks of three spandrel architectures: name -> (module, file suffix, scale)."""
    torch.manual_seed(0)
    return {
        "Compact": (Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4), ".safetensors", 4),
        "ESRGAN": (ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2), ".pth", 2),
        "SwinIR": (SwinIR(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=2,
                          upsampler="pixelshuffle", mlp_ratio=2.0), ".safetensors", 2),
    }


def save(module: torch.nn.Module, path) -> str:
    """The state dict written as a user's weights file (.pth through torch.save, else safetensors)."""
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    if str(path).endswith(".pth"):
        torch.save(state, path)
    else:
        save_file(state, str(path))
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sr")
    found = {}
    for name, (module, suffix, scale) in networks().items():
        found[name] = (save(module.eval(), folder / f"{name}{suffix}"), module, scale)
    return found


@pytest.fixture(scope="module")
def x4(files):
    return files["Compact"][0]


def one_sentence(text: str) -> bool:
    text = text.strip().replace("e.g. ", "")
    return "\n" not in text and text.endswith(".") and ". " not in text


# --------------------------------------------------------------------------------------------------
# Reading the file

@pytest.mark.parametrize("name", ["Compact", "ESRGAN", "SwinIR"])
def test_architecture_and_scale_are_detected_and_the_weights_are_the_saved_ones(files, name):
    path, module, scale = files[name]
    network = read_sr(path)
    assert network.descriptor.architecture.id == name and network.scale == scale
    with open(path, "rb") as handle:
        assert network.sha256 == hashlib.sha256(handle.read()).hexdigest()
    pixels = torch.rand(2, 3, 16, 16)  # 16 px: no padding for SwinIR's minimum size
    with torch.inference_mode():
        assert torch.allclose(network.descriptor(pixels), module(pixels).clamp(0, 1), atol=1e-6)
    assert network.record()["scale"] == scale and network.record()["sha256"] == network.sha256


def test_the_spec_carries_the_file_and_composes_with_tokens():
    spec = parse_spec("lr0fm-tiny+sr=x4.pth+tokens=t.safetensors")
    assert (spec.sr, spec.tokens, str(spec)) == ("x4.pth", "t.safetensors", "lr0fm-tiny+tokens=t.safetensors+sr=x4.pth")
    assert parse_spec(str(spec)) == spec and str(spec.base) == "lr0fm-tiny" and not spec.pinned
    for text, fragment in (("lr0fm-tiny+sr=", "SPEC+sr=PATH"), ("+sr=a.pth", "SPEC+sr=PATH"),
                           ("lr0fm-tiny+sr=a.pth+sr=b.pth", "names sr twice")):
        with pytest.raises(UserError, match=fragment.replace("+", r"\+")) as caught:
            parse_spec(text)
        assert one_sentence(str(caught.value))


# --------------------------------------------------------------------------------------------------
# What the network sees and what the image tower gets

@pytest.fixture(scope="module")
def tiny_sr(x4):
    return load_model(f"lr0fm-tiny+sr={x4}")


def crops_of(dataset, count: int) -> torch.Tensor:
    """The native crops of the first images, made here with PIL (Fashion-MNIST is square: a bicubic resize)."""
    pictures = [np.asarray(dataset.read_image(i).convert("RGB").resize((NATIVE, NATIVE), Image.Resampling.BICUBIC))
                for i in range(count)]
    return torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).contiguous()


def test_the_network_sees_the_true_low_images_and_the_tower_gets_them_at_native_size(tiny_sr, tmp_path):
    dataset = load_dataset("fashion_mnist").limit(12)
    resolutions = parse_resolutions("native,16,8")
    seen_by_network, seen_by_tower = [], []
    hook = tiny_sr.net.module.register_forward_pre_hook(lambda module, args: seen_by_network.append(args[0].clone()))
    inner = tiny_sr.inner.encode_image
    tiny_sr.inner.encode_image = lambda pixels: seen_by_tower.append(pixels.clone()) or inner(pixels)
    try:
        classifier = torch.randn(256, 10)
        config = EvalConfig(protocol="canonical", batch_size=12, workers=0, db=tmp_path / "r.sqlite")
        list(predict_range(tiny_sr, dataset, classifier, resolutions, 0, 12, config, torch.device("cpu")))
    finally:
        hook.remove()
        del tiny_sr.inner.encode_image

    crops = crops_of(dataset, 12)
    expected = {side: F.interpolate(crops.float(), size=(side, side), mode="bicubic", antialias=True)
                .round().clamp(0, 255) for side in (16, 8)}
    # The network runs once per low resolution, on the r x r images in [0, 1]; never on a native view.
    assert [tuple(x.shape) for x in seen_by_network] == [(12, 3, 16, 16), (12, 3, 8, 8)]
    for images, side in zip(seen_by_network, (16, 8)):
        assert torch.equal(images, expected[side] / 255)
    # The tower gets the native crop untouched, then each network output brought to native size.
    native, *low = seen_by_tower
    assert torch.equal(native, crops.float() / 255)
    with torch.inference_mode():
        for pixels, side in zip(low, (16, 8)):
            sharp = tiny_sr.net.module(expected[side] / 255).clamp(0, 1)
            want = F.interpolate(sharp * 255, size=(NATIVE, NATIVE), mode="bicubic", antialias=True).round().clamp(0, 255)
            assert pixels.shape == (12, 3, NATIVE, NATIVE) and torch.allclose(pixels * 255, want, atol=1e-3)


def test_large_batches_go_through_the_network_in_chunks(tiny_sr, monkeypatch):
    pixels = torch.rand(6, 3, 8, 8)
    calls = []
    hook = tiny_sr.net.module.register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
    try:
        with torch.inference_mode():
            whole = tiny_sr.upscale(pixels)
            monkeypatch.setattr(SRModel, "max_pixels", 2 * (8 * 4) ** 2)  # two images per forward
            chunked = tiny_sr.upscale(pixels)
    finally:
        hook.remove()
    assert calls == [6, 2, 2, 2] and torch.allclose(whole, chunked, atol=1.5 / 255)


# --------------------------------------------------------------------------------------------------
# Evaluation: runs, identity, resume

def evaluate(db, model, **options):
    config = dict(models=[model], limit=64, resolutions="native,16,8", workers=0, device="cpu", db=db)
    return run_evaluation(EvalConfig(**{**config, **options}))


def runs_of(db) -> dict:
    with ResultStore(db) as store:
        ids = {row["model_spec"]: row["run_id"] for row in store.results()}
        return {spec: (store.run(run_id), {r: store.predictions(run_id, r) for r in ("native", "16", "8")})
                for spec, run_id in ids.items()}


@pytest.mark.slow
def test_a_sr_run_is_its_own_run_beside_the_plain_one_with_the_same_native_predictions(x4, tmp_path):
    db = tmp_path / "results.sqlite"
    plain = evaluate(db, "lr0fm-tiny")
    sr = evaluate(db, f"lr0fm-tiny+sr={x4}")
    assert plain.computed == 3 and sr.computed == 3
    runs = runs_of(db)
    record, predictions = runs[f"lr0fm-tiny+sr={x4}"]
    plain_record, plain_predictions = runs["lr0fm-tiny"]
    assert record["model_fingerprint"] != plain_record["model_fingerprint"]
    with open(x4, "rb") as handle:
        assert record["provenance"]["super_resolution"]["sha256"] == hashlib.sha256(handle.read()).hexdigest()
    assert "super_resolution" not in plain_record["provenance"]
    for got, want in zip(predictions["native"], plain_predictions["native"]):
        assert np.array_equal(got, want)  # native views never go through the network
    assert not np.array_equal(predictions["8"][1], plain_predictions["8"][1])  # the low ones do
    # Both sit in the same tables as their own model rows.
    outcome = cli_invoke(["show", "--db", str(db)])
    assert outcome.exit_code == 0 and "lr0fm-tiny+sr=" in outcome.stdout and "lr0fm-tiny " in outcome.stdout


def cli_invoke(args):
    from typer.testing import CliRunner

    return CliRunner().invoke(cli.app, args)


@pytest.mark.slow
def test_eval_through_the_cli_resumes_and_another_file_at_the_same_path_is_another_run(files, tmp_path):
    path = tmp_path / "user.safetensors"
    save(files["Compact"][1], path)
    db = tmp_path / "results.sqlite"
    args = ["eval", "--model", f"lr0fm-tiny+sr={path}", "--limit", "64", "-r", "native,16,8", "--workers", "0",
            "--device", "cpu", "--db", str(db)]
    first = cli_invoke(args)
    assert first.exit_code == 0, first.output
    assert "+sr=" in first.stdout and "3 cell(s) computed" in first.stderr
    assert "3 reused" in cli_invoke(args).stderr
    torch.manual_seed(7)  # other weights, same file name: never the stored results
    save(Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4), path)
    again = cli_invoke(args)
    assert again.exit_code == 0 and "3 cell(s) computed" in again.stderr
    with ResultStore(db) as store:
        fingerprints = {row["model_fingerprint"] for row in store.results()}
    assert len(fingerprints) == 2


@pytest.mark.slow
def test_tokens_and_sr_compose(x4, tmp_path):
    from lr0fm.tokens.files import save_tokens
    from lr0fm.tokens.wrapper import wrap

    tokens = tmp_path / "tiny.tokens.safetensors"
    save_tokens(wrap(load_model("lr0fm-tiny")), tokens)
    for text in (f"lr0fm-tiny+tokens={tokens}+sr={x4}", f"lr0fm-tiny+sr={x4}+tokens={tokens}"):
        model = load_model(text)
        assert isinstance(model, SRModel) and model.inner.spec == f"lr0fm-tiny+tokens={tokens}"
        assert model.spec == f"lr0fm-tiny+tokens={tokens}+sr={x4}"
    db = tmp_path / "results.sqlite"
    result = evaluate(db, f"lr0fm-tiny+sr={x4}+tokens={tokens}", limit=16)
    assert result.computed == 3
    assert {row["model_spec"] for row in result.rows} == {f"lr0fm-tiny+tokens={tokens}+sr={x4}"}
    assert evaluate(db, f"lr0fm-tiny+tokens={tokens}+sr={x4}", limit=16).reused == 3


# --------------------------------------------------------------------------------------------------
# What a user can get wrong

def run_main(monkeypatch, capsys, *args) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["lr0fm", *args])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    return stopped.value.code, capsys.readouterr().err.strip().removeprefix("error:").strip()


def bad_files(folder, files) -> dict:
    """fragment of the sentence -> a file that should get it."""
    text = folder / "notes.pth"
    text.write_text("not a network\n")
    other = folder / "tensors.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(other))
    scale1 = save(Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=1), folder / "x1.safetensors")
    grey = save(Compact(num_in_ch=1, num_out_ch=1, num_feat=8, num_conv=2, upscale=2), folder / "grey.safetensors")
    return {"not a network spandrel can read": text, "is not a network spandrel can read": other,
            "scale 1x, which does not up-sample": scale1, "pass an RGB super-resolution model": grey,
            "does not exist": folder / "missing.pth", "is not a .pth": folder / "weights.bin"}


def test_user_errors_are_one_sentence_and_exit_2(files, tmp_path, monkeypatch, capsys):
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16)
    for fragment, path in bad_files(tmp_path, files).items():
        with pytest.raises(UserError) as caught:
            load_model(f"lr0fm-tiny+sr={path}")
        assert fragment in str(caught.value) and one_sentence(str(caught.value)), str(caught.value)
    code, message = run_main(monkeypatch, capsys, "eval", "--model", f"lr0fm-tiny+sr={tmp_path / 'x1.safetensors'}",
                             "--limit", "4", "--db", str(tmp_path / "r.sqlite"))
    assert code == 2 and "does not up-sample" in message and one_sentence(message)
    code, message = run_main(monkeypatch, capsys, "eval", "--model", f"lr0fm-tiny+sr={files['Compact'][0]}",
                             "--protocol", "paper", "--limit", "4", "--db", str(tmp_path / "r.sqlite"))
    assert code == 2 and "--protocol canonical" in message and one_sentence(message)
    assert not (tmp_path / "r.sqlite").exists()  # refused before anything was written


def test_without_spandrel_one_sentence_says_how_to_install_it(x4, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "spandrel", None)  # import spandrel now raises ImportError
    code, message = run_main(monkeypatch, capsys, "eval", "--model", f"lr0fm-tiny+sr={x4}", "--limit", "4",
                             "--db", str(tmp_path / "r.sqlite"))
    assert code == 2 and "pip install 'lr0fm[sr]'" in message and one_sentence(message)


@pytest.mark.slow
def test_an_inpainting_model_is_not_a_super_resolution_model(tmp_path):
    from spandrel.architectures.LaMa import LaMa

    path = save(LaMa(in_nc=4, out_nc=3), tmp_path / "lama.safetensors")  # 51M parameters
    with pytest.raises(UserError, match="LaMa Inpainting model, not an image-to-image network") as caught:
        read_sr(path)
    assert one_sentence(str(caught.value))


@pytest.mark.slow
def test_the_ray_executor_gives_the_in_process_predictions(x4, tmp_path):
    pytest.importorskip("ray")
    import os
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "disabled"}
    local, ray = tmp_path / "local.sqlite", tmp_path / "ray.sqlite"
    evaluate(local, f"lr0fm-tiny+sr={x4}")
    done = subprocess.run([sys.executable, "-c", "from lr0fm.cli import main; main()", "eval", "--model",
                           f"lr0fm-tiny+sr={x4}", "--limit", "64", "-r", "native,16,8", "--workers", "0",
                           "--executor", "ray", "--model-workers", "1", "--db", str(ray)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    (spec, (_, want)), = runs_of(local).items()
    (_, (record, got)), = runs_of(ray).items()
    assert record["model_spec"] == spec and record["provenance"]["super_resolution"]["architecture"] == "Compact"
    for resolution in want:
        for a, b in zip(got[resolution], want[resolution]):
            assert np.array_equal(a, b)


def test_views_without_the_up_step_are_canonical_only():
    from lr0fm.degrade import ViewMaker

    worker, finish = ViewMaker("canonical", NATIVE, ["native", 16, 8]).split(on_device=False, upsample=False)
    assert worker.resolutions == parse_resolutions("native") and not finish.upsample  # workers send the crop only
    crops = torch.randint(0, 256, (2, 1, 3, NATIVE, NATIVE), dtype=torch.uint8)
    assert [tuple(x.shape) for x in finish(crops)] == [(2, 3, 32, 32), (2, 3, 16, 16), (2, 3, 8, 8)]
    with pytest.raises(ValueError, match="canonical protocol only"):
        ViewMaker("paper", NATIVE, ["native", 16]).split(on_device=False, upsample=False)
