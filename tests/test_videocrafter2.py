"""models/videocrafter2.py: the real size, LVDM's forward process and sampler, the fps condition,
the pruning rule, and the loaders. Tiny models from configs; no downloads.

    python -m pytest -x -q tests/test_videocrafter2.py
"""
import copy
import json
import math
import os

from infra.cli import UserError

import numpy as np
import pytest
import torch

import models
import redpo
from models import animatediff, videocrafter2
import tiny_checkpoints
from conftest import trainable_gradients

PROMPTS = ["a red car", "a blue boat"]


@pytest.fixture(scope="module")
def tiny():
    return models.load("tiny-videocrafter2")


def outputs(model, seed=0):
    """A fixed noise_pred call: the model's function, compared bit for bit."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 4, 8, 8, generator=g)
    return model.noise_pred(x, torch.tensor([10, 500]), PROMPTS).detach()


def lvdm_betas():
    """LVDM's make_beta_schedule("linear", 1000, 0.00085, 0.012), written out in float64."""
    return np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2


def test_real_videocrafter2_size_on_meta():
    # The paper's 1.413B (Table 1), built on the meta device: no memory, no download. LVDM's
    # UNetModel from inference_t2v_512_v2.0.yaml counts 1,413,284,420 too: UNet3DConditionModel
    # (1,411,233,860) + the fps embedding (2,050,560) is the same network, layer for layer.
    with torch.device("meta"):
        unet = videocrafter2.build_videocrafter2_unet()
    assert sum(p.numel() for p in unet.parameters()) == 1_413_284_420
    fps = sum(p.numel() for p in unet.fps_embedding.parameters())
    assert fps == (320 * 1280 + 1280) + (1280 * 1280 + 1280) == 2_050_560     # Linear(320, 1280), Linear(1280, 1280)
    # LVDM's heads: 64 channels each (num_head_channels 64); transformer_in: 8 heads of 64.
    assert unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.heads == 5
    assert unet.down_blocks[2].temp_attentions[0].transformer_blocks[0].attn1.heads == 20
    assert unet.transformer_in.transformer_blocks[0].attn1.heads == 8
    paths = videocrafter2.videocrafter2_block_paths(unet)
    assert len(paths) == 63 and len(set(paths)) == 63
    assert paths[:3] == ["transformer_in", "down_blocks.0.resnets.0", "down_blocks.0.temp_convs.0"]
    assert paths[-1] == "up_blocks.3.temp_attentions.2"
    kinds = [p.split(".")[-2] if "." in p else p for p in paths]
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "transformer_in": 1, "temp_convs": 22, "attentions": 16, "temp_attentions": 16, "resnets": 8}
    # No ResNet that changes width, and no up-block ResNet, is admitted.
    assert "down_blocks.1.resnets.0" not in paths and not any(p.startswith("up_blocks") and ".resnets." in p
                                                              for p in paths)
    size = sum(sum(p.numel() for p in unet.get_submodule(q).parameters()) for q in paths)
    assert size == 987_351_616                       # 69.9% of the UNet is prunable


def test_scale_arr_and_add_noise_against_hand_computed(tiny):
    s = videocrafter2.videocrafter2_scale_arr()
    assert s.shape == (1000,)
    # np.linspace(1, 0.7, 400): s_t = 1 - 0.3 t / 399 up to t = 399, then 0.7.
    expected = {0: 1.0, 200: 339 / 399, 399: 0.7, 400: 0.7, 999: 0.7}
    for t, v in expected.items():
        assert s[t].item() == pytest.approx(v, abs=1e-7), t
    a = np.cumprod(1 - lvdm_betas())
    torch.testing.assert_close(tiny.scheduler.alphas_cumprod, torch.tensor(a, dtype=torch.float32))
    g = torch.Generator().manual_seed(0)
    x_0, eps = torch.randn(4, 4, 2, 3, 3, generator=g), torch.randn(4, 4, 2, 3, 3, generator=g)
    t = torch.tensor([0, 200, 400, 999])
    x_t = tiny.add_noise(x_0, eps, t)
    for i, ti in enumerate(t.tolist()):              # x_t = sqrt(a_t) s_t x_0 + sqrt(1 - a_t) eps
        hand = math.sqrt(a[ti]) * expected[ti] * x_0[i].double() + math.sqrt(1 - a[ti]) * eps[i].double()
        torch.testing.assert_close(x_t[i].double(), hand, atol=1e-6, rtol=1e-6)
    # The unscaled process would be wrong from t = 1 on.
    assert not torch.allclose(x_t[1], tiny.scheduler.add_noise(x_0, eps, t)[1], atol=1e-3)


