"""LR-TK0 tokens: the wrapper on every backbone kind, the views, the pools, training, resume, files, eval."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from lr0fm import cli
from lr0fm.degrade import ViewMaker
from lr0fm.errors import UserError
from lr0fm import load_model
from lr0fm.api import check_model as check_spec
from lr0fm.models.base import ImageConfig, ZeroShotModel
from lr0fm.tokens import matched_prompts, read_tokens, wrap
from lr0fm.tokens.backbones import add_to_patch_embedding, locate
from lr0fm.tokens.pool import BatchPlan, load_pool
from lr0fm.tokens.views import default_buckets, make_views, parse_buckets

invoke = CliRunner().invoke


class TowerModel(ZeroShotModel):
    """A bare image tower as a ZeroShotModel, for backbones without a loader of their own here."""

    def __init__(self, visual, encode, size=32, spec="test:tower"):
        # Frozen as load_model leaves every model: nn.MultiheadAttention takes another (equally valid, not
        # bitwise equal) path when its weights require grad, so the reference must be frozen too.
        self.spec, self.family, self.visual, self._encode = spec, "openclip", visual.eval().requires_grad_(False), encode
        self.module = visual
        self.image = ImageConfig(size, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))

    def encode_image(self, pixels):
        return self._encode(self.visual, self.normalize(pixels))

    def encode_text(self, texts):
        raise NotImplementedError


def _hf_clip():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                           num_attention_heads=2, image_size=32, patch_size=8, projection_dim=16))
    tower = TowerModel(model.vision_model, lambda v, x: model.visual_projection(v(pixel_values=x).pooler_output), spec="test:hf-clip")
    tower.module = model.eval().requires_grad_(False)
    return tower


def _hf_siglip():
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    model = SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                 num_attention_heads=2, image_size=32, patch_size=8))
    return TowerModel(model, lambda v, x: v(pixel_values=x).pooler_output, spec="test:hf-siglip")


def _timm_vit():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)  # two register tokens after the class token: three prefix tokens
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, reg_tokens=2, num_classes=16)
    return TowerModel(vit, lambda v, x: v(x), spec="test:timm-vit")


def _timm_eva():
    from timm.models.eva import Eva

    torch.manual_seed(0)  # EVA02-style: rotary position embeddings
    eva = Eva(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, use_rot_pos_emb=True, ref_feat_shape=(4, 4), num_classes=16)
    return TowerModel(eva, lambda v, x: v(x), spec="test:timm-eva")


@pytest.fixture
def openclip_model(tiny_openclip):
    arch, weights = tiny_openclip
    return lambda: load_model(f"openclip:{arch}", str(weights))


@pytest.fixture
def backbones(openclip_model):
    """name -> a function returning a freshly built model of that backbone kind."""
    makers = {"open_clip": openclip_model, "hf-clip": _hf_clip, "hf-siglip": _hf_siglip, "timm-vit": _timm_vit,
              "timm-eva": _timm_eva}
    from lr0fm.models.tiny import weights_path

    if weights_path().is_file():
        makers["lr0fm-tiny"] = lambda: load_model("lr0fm-tiny")
    return makers


def pixels(count=3, size=32, seed=0):
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------------
# The wrapper


@pytest.mark.parametrize("variant", ["always", "resolution", "vpt"])
def test_tokens_off_is_the_original_model_on_every_backbone(backbones, variant):
    for name, make in backbones.items():
        if variant == "vpt" and name == "timm-eva":
            continue  # refused, see test_vpt_refuses_rotary_towers
        base = make()
        x = pixels(size=base.image_size)
        with torch.no_grad():
            reference = base.encode_image(x)
            model = wrap(base, variant)
            with model.tokens_off():
                off = model.encode_image(x, source_resolution=8)
            on = model.encode_image(x, source_resolution=8)
            model.detach()
            detached = base.encode_image(x)
        assert torch.equal(off, reference), name
        assert torch.equal(detached, reference), name
        assert not torch.allclose(on, reference), name  # the tokens do something
        assert on.shape == reference.shape, name


def test_tokens_reach_the_patch_positions_only(backbones):
    """Before the first block, tokens on minus tokens off is exactly the block-0 set on the patches, zero on prefix tokens."""
    for name, make in backbones.items():
        base = make()
        model = wrap(base, first_block=0)
        anatomy = model.anatomy
        with torch.no_grad():
            model.tokens.input_tokens.zero_()  # isolate the block-0 set
        seen = []
        probe = anatomy.blocks[0].register_forward_pre_hook(lambda m, a, k: seen.append(a[0] if a else k["hidden_states"]), with_kwargs=True)
        x = pixels(2, base.image_size)
        with torch.no_grad():
            model.encode_image(x)
            with model.tokens_off():
                model.encode_image(x)
        probe.remove()
        on, off = seen
        if anatomy.sequence_first:
            on, off = on.transpose(0, 1), off.transpose(0, 1)
        prefix = anatomy.num_prefix
        assert on.shape[1] == prefix + anatomy.num_patches, name
        assert torch.equal(on[:, :prefix], off[:, :prefix]), name
        torch.testing.assert_close(on[:, prefix:] - off[:, prefix:], model.tokens.block_tokens[0].expand(2, -1, -1), rtol=0, atol=1e-5)


def test_patch_embedding_layouts_agree():
    """NCHW, NHWC and (B, N, D) patch outputs get the same token at the same grid cell (row-major)."""
    from lr0fm.tokens.backbones import Anatomy

    width, grid = 5, (2, 3)
    tokens = torch.randn(1, 6, width)
    nld = torch.randn(2, 6, width)
    nchw = nld.transpose(1, 2).reshape(2, width, *grid)
    nhwc = nld.reshape(2, *grid, width)

    def anatomy(fmt):
        return Anatomy("x", None, fmt, [], False, 6, grid, width, 1, False)

    expected = nld + tokens
    assert torch.equal(add_to_patch_embedding(nld, tokens, anatomy("NLD")), expected)
    assert torch.equal(add_to_patch_embedding(nchw, tokens, anatomy("NCHW")).flatten(2).transpose(1, 2), expected)
    assert torch.equal(add_to_patch_embedding(nhwc, tokens, anatomy("NHWC")).reshape(2, 6, width), expected)


def test_layouts_and_parameter_counts(openclip_model):
    model = wrap(openclip_model())
    layout = model.layout  # tiny test arch: 32 px, 8-px patches -> 16 patches, width 64, 2 blocks
    assert (layout.num_patches, layout.width, layout.num_blocks, layout.num_prefix) == (16, 64, 2, 1)
    assert model.tokens.token_parameters() == 3 * 16 * 64  # input set + one per block
    later = wrap(openclip_model(), first_block=1)
    assert later.tokens.input_tokens is None and later.tokens.token_parameters() == 16 * 64
    vpt = wrap(openclip_model(), "vpt")
    assert vpt.layout.prompts == matched_prompts(16, 2) == 24
    assert vpt.tokens.token_parameters() >= model.tokens.token_parameters()
    # ViT-B/16 at 224: 13 sets of 196 x 768 (PAPER.md §3.1)
    assert 13 * 196 * 768 == 1_956_864 and matched_prompts(196, 12) == 213
    assert abs(model.tokens.logit_scale.exp().item() - 1 / 0.07) < 1e-4


def test_wrap_refuses_towers_without_patch_tokens_and_double_wrapping(openclip_model):
    model = openclip_model()
    wrap(model)
    with pytest.raises(UserError, match="already carries"):
        wrap(model)
    with pytest.raises(UserError, match="ViT with patch tokens"):
        locate(torch.nn.Linear(2, 2), "a linear model")
    with pytest.raises(UserError, match="first-block"):
        wrap(openclip_model(), first_block=5)


def test_vpt_refuses_rotary_towers():
    with pytest.raises(UserError, match="rotary"):
        wrap(_timm_eva(), "vpt")


# --------------------------------------------------------------------------------------------------
# Views and pools


def test_views_share_content():
    rng = np.random.default_rng(0)  # smooth content, so a round trip through low resolution keeps it
    image = Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).resize((40, 48), Image.Resampling.BICUBIC)
    buckets = default_buckets(32)
    assert buckets == [(4, 8), (8, 16), (16, 32)] and default_buckets(224) == [(16, 32), (32, 64), (64, 128)]
    views, sizes = make_views(image, 32, buckets, np.random.default_rng(3))
    assert views.shape == (4, 3, 32, 32) and views.dtype == torch.uint8 and sizes[0] == 32
    native = Image.fromarray(views[0].permute(1, 2, 0).numpy())
    elsewhere, _ = make_views(image, 32, buckets, np.random.default_rng(4))  # another crop, for contrast
    for view, size, (low, high) in zip(views[1:], sizes[1:], buckets):
        assert low <= size < high
        # Each low-resolution view is the evaluation's own degradation of the native crop...
        assert torch.equal(view, ViewMaker("canonical", 32, [size])(native)[0])
        # ...so taken down to its size again it shows the native crop's content.
        down = lambda t: torch.nn.functional.interpolate(t[None].float(), size=(size, size), mode="bicubic", antialias=True)
        aligned = (down(view) - down(views[0])).abs().mean()
        assert aligned < 0.35 * (down(view) - down(elsewhere[0])).abs().mean()  # measured: 0.04-0.31
    again, _ = make_views(image, 32, buckets, np.random.default_rng(3))
    assert torch.equal(again, views)


def test_bucket_parsing():
    assert parse_buckets("4-8, 8-16", 32) == [(4, 8), (8, 16)]
    for bad in ("4-40", "8-4", "x-8", ""):
        with pytest.raises(UserError):
            parse_buckets(bad, 32)


def write_pool(folder, count=16, groups=None, size=(40, 36), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
        lines.append({"file": f"{i:03d}.png", "group": i // groups} if groups else {"file": f"{i:03d}.png"})
    if groups:
        (folder / "manifest.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return folder


def test_pools_and_batch_plan(tmp_path):
    grouped = load_pool(str(write_pool(tmp_path / "g", 24, groups=3)))
    assert len(grouped) == 24 and grouped.groups[:4] == ["0", "0", "0", "1"]
    plan = BatchPlan(len(grouped), grouped.groups, batch_size=8, group_size=4, seed=0)
    for step in range(5):
        batch = [i for i, _ in plan.batch(step)]
        groups = [grouped.groups[i] for i in batch]
        assert len(batch) == 8 and all(len(set(groups[k:k + 4])) == 1 for k in (0, 4))
    assert plan.batch(3) == BatchPlan(24, grouped.groups, 8, 4, 0).batch(3)  # a pure function of (seed, step)
    assert plan.batch(3) != BatchPlan(24, grouped.groups, 8, 4, 1).batch(3)
    with pytest.raises(UserError, match="multiple"):
        BatchPlan(24, grouped.groups, 6, 4, 0)
    plain = load_pool(f"folder:{write_pool(tmp_path / 'p', 5)}")
    assert plain.groups is None and len(plain) == 5
    dataset = load_pool("fashion_mnist:test")
    assert len(dataset) == 10_000 and dataset.load_image(0).size == (28, 28)
    for bad, match in (("nope:train", "Unknown image pool"), (str(tmp_path / "missing"), "does not exist")):
        with pytest.raises(UserError, match=match):
            load_pool(bad)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.jsonl").write_text('{"file": "gone.png", "group": 1}\n')
    with pytest.raises(UserError, match="do not exist"):
        load_pool(str(tmp_path / "bad"))


def test_a_dataset_pool_range_holds_exactly_those_images_and_is_its_own_pool():
    whole = load_pool("fashion_mnist:test")
    tail, head = load_pool("fashion_mnist:test[9990:]"), load_pool("fashion_mnist:test[:3]")
    middle = load_pool("fashion_mnist:test[100:104]")
    assert (len(tail), len(head), len(middle)) == (10, 3, 4)
    for pool, first in ((tail, 9990), (head, 0), (middle, 100)):
        for index in range(len(pool)):
            assert pool.load_image(index).tobytes() == whole.load_image(first + index).tobytes()
        assert pool.describe(0) == whole.describe(first)
    assert len({whole.fingerprint(), tail.fingerprint(), head.fingerprint(), middle.fingerprint()}) == 4
    with pytest.raises(UserError, match=r"holds no images: fashion_mnist:test has 10000"):
        load_pool("fashion_mnist:test[10000:]")
    with pytest.raises(UserError, match="Unknown image pool"):
        load_pool("nope:test[1:2]")


# --------------------------------------------------------------------------------------------------
# Training


@pytest.fixture
def trainer(tiny_openclip, tmp_path):
    import lr0fm

    arch, weights = tiny_openclip
    pool = write_pool(tmp_path / "pool", 16, groups=4)

    def run(out, **options):
        settings = dict(weights=str(weights), steps=6, batch_size=8, workers=0, device="cpu", lr=5e-3,
                        checkpoint_every=2, log_every=1)
        settings.update(options)
        return lr0fm.train_tokens(f"openclip:{arch}", str(pool), str(tmp_path / out), **settings)
    return run, arch, weights, tmp_path


def test_a_step_changes_only_the_tokens(trainer, monkeypatch):
    run, arch, weights, tmp_path = trainer
    from lr0fm.tokens import train as train_module

    captured = {}
    original = train_module.wrap

    def spy(base, *args, **kwargs):
        captured["base"] = {k: v.clone() for k, v in base.module.state_dict().items()}
        captured["model"] = model = original(base, *args, **kwargs)
        captured["init"] = {k: v.clone() for k, v in model.tokens.state_dict().items()}
        return model

    monkeypatch.setattr(train_module, "wrap", spy)
    run("one.safetensors", steps=1)
    model = captured["model"]
    after = model.base.module.state_dict()
    assert all(torch.equal(after[k], v) for k, v in captured["base"].items())
    assert all(not p.requires_grad for p in model.base.module.parameters())
    assert not model.base.module.training
    for name, value in model.tokens.state_dict().items():
        assert not torch.equal(value, captured["init"][name]), name  # tokens and temperature moved


def test_loss_decreases(trainer):
    run, *_ = trainer
    result = run("loss.safetensors", steps=30, batch_size=16, checkpoint_every=30)
    losses = result.losses
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.05, losses


def test_resume_without_a_checkpoint_says_so_and_equals_a_fresh_run(trainer, caplog):
    from lr0fm.tokens.files import read_tokens as read

    run, *_ = trainer
    fresh = run("fresh.safetensors", steps=2)
    with caplog.at_level("WARNING", logger="lr0fm.tokens"):
        resumed = run("resumed.safetensors", steps=2, resume=True)
    assert any("no checkpoint at" in r.getMessage() and "step 0" in r.getMessage() for r in caplog.records)
    assert resumed.resumed_from == 0
    for name, tensor in read(fresh.path)[1].items():  # seeded the same way: the same tokens
        assert torch.equal(tensor, read(resumed.path)[1][name]), name


def test_resume_after_a_kill_matches_an_uninterrupted_run(trainer):
    run, *_ = trainer
    straight = run("straight.safetensors")

    def kill(step, loss):
        if step == 5:  # the last checkpoint was written at step 4
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run("killed.safetensors", callback=kill)
    assert not (straight.path.parent / "killed.safetensors").exists()
    resumed = run("killed.safetensors", resume=True)
    assert resumed.resumed_from == 4
    _, a = read_tokens(straight.path)
    _, b = read_tokens(resumed.path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.losses == straight.losses
    with pytest.raises(UserError, match="different run"):
        run("killed.safetensors", resume=True, lr=1e-3)
    with pytest.raises(UserError, match="already exists"):
        run("killed.safetensors")


def test_vpt_and_resolution_variants_train(trainer):
    run, arch, weights, tmp_path = trainer
    for variant in ("vpt", "resolution"):
        result = run(f"{variant}.safetensors", variant=variant, steps=3, checkpoint_every=3)
        metadata, tensors = read_tokens(result.path)
        assert metadata["layout"].variant == variant and np.isfinite(result.final_loss)
        model = load_model(f"openclip:{arch}+tokens={result.path}", str(weights))
        assert model.encode_image(pixels(2)).shape == (2, 32)
    assert "prompts" in read_tokens(tmp_path / "vpt.safetensors")[1]


# --------------------------------------------------------------------------------------------------
# Tokens files and specs


def test_tokens_file_metadata_and_mismatch(trainer, tmp_path):
    run, arch, weights, _ = trainer
    result = run("meta.safetensors", steps=2)
    metadata, _ = read_tokens(result.path)
    assert metadata["base_spec"] == f"openclip:{arch}" and metadata["training"]["steps"] == 2
    assert metadata["training"]["pool_size"] == 16 and metadata["lr0fm_version"]
    spec = f"openclip:{arch}+tokens={result.path}"
    check_spec(spec)
    model = load_model(spec, str(weights))
    assert model.spec == spec and model.fingerprint() != model.base.fingerprint()

    # Another base model's weights: refused with a sentence that names the right base.
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(99)
    other = tmp_path / "other.safetensors"
    save_file(open_clip.create_model(arch).state_dict(), str(other))
    with pytest.raises(UserError, match=r"was trained on 'openclip:lr0fm-test-tiny'.*fingerprint"):
        load_model(spec, str(other))
    with pytest.raises(UserError, match="not an LR-TK0 tokens file"):
        check_spec(f"openclip:{arch}+tokens={weights}")
    with pytest.raises(UserError, match="does not exist"):
        check_spec(f"openclip:{arch}+tokens={tmp_path / 'none.safetensors'}")
    with pytest.raises(UserError, match="SPEC\\+tokens=PATH"):
        check_spec("+tokens=x")


def test_eval_with_tokens_spec_through_the_cli(trainer, tmp_path, make_folder):
    run, arch, weights, _ = trainer
    result = run("cli.safetensors", steps=2)
    folder = make_folder(tmp_path / "data", {"dark": [20, 30], "light": [220, 230]})
    spec = f"openclip:{arch}+tokens={result.path}"
    args = ["eval", "--model", spec, "--weights", str(weights), "--dataset", f"folder:{folder}", "-r", "native,16,8",
            "--workers", "0", "--device", "cpu", "--db", str(tmp_path / "db" / "results.sqlite")]
    outcome = invoke(cli.app, args)
    assert outcome.exit_code == 0, outcome.output
    assert "+tokens=" in outcome.stdout and "3 cell(s) computed" in outcome.stderr
    assert "3 reused" in invoke(cli.app, args).stderr  # the second run reuses the cells


def test_resolution_variant_receives_the_source_resolution(trainer, tmp_path, make_folder, monkeypatch):
    run, arch, weights, _ = trainer
    result = run("res.safetensors", variant="resolution", steps=2)
    from lr0fm.api import run_evaluation as evaluate
    from lr0fm.plan import EvalConfig
    from lr0fm.tokens.wrapper import LowResTokens

    seen = []
    original = LowResTokens.gates
    monkeypatch.setattr(LowResTokens, "gates", lambda self, source: seen.append(source.tolist()) or original(self, source))
    folder = make_folder(tmp_path / "data", {"dark": [20], "light": [220]})
    evaluate(EvalConfig(models=[f"openclip:{arch}+tokens={result.path}"], weights=str(weights), datasets=[f"folder:{folder}"],
                        resolutions="native,16,8", protocol="canonical", workers=0, device="cpu", db=tmp_path / "r.sqlite"))
    assert seen == [[32, 32], [16, 16], [8, 8]]


def test_cli_help_and_info(trainer):
    run, *_ = trainer
    for command in (["tokens", "train", "--help"], ["tokens", "info", "--help"]):
        outcome = invoke(cli.app, command)
        assert outcome.exit_code == 0 and "Example:" in outcome.stdout
    _, arch, weights, tmp_path = trainer
    out = tmp_path / "cli.tokens.safetensors"
    train = ["tokens", "train", "--model", f"openclip:{arch}", "--weights", str(weights), "--pool", str(tmp_path / "pool"),
             "--out", str(out), "--steps", "2", "-b", "8", "--workers", "0", "--device", "cpu"]
    outcome = invoke(cli.app, train)
    assert outcome.exit_code == 0, outcome.output
    assert f"Wrote {out}" in outcome.stderr and "+tokens=" in outcome.stderr
    again = invoke(cli.app, train)  # the same --out again: refused, nothing overwritten
    assert isinstance(again.exception, UserError) and "--resume" in str(again.exception)
    outcome = invoke(cli.app, ["tokens", "info", str(out)])
    assert outcome.exit_code == 0 and "token parameters" in outcome.stdout and "3,072" in outcome.stdout


def test_transformers_clip_through_its_loader(tmp_path, make_folder):
    """hf: specs: the wrapper on a loaded CLIPModel, training, and SPEC+tokens=PATH with a local folder."""
    import lr0fm
    from test_models import TEXT, VISION, save_tokenizer
    from transformers import CLIPConfig, CLIPModel

    folder = tmp_path / "hf_clip"
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=16)).save_pretrained(folder)
    save_tokenizer(folder)
    base = load_model(f"hf:{folder}")
    x = pixels(2)
    reference = base.encode_image(x)
    model = wrap(base)
    with model.tokens_off():
        assert torch.equal(model.encode_image(x), reference)
    pool = make_folder(tmp_path / "pool", {"a": [10, 60, 110, 160], "b": [30, 80, 130, 200]})
    out = tmp_path / "hf.tokens.safetensors"
    lr0fm.train_tokens(f"hf:{folder}", str(pool), out, steps=2, batch_size=4, workers=0, device="cpu")
    loaded = load_model(f"hf:{folder}+tokens={out}")
    assert loaded.layout.backbone == "transformers" and loaded.layout.num_prefix == 1
    assert loaded.encode_image(x).shape == reference.shape


def test_resolution_gate_is_zero_at_native_and_learned_below():
    """The resolution variant leaves native images to the base model exactly, whatever the gate MLP learns."""
    from lr0fm.tokens.wrapper import LowResTokens, TokenLayout

    tokens = LowResTokens(TokenLayout("resolution", "open_clip", num_patches=4, width=8, num_blocks=2, num_prefix=1,
                                      native=32, gate_hidden=16))
    with torch.no_grad():
        for parameter in tokens.gate.parameters():
            parameter.normal_()
    gates = tokens.gates(torch.tensor([64, 32, 24, 16, 8]))
    assert gates.shape == (5, tokens.layout.num_sets)
    assert torch.equal(gates[:2], torch.zeros(2, tokens.layout.num_sets))  # native and larger: off
    assert gates[2:].abs().min() > 0  # below native the learned strengths act
    fresh = LowResTokens(tokens.layout).gates(torch.tensor([24, 16, 8]))
    assert torch.allclose(fresh[1:], torch.ones(2, tokens.layout.num_sets))  # from one octave down: always-on at start
    assert torch.allclose(fresh[0], torch.full((tokens.layout.num_sets,), math.log2(32 / 24)))


# --------------------------------------------------------------------------------------------------
# The patch-embedding tuning baseline (variant "patch")


def test_patch_variant_is_the_base_model_at_native_and_its_copy_below(backbones):
    """At native (or unknown) source resolution the base model bit for bit; below native the copy embeds."""
    for name, make in backbones.items():
        base = make()
        n = base.image_size
        x = pixels(4, n)
        original = locate(base.visual, name).patch_projection
        before = {k: v.clone() for k, v in original.state_dict().items()}
        with torch.no_grad():
            reference = base.encode_image(x)
            model = wrap(base, "patch")
            copy = model.tokens.patch
            assert copy is not original and all(torch.equal(v, before[k]) for k, v in copy.state_dict().items()), name
            for source in (None, n, 2 * n, torch.tensor([n, n, n + 1, 3 * n])):
                assert torch.equal(model.encode_image(x, source_resolution=source), reference), (name, source)
            for parameter in copy.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.1)
            low = model.encode_image(x, source_resolution=n // 4)
            mixed = model.encode_image(x, source_resolution=torch.tensor([n, n // 4, n, n - 1]))
            assert torch.equal(model.encode_image(x, source_resolution=n), reference), name  # still the base at native
            with model.tokens_off():
                assert torch.equal(model.encode_image(x, source_resolution=n // 4), reference), name
            model.detach()
            detached = base.encode_image(x)
        assert not torch.allclose(low, reference), name  # the copy is what embeds images below native
        torch.testing.assert_close(mixed[[0, 2]], reference[[0, 2]], rtol=0, atol=1e-6)  # native rows: the base
        torch.testing.assert_close(mixed[1], low[1], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(mixed[3], reference[3]), name  # one pixel below native is below native
        assert torch.equal(detached, reference), name
        assert all(torch.equal(v, before[k]) for k, v in original.state_dict().items()), name  # the original is untouched
        assert not any(p.requires_grad for p in base.module.parameters()), name


def test_patch_variant_layout_and_parameter_count(openclip_model):
    base = openclip_model()
    model = wrap(base, "patch")
    conv = base.visual.conv1  # open_clip's patch embedding: (width, 3, patch, patch), no bias
    assert model.layout.variant == "patch" and model.layout.conditioned and model.accepts_source_resolution
    assert model.tokens.token_parameters() == conv.weight.numel() == 64 * 3 * 8 * 8
    assert {name for name, p in model.tokens.named_parameters() if p.requires_grad} == {"patch.weight", "logit_scale"}
    assert not model.tokens.decays("patch.weight") and wrap(openclip_model()).tokens.decays("block_tokens")
    with pytest.raises(UserError, match="first-block"):
        wrap(openclip_model(), "patch", first_block=1)
    with pytest.raises(UserError, match="prompts"):
        wrap(openclip_model(), "patch", prompts=4)


def test_patch_variant_trains_only_the_copy(trainer, monkeypatch):
    """A training run moves the copy (and the temperature) alone; the optimizer holds nothing else."""
    run, arch, weights, tmp_path = trainer
    from lr0fm.tokens import train as train_module

    captured = {}
    original_wrap, original_adamw = train_module.wrap, torch.optim.AdamW

    def spy_wrap(base, *args, **kwargs):
        captured["base"] = {k: v.clone() for k, v in base.module.state_dict().items()}
        captured["model"] = model = original_wrap(base, *args, **kwargs)
        return model

    def spy_adamw(groups, **kwargs):
        captured["optimized"] = [p for group in groups for p in group["params"]]
        captured["decay"] = {id(p): group["weight_decay"] for group in groups for p in group["params"]}
        return original_adamw(groups, **kwargs)

    monkeypatch.setattr(train_module, "wrap", spy_wrap)
    monkeypatch.setattr(torch.optim, "AdamW", spy_adamw)
    result = run("patch.safetensors", variant="patch", steps=3, checkpoint_every=3)
    model = captured["model"]
    tokens = model.tokens
    assert {id(p) for p in captured["optimized"]} == {id(tokens.patch.weight), id(tokens.logit_scale)}
    assert captured["decay"][id(tokens.patch.weight)] == 0.0
    after = model.base.module.state_dict()
    assert all(torch.equal(after[k], v) for k, v in captured["base"].items())  # the original conv1 too
    assert not any(p.requires_grad for p in model.base.module.parameters())
    assert not torch.equal(tokens.patch.weight, model.base.visual.conv1.weight)  # the copy moved
    metadata, tensors = read_tokens(result.path)
    assert metadata["layout"].variant == "patch" and set(tensors) == {"patch.weight", "logit_scale"}
    assert metadata["training"]["token_parameters"] == result.token_parameters == model.base.visual.conv1.weight.numel()


def test_patch_variant_lowers_the_loss_on_a_fixed_batch(trainer, tmp_path):
    """Self-distillation on a fixed batch of views: the trained copy fits the teacher better than the
    untrained one (which is the base model itself, the teacher)."""
    import contextlib

    from lr0fm.tokens.losses import multi_view_loss

    run, arch, weights, _ = trainer
    result = run("fit.safetensors", variant="patch", steps=30, batch_size=16, checkpoint_every=30)
    trained = load_model(f"openclip:{arch}+tokens={result.path}", str(weights))
    rng = np.random.default_rng(7)
    images = [Image.open(path) for path in sorted((tmp_path / "pool").glob("*.png"))]
    made = [make_views(image, 32, default_buckets(32), rng) for image in images]
    views = torch.stack([v for v, _ in made]).float() / 255  # (B, V, 3, n, n)
    sizes = torch.tensor([s for _, s in made])  # (B, V)
    scale = torch.tensor(1 / 0.07)

    def loss(model, tokens_on):
        with torch.no_grad():
            with model.tokens_off():
                teacher = model.encode_image(views[:, 0])
            with model.tokens_off() if not tokens_on else contextlib.nullcontext():
                students = torch.stack([model.encode_image(views[:, v], source_resolution=sizes[:, v])
                                        for v in range(views.shape[1])])
        return float(multi_view_loss(teacher, students, scale)[0])

    assert loss(trained, tokens_on=True) < loss(trained, tokens_on=False) - 0.01


def test_patch_variant_file_round_trip_and_info(openclip_model, tmp_path):
    from lr0fm.api import tokens_info
    from lr0fm.tokens import attach_tokens, save_tokens

    model = wrap(openclip_model(), "patch")
    with torch.no_grad():
        model.tokens.patch.weight.add_(torch.randn_like(model.tokens.patch.weight) * 0.1)
    path = save_tokens(model, tmp_path / "patch.safetensors")
    loaded = attach_tokens(openclip_model(), path)
    x = pixels(4)
    sources = torch.tensor([32, 16, 8, 31])
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(x, source_resolution=sources), model.encode_image(x, source_resolution=sources))
        assert torch.equal(loaded.encode_image(x), model.base.encode_image(x))
    assert torch.equal(loaded.tokens.patch.weight, model.tokens.patch.weight)
    assert loaded.fingerprint() == model.fingerprint() != loaded.base.fingerprint()
    info = tokens_info(path)
    assert info["layout"]["variant"] == "patch" and info["token_parameters"] == 64 * 3 * 8 * 8


def test_patch_variant_through_the_cli_and_eval(trainer, tmp_path, make_folder, monkeypatch):
    """`tokens train --variant patch`, `tokens info`, and eval with SPEC+tokens=FILE passing each cell's
    source resolution; the native cell's predictions are the base model's."""
    _, arch, weights, _ = trainer
    out = tmp_path / "cli.patch.safetensors"
    train = ["tokens", "train", "--model", f"openclip:{arch}", "--weights", str(weights), "--pool", str(tmp_path / "pool"),
             "--out", str(out), "--steps", "3", "-b", "8", "--workers", "0", "--device", "cpu", "--lr", "5e-3",
             "--variant", "patch"]
    outcome = invoke(cli.app, train)
    assert outcome.exit_code == 0, outcome.output
    assert "12,288 token parameters" in " ".join(outcome.stderr.split())  # conv1: 64 x 3 x 8 x 8
    assert read_tokens(out)[0]["layout"].variant == "patch"
    shown = invoke(cli.app, ["tokens", "info", str(out)])
    assert shown.exit_code == 0 and "patch" in shown.stdout and "12,288" in shown.stdout

    from lr0fm.api import run_evaluation as evaluate
    from lr0fm.plan import EvalConfig
    from lr0fm.tokens.wrapper import LowResTokens

    seen = []
    original = LowResTokens.below_native
    monkeypatch.setattr(LowResTokens, "below_native", lambda self, source: seen.append(source.tolist()) or original(self, source))
    folder = make_folder(tmp_path / "data", {"dark": [20, 30], "light": [220, 230]})
    db = tmp_path / "r.sqlite"
    spec = f"openclip:{arch}+tokens={out}"
    for model in (spec, f"openclip:{arch}"):
        evaluate(EvalConfig(models=[model], weights=str(weights), datasets=[f"folder:{folder}"],
                            resolutions="native,16,8", protocol="canonical", workers=0, device="cpu", db=db))
    assert sorted(seen) == sorted([[32] * 4, [16] * 4, [8] * 4])  # only the tokens model's encodes are spied
    from lr0fm.api import open_results, results

    runs = {row["model_spec"]: row["run_id"] for row in results(db)}
    with open_results(db) as store:  # the native cell: the base model's stored predictions, exactly
        tokenized, base = (store.predictions(runs[model], "native") for model in (spec, f"openclip:{arch}"))
    assert len(tokenized[1]) == 4 and all(np.array_equal(a, b) for a, b in zip(tokenized, base))


@pytest.mark.slow
def test_patch_variant_on_two_processes_trains_the_copy_of_one(tmp_path):
    """torchrun (gloo on the CPU): two processes give the one-process copy, to rounding far below its move."""
    from test_tokens_ddp import torchrun

    flags = ["--model", "lr0fm-tiny", "--pool", "fashion_mnist:train", "--steps", "4", "-b", "8", "--lr", "5e-3",
             "--variant", "patch", "--workers", "0", "--device", "cpu"]
    one = invoke(cli.app, ["tokens", "train", *flags, "--out", str(tmp_path / "one.safetensors")])
    assert one.exit_code == 0, one.output
    two = torchrun("-m", "lr0fm", "tokens", "train", *flags, "--out", str(tmp_path / "two.safetensors"))
    assert two.returncode == 0, two.stderr
    a, b = (read_tokens(tmp_path / f"{n}.safetensors")[1]["patch.weight"] for n in ("one", "two"))
    start = load_model("lr0fm-tiny").visual.conv1.weight
    moved = (a - start).abs().max().item()
    assert moved > 1e-3 and (a - b).abs().max().item() < moved / 100
