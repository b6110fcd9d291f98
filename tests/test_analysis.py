"""Layer-wise native vs low-resolution feature similarity (`lr0fm analyze layers`) on a tiny open_clip ViT."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lr0fm import analysis, cli
from lr0fm.errors import UserError
from lr0fm import load_model

invoke = CliRunner().invoke


@pytest.fixture(scope="module")
def tiny(tiny_openclip):
    arch, weights = tiny_openclip
    return f"openclip:{arch}", str(weights)


@pytest.fixture
def noise_folder(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "noise" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(tmp_path / "noise" / name / f"{i}.png")
    return tmp_path / "noise"


def test_identical_views_give_similarity_one(tiny, make_folder, tmp_path):
    """A solid image looks the same at every resolution, so every layer's features agree exactly."""
    spec, weights = tiny
    root = make_folder(tmp_path / "solid", {"dark": [20, 60], "light": [180, 230]})
    result = analysis.layer_similarity(spec, f"folder:{root}", "16,8", weights=weights, device="cpu", batch_size=3)
    assert list(result.table["layer"]) == ["patch embedding", "block 1", "block 2"]  # 2 blocks in the fixture
    assert result.resolutions == [16, 8] and result.n_images == 4 and result.native == 32
    values = result.table[["16", "8"]].to_numpy()
    assert np.allclose(values, 1.0, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "token"])
def test_detail_lost_at_low_resolution_lowers_similarity(tiny, noise_folder, pooling):
    spec, weights = tiny
    result = analysis.layer_similarity(spec, f"folder:{noise_folder}", None, weights=weights, device="cpu",
                                       pooling=pooling, limit=5)
    assert result.n_images == 5 and result.resolutions == [24, 16, 12, 8]  # the small model's default sweep
    assert len(result.table) == 3
    values = result.table[["24", "16", "12", "8"]].to_numpy()
    assert np.isfinite(values).all() and (values < 1 - 1e-4).all() and (values > -1).all()


def test_patch_embedding_matches_a_direct_computation(tiny, noise_folder):
    """The hooked patch-embedding similarity equals conv1 applied to the views by hand."""
    import torch
    import torch.nn.functional as F

    from lr0fm.data import load_dataset
    from lr0fm.degrade import ViewMaker

    spec, weights = tiny
    result = analysis.layer_similarity(spec, f"folder:{noise_folder}", "8", weights=weights, device="cpu", limit=2)
    model = load_model(spec, weights)
    data = load_dataset(f"folder:{noise_folder}").limit(2)
    maker = ViewMaker("canonical", 32, ["native", 8])
    similarities = []
    with torch.no_grad():
        for index in range(2):
            views = maker(data.load_image(index)).float() / 255
            tokens = model.module.visual.conv1(model.normalize(views)).flatten(2).mean(-1)
            similarities.append(F.cosine_similarity(tokens[0], tokens[1], dim=0).item())
    assert result.table.loc[0, "8"] == pytest.approx(np.mean(similarities), abs=1e-5)


def test_unsupported_models_are_refused(colour_model, make_folder, tmp_path):
    root = make_folder(tmp_path / "solid", {"dark": [20]})
    with pytest.raises(UserError, match="supports lr0fm-tiny and openclip: ViT models"):
        analysis.layer_similarity("fake:colours", f"folder:{root}", "8", loaded=colour_model())
    with pytest.raises(UserError, match="hf:openai/clip-vit-base-patch32 is a transformers model"):
        analysis.layer_similarity("hf:openai/clip-vit-base-patch32", f"folder:{root}", "8")


def test_bad_options(tiny, make_folder, tmp_path):
    spec, weights = tiny
    root = make_folder(tmp_path / "solid", {"dark": [20]})
    with pytest.raises(UserError, match="pooling"):
        analysis.layer_similarity(spec, f"folder:{root}", "8", weights=weights, pooling="max")
    with pytest.raises(UserError, match="not below the model's native 32 px"):
        analysis.layer_similarity(spec, f"folder:{root}", "64", weights=weights, device="cpu")


def test_cli_prints_table_and_writes_plot_and_csv(tiny, noise_folder, tmp_path):
    spec, weights = tiny
    plot, out = tmp_path / "figs" / "layers.png", tmp_path / "layers.csv"
    shown = invoke(cli.app, ["analyze", "layers", "--model", spec, "--weights", weights, "--dataset",
                             f"folder:{noise_folder}", "-r", "16,8", "--limit", "4", "--device", "cpu",
                             "--plot", str(plot), "--out", str(out)])
    assert shown.exit_code == 0, shown.output
    for text in ("patch embedding", "block 1", "block 2", "16 px", "8 px"):
        assert text in shown.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.read_text().splitlines()[0] == "layer,depth,16,8"