def test_ddim_step_is_lvdm_sampler(tiny):
    from diffusers import DDIMScheduler
    scheduler = DDIMScheduler(**videocrafter2.VIDEOCRAFTER2_SCHEDULER)
    scheduler.set_timesteps(50)                       # LVDM make_ddim_timesteps("uniform", 50, 1000)
    assert scheduler.timesteps.tolist() == [t + 1 for t in range(0, 1000, 20)][::-1]
    a, s = tiny.scheduler.alphas_cumprod, tiny.scale_arr
    g = torch.Generator().manual_seed(1)
    x_0, eps, noise = (torch.randn(2, 4, 3, 4, 4, generator=g) for _ in range(3))
    for t, t_prev in ((981, 961), (421, 401), (401, 381), (21, 1), (1, -19)):
        x_t = tiny.add_noise(x_0, eps, t)
        # eta = 0 with the true eps: x_0 comes back, and x_prev is q(x_prev | x_0) with the same eps.
        x_prev, x_0_hat = videocrafter2.scaled_ddim_step(x_t, eps, t, t_prev, a, s, 0.0, noise)
        torch.testing.assert_close(x_0_hat, x_0, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(x_prev, tiny.add_noise(x_0, eps, max(t_prev, 0)), atol=1e-4, rtol=1e-4)
        # eta = 1 adds sigma * noise, sigma = sqrt((1 - a_prev) / (1 - a_t) (1 - a_t / a_prev)).
        x_prev_1, _ = videocrafter2.scaled_ddim_step(x_t, eps, t, t_prev, a, s, 1.0, noise)
        at, ap = float(a[t]), float(a[max(t_prev, 0)])
        sigma = math.sqrt((1 - ap) / (1 - at) * (1 - at / ap))
        det = math.sqrt(ap) * float(s[max(t_prev, 0)]) * x_0 + math.sqrt(1 - ap - sigma ** 2) * eps
        torch.testing.assert_close(x_prev_1, det + sigma * noise, atol=1e-4, rtol=1e-4)


def test_fps_condition_is_lvdm_embedding(tiny):
    unet = tiny.unet
    captured = []
    handle = unet.time_embedding.register_forward_hook(lambda m, a, out: captured.append(out))  # after the fps hook
    x = torch.randn(1, 4, 2, 8, 8)
    embeds = tiny.encode(["a"])
    with torch.no_grad():
        y28 = unet(x, 10, embeds, fps=28).sample
        y8 = unet(x, 10, embeds, fps=8).sample
        y_default = unet(x, 10, embeds).sample
    handle.remove()
    assert not torch.allclose(y28, y8) and torch.equal(y28, y_default)

    def lvdm_timestep_embedding(v, dim=32):          # lvdm/models/utils_diffusion.py
        half = dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = torch.tensor([float(v)])[:, None] * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    torch.testing.assert_close(unet.fps_proj(torch.tensor([28])), lvdm_timestep_embedding(28))
    with torch.no_grad():    # emb += fps_embedding(timestep_embedding(fps)): only that term moves
        delta = unet.fps_embedding(lvdm_timestep_embedding(28)) - unet.fps_embedding(lvdm_timestep_embedding(8))
    torch.testing.assert_close(captured[0] - captured[1], delta, atol=1e-5, rtol=1e-5)


def test_text_encoder_takes_the_penultimate_openclip_layer(tiny):
    from transformers import CLIPTextConfig, CLIPTextModel
    tokens = tiny.pipe.tokenizer(PROMPTS, padding="max_length", max_length=77, return_tensors="pt").input_ids
    # The tiny 2-layer encoder: all its layers, then the final layer norm (last_hidden_state).
    torch.testing.assert_close(tiny.encode(PROMPTS), tiny.pipe.text_encoder(tokens).last_hidden_state)
    # A 24-layer export (all of ViT-H's layers) gives what the 23-layer SD 2 export gives.
    m = copy.copy(tiny)
    m.pipe = copy.copy(tiny.pipe)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        config = CLIPTextConfig(**{**animatediff.TINY_TEXT_CONFIG, "num_hidden_layers": 24})
        m.pipe.text_encoder = CLIPTextModel(config).eval()
    full = m.encode(PROMPTS)
    body = getattr(m.pipe.text_encoder, "text_model", m.pipe.text_encoder)   # transformers 4 / 5
    body.encoder.layers = body.encoder.layers[:23]                           # drop ViT-H's last layer
    with torch.no_grad():
        torch.testing.assert_close(full, m.pipe.text_encoder(tokens).last_hidden_state)


def test_noise_pred_is_per_video(tiny):
    # UNet3D repeats the (B, L, D) embeddings per frame itself; each video sees only its own prompt.
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 4, 8, 8, generator=g)
    both = tiny.noise_pred(x, torch.tensor([10, 500]), PROMPTS)
    assert both.shape == x.shape
    for i in range(2):
        alone = tiny.noise_pred(x[i:i + 1], torch.tensor([[10, 500][i]]), PROMPTS[i:i + 1])
        torch.testing.assert_close(alone[0], both[i], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tiny.noise_pred(x, torch.tensor([10, 500]), tiny.encode(PROMPTS)), both)


