"""Layer-wise native vs low-resolution feature similarity (`lr0fm analyze layers`) on every tower family:
a tiny open_clip ViT, timm ViT and EVA trunks (the latter inside open_clip's TimmModel), and transformers
CLIP, SigLIP and BLIP vision models, each a small random-init real architecture."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from lr0fm import analysis, cli
from lr0fm.data import load_dataset
from lr0fm.degrade import ViewMaker
from lr0fm.errors import UserError
from lr0fm import load_model
from lr0fm.tokens.backbones import add_to_patch_embedding, block_patch_tokens, locate, patch_tokens
from test_models import hf_clip, hf_siglip  # noqa: F401  (fixtures: saved transformers CLIP / SigLIP folders)
from test_registry import tiny_blip  # noqa: F401  (fixture: a saved BLIP retrieval folder)
from test_tokens import TowerModel

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
    from open_clip.modified_resnet import ModifiedResNet

    root = make_folder(tmp_path / "solid", {"dark": [20]})
    with pytest.raises(UserError, match="Layer analysis: 'fake:colours' exposes no ViT image tower"):
        analysis.layer_similarity("fake:colours", f"folder:{root}", "8", loaded=colour_model())
    resnet = TowerModel(ModifiedResNet((1, 1, 1, 1), 16, heads=2, image_size=32, width=8), lambda v, x: v(x), spec="test:rn")
    with pytest.raises(UserError, match="test:rn has a ModifiedResNet image tower, not a ViT with patch tokens"):
        analysis.layer_similarity("test:rn", f"folder:{root}", "8", loaded=resnet, device="cpu")


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


# --------------------------------------------------------------------------------------------------
# Every tower family. Each entry builds the model and, independently of the hooks, computes the patch tokens
# after the patch embedding and after every block through the library's own intermediate outputs
# (open_clip/timm forward_intermediates, transformers output_hidden_states).


def _open_clip_vit(request):
    arch, weights = request.getfixturevalue("tiny_openclip")
    model = load_model(f"openclip:{arch}", str(weights))

    def layers(x):
        visual = model.module.visual
        blocks = visual.forward_intermediates(x, intermediates_only=True, output_fmt="NLC")["image_intermediates"]
        return [visual.conv1(x).flatten(2).transpose(1, 2), *blocks]
    return model, layers


def _timm_vit(request):
    """Two register tokens after the class token; dynamic_img_size makes the patch embedding NHWC."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, reg_tokens=2,
                            dynamic_img_size=True, num_classes=16)
    model = TowerModel(vit, lambda v, x: v(x), spec="test:timm-vit")

    def layers(x):
        embedded = vit.patch_embed(x)
        return [embedded.reshape(len(x), -1, embedded.shape[-1]),
                *vit.forward_intermediates(x, intermediates_only=True, output_fmt="NLC")]
    return model, layers


def _open_clip_eva(request):
    """open_clip's TimmModel around timm's EVA-02 (rotary embeddings, flattened patches), as openclip:EVA02-*
    builds it, made tiny: TimmModel passes no size arguments on, so they go in through timm.create_model."""
    import timm
    from open_clip.timm_model import TimmModel

    create = timm.create_model
    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timm, "create_model", lambda name, **kwargs: create(
            name, img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, **kwargs))
        tower = TimmModel("eva02_tiny_patch14_224", 16, image_size=32)
    model = TowerModel(tower, lambda v, x: v(x), spec="test:openclip-eva")

    def layers(x):
        return [tower.trunk.patch_embed(x),
                *tower.trunk.forward_intermediates(x, intermediates_only=True, output_fmt="NLC")]
    return model, layers


@pytest.fixture(scope="module")
def blip_folder(tiny_blip, tmp_path_factory):  # noqa: F811
    """tiny_blip's folder with the vision tower drawn at std 0.02: BLIP's default vision init (std 1e-10) keeps
    the features at rounding-noise level, where even identical inputs give cosines far from 1."""
    import copy
    import shutil

    from transformers import BlipForImageTextRetrieval

    model, tokenizer, source = tiny_blip
    folder = tmp_path_factory.mktemp("blip_scaled")
    shutil.copytree(source, folder, dirs_exist_ok=True)  # tokenizer and image processor
    config = copy.deepcopy(model.config)
    config.vision_config.initializer_range = 0.02
    torch.manual_seed(0)
    BlipForImageTextRetrieval(config).eval().save_pretrained(folder)
    return folder


def saved_folder(request, fixture):
    """The folder of a saved transformers model fixture (hf_clip and hf_siglip return (model, tokenizer, folder))."""
    value = request.getfixturevalue(fixture)
    return value[-1] if isinstance(value, tuple) else value


def _transformers(fixture, prefix):
    def build(request):
        model = load_model(f"hf:{saved_folder(request, fixture)}")

        def layers(x):
            visual = model.visual
            hidden = visual(pixel_values=x, output_hidden_states=True).hidden_states[1:]  # [0]: the embeddings
            return [visual.embeddings.patch_embedding(x).flatten(2).transpose(1, 2), *(h[:, prefix:] for h in hidden)]
        return model, layers
    return build