def test_every_block_removed_alone_keeps_the_forward_valid(tiny):
    # The pruning rule admits 20 blocks in the tiny model, one of every kind; each one, removed
    # alone, leaves a valid forward that equals skipping it, and drops exactly its parameters.
    blocks = tiny.blocks()
    assert len(blocks) == 20
    y0 = outputs(tiny)
    n0 = tiny.num_parameters()
    for name, block in blocks.items():
        with tiny.skip([name]):
            y_skip = outputs(tiny)
        m = copy.deepcopy(tiny)
        m.remove([name])
        y = outputs(m)
        assert y.shape == y0.shape and torch.isfinite(y).all(), name
        assert not torch.allclose(y, y0, atol=1e-4), name           # the block did something
        torch.testing.assert_close(y, y_skip, atol=1e-5, rtol=1e-5)  # skip == remove
        size = sum(p.numel() for p in block.parameters())
        assert n0["unet"] - m.num_parameters()["unet"] == size > 0, name
    assert torch.equal(outputs(tiny), y0)                            # skips left no trace


def test_skip_restores_exactly_and_trainable_is_the_whole_unet(tiny):
    before = {k: v.clone() for k, v in tiny.unet.state_dict().items()}
    y0 = outputs(tiny)
    with tiny.skip(["transformer_in", "mid_block.resnets.1"]):
        assert not torch.equal(outputs(tiny), y0)
    assert torch.equal(outputs(tiny), y0)
    assert all(torch.equal(before[k], v) for k, v in tiny.unet.state_dict().items())
    assert {id(p) for p in tiny.trainable_parameters()} == {id(p) for p in tiny.unet.parameters()}
    assert not any(p.requires_grad for p in tiny.unet.parameters())  # frozen until redpo.py trains
    with pytest.raises(UserError, match="not a block"):
        tiny.skip(["up_blocks.1.resnets.0"]).__enter__()            # widens: not prunable


def test_save_load_roundtrip_of_a_pruned_model(tiny, tmp_path):
    m = copy.deepcopy(tiny)
    m.remove(["transformer_in", "down_blocks.0.resnets.0", "up_blocks.1.attentions.1"])
    with torch.no_grad():                             # stand-in for training: change the weights
        for p in m.trainable_parameters():
            p.add_(0.01 * torch.randn_like(p))
    m.save(tmp_path / "student")
    back = models.load("tiny-videocrafter2", path=str(tmp_path / "student"))
    assert back.removed == m.removed and back.num_parameters() == m.num_parameters()
    assert back.num_parameters()["unet"] < tiny.num_parameters()["unet"]
    assert torch.equal(outputs(back), outputs(m))