FAMILIES = {  # name -> (builder, blocks in the tiny config)
    "open_clip ViT": (_open_clip_vit, 2),
    "timm ViT + registers": (_timm_vit, 2),
    "open_clip TimmModel EVA-02": (_open_clip_eva, 2),
    "transformers CLIP": (_transformers("hf_clip", prefix=1), 2),
    "transformers SigLIP": (_transformers("hf_siglip", prefix=0), 2),
    "transformers BLIP": (_transformers("blip_folder", prefix=1), 1),
}


@pytest.fixture(params=list(FAMILIES))
def family(request):
    build, depth = FAMILIES[request.param]
    model, layers = build(request)
    return model, layers, depth


def direct_similarities(model, layers, folder, resolutions, limit):
    """(layers, resolutions) mean-pooled cosine of native vs each low view, averaged over images, by hand."""
    data = load_dataset(f"folder:{folder}").limit(limit)
    maker = ViewMaker("canonical", model.image_size, ["native", *resolutions], model.family)
    per_image = []
    with torch.no_grad():
        for index in range(len(data)):
            views = maker(data.load_image(index)).float() / 255
            pooled = [tokens.float().mean(1) for tokens in layers(model.normalize(views))]  # (views, D) per layer
            per_image.append([[F.cosine_similarity(p[0], p[j], dim=0).item() for j in range(1, len(views))]
                              for p in pooled])
    return np.mean(per_image, axis=0)


def test_every_family_matches_its_own_intermediate_outputs(family, noise_folder):
    model, layers, depth = family
    result = analysis.layer_similarity(model.spec, f"folder:{noise_folder}", "16,8", loaded=model, device="cpu",
                                       limit=4, batch_size=3)
    assert list(result.table["layer"]) == ["patch embedding", *(f"block {i}" for i in range(1, depth + 1))]
    assert list(result.table["depth"]) == list(range(depth + 1)) and result.n_images == 4
    values = result.table[["16", "8"]].to_numpy()
    assert ((values >= -1) & (values <= 1)).all() and (values < 1 - 1e-4).all()  # noise loses detail
    expected = direct_similarities(model, layers, noise_folder, [16, 8], limit=4)
    assert values == pytest.approx(expected, abs=1e-5)


def test_every_family_sees_identical_views_as_identical(family, make_folder, tmp_path):
    """A solid image is the same at every resolution: every patch of every layer agrees with native."""
    model, _, depth = family
    root = make_folder(tmp_path / "solid", {"dark": [20, 60], "light": [180, 230]})
    result = analysis.layer_similarity(model.spec, f"folder:{root}", "16,8", loaded=model, device="cpu",
                                       pooling="token")
    assert len(result.table) == depth + 1
    assert np.allclose(result.table[["16", "8"]].to_numpy(), 1.0, atol=1e-5)


@pytest.mark.parametrize("fixture", ["hf_clip", "hf_siglip", "blip_folder"])
def test_cli_on_saved_transformers_folders(fixture, request, noise_folder, tmp_path):
    folder = saved_folder(request, fixture)
    out = tmp_path / "layers.csv"
    shown = invoke(cli.app, ["analyze", "layers", "--model", f"hf:{folder}", "--dataset", f"folder:{noise_folder}",
                             "-r", "16,8", "--limit", "3", "--device", "cpu", "--out", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "patch embedding" in shown.stdout and "block 1" in shown.stdout
    written = pd.read_csv(out)
    same = analysis.layer_similarity(f"hf:{folder}", f"folder:{noise_folder}", "16,8", limit=3, device="cpu")
    assert list(written.columns) == ["layer", "depth", "16", "8"]
    assert written[["16", "8"]].to_numpy() == pytest.approx(same.table[["16", "8"]].to_numpy(), abs=1e-6)


def test_readers_invert_the_token_writer_and_unwrap_block_outputs(family):
    """patch_tokens reads back exactly what add_to_patch_embedding (the LR-TK0 wrapper's writer) wrote, in each
    patch layout; block_patch_tokens drops the prefix tokens, unpacks tuples and undoes sequence-first."""
    model, _, _ = family
    anatomy = locate(model.visual)
    x = model.normalize(torch.rand(2, 3, model.image_size, model.image_size))
    with torch.no_grad():
        output = anatomy.patch_embed(x)
    tokens = torch.randn(2, anatomy.num_patches, anatomy.width)
    assert torch.allclose(patch_tokens(add_to_patch_embedding(torch.zeros_like(output), tokens, anatomy), anatomy), tokens)
    hidden = torch.randn(2, anatomy.num_prefix + anatomy.num_patches, anatomy.width)
    assert torch.equal(block_patch_tokens(hidden, anatomy), hidden[:, anatomy.num_prefix:])
    sequence_first = dataclasses.replace(anatomy, sequence_first=True)
    assert torch.equal(block_patch_tokens((hidden.transpose(0, 1), None), sequence_first), hidden[:, anatomy.num_prefix:])