def test_real_loader_on_the_converted_layout(tiny, tmp_path):
    path = tiny_checkpoints.save_tiny_videocrafter2_layout(str(tmp_path / "vc2"))
    real = models.load("videocrafter2", path=path)
    assert real.defaults["num_frames"] == 16 and (real.defaults["height"], real.defaults["width"]) == (320, 512)
    assert real.num_parameters() == tiny.num_parameters() and list(real.blocks()) == list(tiny.blocks())
    torch.testing.assert_close(outputs(real), outputs(tiny))
    # The hub conversion names its class UNetVideoCrafter and adds fps_cond: the loader reads it.
    config_file = os.path.join(path, "unet", "config.json")
    config = json.load(open(config_file))
    json.dump({**config, "_class_name": "UNetVideoCrafter", "fps_cond": True}, open(config_file, "w"))
    real = models.load("videocrafter2", path=path)
    torch.testing.assert_close(outputs(real), outputs(tiny))
    # A pruned student records its source and comes back through the same loader.
    real.remove(["mid_block.attentions.0"])
    real.save(tmp_path / "student")
    back = models.load("videocrafter2", path=str(tmp_path / "student"))
    assert back.removed == ["mid_block.attentions.0"] and back.source["path"] == os.path.abspath(path)
    torch.testing.assert_close(outputs(back), outputs(real))
    # Wrong inputs are one-line errors.
    with pytest.raises(UserError, match="needs --path"):
        models.load("videocrafter2")
    with pytest.raises(UserError, match="no text_encoder/"):
        os.rename(os.path.join(path, "text_encoder"), os.path.join(path, "te"))
        models.load("videocrafter2", path=path)


def test_loader_refuses_a_unet_without_the_fps_embedding(tmp_path):
    from diffusers import UNet3DConditionModel
    path = tiny_checkpoints.save_tiny_videocrafter2_layout(str(tmp_path / "vc2"))
    UNet3DConditionModel(**videocrafter2.TINY_VIDEOCRAFTER2_UNET_CONFIG).save_pretrained(os.path.join(path, "unet"))
    with pytest.raises(UserError, match="fps_embedding"):
        models.load("videocrafter2", path=path)


def test_generate_deterministic_and_batch_independent(tiny):
    frames, latents = tiny.generate(PROMPTS, [1, 2])
    assert frames.dtype == np.uint8 and frames.shape == (2, 8, 16, 16, 3)
    assert latents.shape == (2, 4, 8, 8, 8) and latents.dtype == torch.float32
    # eta = 1 draws noise at every step: from the video's own generator, so the second video comes
    # back in another batch (up to float noise, which guidance 12 amplifies), and seed 3 differs.
    f2, l2 = tiny.generate(PROMPTS[1:] * 2, [2, 3])
    torch.testing.assert_close(l2[0], latents[1], atol=1e-3, rtol=1e-3)
    assert np.abs(f2[0].astype(int) - frames[1].astype(int)).max() <= 1
    assert (l2[1] - latents[1]).abs().max() > 0.1
    np.testing.assert_array_equal(tiny.decode(latents), frames)


def test_gradient_checkpointing_gives_the_same_gradients():
    m = models.load("tiny-videocrafter2")
    x, embeds = torch.randn(2, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0)), m.encode(PROMPTS)
    plain = trainable_gradients(m, x, embeds)
    m.unet.enable_gradient_checkpointing()           # redpo.py --gradient_checkpointing
    checkpointed = trainable_gradients(m, x, embeds)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, checkpointed))
    m.unet.disable_gradient_checkpointing()
    assert all("forward" not in b.__dict__ for b in m.unet.down_blocks)


def test_one_redpo_step_trains_the_pruned_student_only(tiny):
    # The surface redpo.py uses, end to end: teacher winners, pruned-student losers, same t and eps.
    teacher = tiny
    student = copy.deepcopy(tiny)
    student.remove(["down_blocks.0.attentions.0", "mid_block.temp_convs.1"])
    _, x_w = teacher.generate(PROMPTS[:1], [5], steps=2)
    _, x_l = student.generate(PROMPTS[:1], [5], steps=2)
    t = torch.tensor([300, 300])
    eps = torch.randn(1, *x_w.shape[1:]).repeat(2, 1, 1, 1, 1)
    x_t = teacher.add_noise(torch.cat([x_w, x_l]), eps, t)
    embeds = teacher.encode(PROMPTS[:1] * 2)
    params = student.trainable_parameters()
    for p in params:
        p.requires_grad_(True)
    before = [p.detach().clone() for p in params]
    teacher_before = {k: v.clone() for k, v in teacher.unet.state_dict().items()}
    with torch.no_grad():
        ref = teacher.noise_pred(x_t, t, embeds)
    loss, stats = redpo.loss(student.noise_pred(x_t, t, embeds), ref, eps, "redpo", 5000.0, 1e6)
    loss.backward()
    torch.optim.SGD(params, lr=1e-3).step()
    assert math.isfinite(stats["loss"]) and stats["sft"] > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, params))
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.unet.state_dict().items())
