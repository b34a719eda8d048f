"""models/wan.py and ReDPO's flow form: the real size on the meta device, generation and noise_pred
against diffusers' own WanPipeline and transformer, the flow forward process and training timesteps
by hand, ReDPO's flow form against an independent transcription, pruning, saving, the hub layout,
VideoScore's frame sampling of 81 frames, the preset's schedule and the whole loop on tiny-wan.
Tiny random models built in code; no downloads.

    python -m pytest -x -q tests/test_wan.py
"""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import models
import redpo
import tiny_checkpoints
import vip_loop
from models import wan
from rewards import sample_frame_indices

PROMPTS = ["a red car driving on a road", "a dog"]


@pytest.fixture(scope="module")
def tiny():
    return models.load("tiny-wan")


def block_parameters(dim, ffn, cross_attn_norm=True):
    """One WanTransformerBlock by hand: self- and cross-attention (q, k, v, out with biases, RMS norms
    of q and k across heads), the cross-attention's affine LayerNorm, the FFN, the 6 modulation rows."""
    attention = 4 * (dim * dim + dim) + 2 * dim
    return 2 * attention + (2 * dim if cross_attn_norm else 0) + (dim * ffn + ffn + ffn * dim + dim) + 6 * dim


def test_real_wan_size_on_meta_and_the_schedule():
    with torch.device("meta"):
        transformer = wan.build_wan_transformer()
    per_block = block_parameters(1536, 8960)
    assert per_block == 46_440_704
    assert all(sum(p.numel() for p in b.parameters()) == per_block for b in transformer.blocks)
    # patch embedding, time embedding (256 -> 1536 -> 1536) and its 6-way projection, text projection
    # (4096 -> 1536 -> 1536), output norm modulation and projection to 16 x 1 x 2 x 2.
    rest = ((16 * 4 * 1536 + 1536) + (256 * 1536 + 1536 + 1536 * 1536 + 1536) + (1536 * 9216 + 9216)
            + (4096 * 1536 + 1536 + 1536 * 1536 + 1536) + 2 * 1536 + (1536 * 64 + 64))
    total = sum(p.numel() for p in transformer.parameters())
    assert total == 30 * per_block + rest == 1_418_996_800
    # The wan preset's stages, 5 then 6 blocks, against VideoCrafter2's -16.9% and -36.2% (Table 1).
    cut = np.cumsum(vip_loop.PRESETS["wan"]["blocks"]) * per_block / total
    assert cut == pytest.approx([0.1636, 0.3600], abs=1e-4)
    assert abs(cut[-1] - (1 - 0.902 / 1.413)) < 0.005


def test_generate_equals_wan_pipeline_and_each_video_its_own_seed(tiny):
    frames, latents = tiny.generate(PROMPTS, [0, 1])
    assert frames.shape == (2, 9, 32, 32, 3) and frames.dtype == np.uint8 and latents.shape == (2, 16, 3, 4, 4)
    kw = dict(prompt=PROMPTS, negative_prompt=[wan.WAN_NEGATIVE_PROMPT] * 2, num_frames=9, height=32, width=32,
              num_inference_steps=4, guidance_scale=5.0, max_sequence_length=512)
    gens = lambda: [torch.Generator().manual_seed(s) for s in (0, 1)]
    ref_latents = tiny.pipe(**kw, generator=gens(), output_type="latent").frames
    torch.testing.assert_close(latents, ref_latents, atol=0, rtol=0)
    ref_frames = tiny.pipe(**kw, generator=gens(), output_type="np").frames         # floats in [0, 1]
    assert np.abs(np.round(ref_frames * 255).astype(int) - frames.astype(int)).max() <= 1
    one, one_latents = tiny.generate(PROMPTS[1:], [1])
    torch.testing.assert_close(one_latents[0], latents[1], atol=1e-5, rtol=0)
    assert not torch.allclose(latents[0], latents[1])


def test_noise_pred_and_encode_equal_diffusers(tiny):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 3, 4, 4, generator=g)
    t = torch.tensor([100.0, 900.0])
    embeds, _ = tiny.pipe.encode_prompt(PROMPTS, do_classifier_free_guidance=False, max_sequence_length=512,
                                        device="cpu")
    torch.testing.assert_close(tiny.encode(PROMPTS), embeds, atol=0, rtol=0)
    direct = tiny.pipe.transformer(hidden_states=x, timestep=t, encoder_hidden_states=embeds).sample
    torch.testing.assert_close(tiny.noise_pred(x, t, PROMPTS), direct, atol=0, rtol=0)
    # Each prompt goes through the encoder once per model, then comes from the cache.
    calls = []
    hook = tiny.pipe.text_encoder.register_forward_hook(lambda *a: calls.append(1))
    tiny.encode(PROMPTS + ["a new prompt", PROMPTS[0]])
    hook.remove()
    assert len(calls) == 1 and "a new prompt" in tiny.text_cache


def test_flow_forward_process_target_and_timesteps_by_hand(tiny):
    x_0, eps = torch.full((2, 16, 1, 2, 2), 2.0), torch.full((2, 16, 1, 2, 2), -1.0)
    x_t = tiny.add_noise(x_0, eps, torch.tensor([250.0, 1000.0]))
    assert torch.all(x_t[0] == 0.75 * 2 + 0.25 * -1) and torch.all(x_t[1] == -1.0)
    assert torch.all(tiny.training_target(x_0, eps, None) == -3.0)             # v = eps - x_0
    # index ~ U{0..999} from the same generator; s = 1 - index / 1000; t = 1000 * 5 s / (1 + 4 s)
    index = torch.randint(0, 1000, (5,), generator=torch.Generator().manual_seed(3))
    s = 1 - index.double() / 1000
    t = tiny.sample_timesteps(5, torch.Generator().manual_seed(3))
    torch.testing.assert_close(t, (1000 * 5 * s / (1 + 4 * s)).float())
    assert wan.flow_train_timesteps(1, None, num_train_timesteps=1000).item() <= 1000
    assert 1000 * wan.shifted_sigma(0.5, 5.0) == pytest.approx(833.333, abs=1e-3)
    # The U-Nets keep t ~ U{0..T-1} and their eps target: the same draws as before, from the same generator.
    unet_model = models.VideoModel.sample_timesteps(tiny, 4, torch.Generator().manual_seed(7))
    assert torch.equal(unet_model, torch.randint(0, 1000, (4,), generator=torch.Generator().manual_seed(7)))


def test_redpo_flow_form_against_an_independent_transcription(tiny, tmp_path):
    """Flow-DPO + SFT written out from the equations with the transformer called directly, against
    redpo.batch_loss with a pruned tiny-wan student."""
    student = models.load("tiny-wan")
    student.remove(["blocks.1"])
    g = torch.Generator().manual_seed(0)
    batch = {"x_w": torch.randn(2, 16, 3, 4, 4, generator=g), "x_l": torch.randn(2, 16, 3, 4, 4, generator=g),
             "eps": torch.randn(2, 16, 3, 4, 4, generator=g), "t": torch.tensor([833.25, 120.5]),
             "prompts": PROMPTS}
    beta, w_sft = 7.0, 300.0
    got, stats = redpo.batch_loss(student.noise_pred, tiny, batch, "redpo", beta, w_sft)

    embeds = tiny.pipe.encode_prompt(PROMPTS, do_classifier_free_guidance=False, max_sequence_length=512,
                                     device="cpu")[0]
    sigma = batch["t"].view(2, 1, 1, 1, 1) / 1000

    def v(transformer, x_0):   # the transformer on x_t = (1 - sigma) x_0 + sigma eps, and the target eps - x_0
        x_t = (1 - sigma) * x_0 + sigma * batch["eps"]
        with torch.no_grad():
            return transformer(x_t, batch["t"], embeds).sample, batch["eps"] - x_0

    (s_w, v_w), (s_l, v_l) = v(student.unet, batch["x_w"]), v(student.unet, batch["x_l"])
    (r_w, _), (r_l, _) = v(tiny.unet, batch["x_w"]), v(tiny.unet, batch["x_l"])
    mse = lambda a, b: ((a - b) ** 2).mean(dim=(1, 2, 3, 4))
    inside = -beta / 2 * ((mse(v_w, s_w) - mse(v_w, r_w)) - (mse(v_l, s_l) - mse(v_l, r_l)))
    expected = -F.logsigmoid(inside).mean() + w_sft * mse(s_w, r_w).mean()
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats["dpo"] == pytest.approx(-F.logsigmoid(inside).mean().item(), rel=1e-5)
    # One t and one eps per pair: pair_noise draws them from the model's own sampler.
    t0, e0 = redpo.pair_noise((16, 3, 4, 4), tiny.sample_timesteps, 0, 0, 5)
    t1, e1 = redpo.pair_noise((16, 3, 4, 4), tiny.sample_timesteps, 0, 0, 5)
    assert t0.shape == (1,) and t0.dtype == torch.float32 and torch.equal(t0, t1) and torch.equal(e0, e1)


def test_skip_remove_save_load(tiny, tmp_path):
    m = models.load("tiny-wan")
    x = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    base = m.noise_pred(x, 500.0, PROMPTS[:1]).detach()
    ids = {n: id(p) for n, p in m.unet.named_parameters()}
    with m.skip(["blocks.2"]):
        skipped = m.noise_pred(x, 500.0, PROMPTS[:1]).detach()
        assert {n: id(p) for n, p in m.unet.named_parameters()} == ids            # no copy
    torch.testing.assert_close(m.noise_pred(x, 500.0, PROMPTS[:1]), base, atol=0, rtol=0)
    assert not torch.allclose(skipped, base)
    before = m.num_parameters()
    m.remove(["blocks.2"])
    assert before["trainable"] - m.num_parameters()["trainable"] == block_parameters(24, 32) == 6_680
    torch.testing.assert_close(m.noise_pred(x, 500.0, PROMPTS[:1]), skipped, atol=0, rtol=0)
    assert "blocks.2" not in m.blocks() and len(m.blocks()) == 5
    with torch.no_grad():
        m.unet.proj_out.bias.add_(0.5)                                         # a trained weight
    m.save(tmp_path / "student")
    back = models.load("tiny-wan", path=str(tmp_path / "student"))
    assert back.removed == ["blocks.2"]
    torch.testing.assert_close(back.noise_pred(x, 500.0, PROMPTS[:1]), m.noise_pred(x, 500.0, PROMPTS[:1]),
                               atol=0, rtol=0)


def test_hub_layout_loads_in_wan_pipeline_and_models_load(tiny, tmp_path):
    pytest.importorskip("accelerate", reason="diffusers loads WanTransformer3DModel only with accelerate")
    from diffusers import WanPipeline
    path = tiny_checkpoints.save_tiny_wan_hub_layout(str(tmp_path / "wan"))
    assert json.load(open(tmp_path / "wan" / "model_index.json"))["transformer"][1] == "WanTransformer3DModel"
    pipe = WanPipeline.from_pretrained(path)
    pipe.text_encoder.to(torch.bfloat16)                     # as load("wan") runs UMT5 (Wan's t5_dtype)
    m = models.load("wan", path=path)
    assert m.pipe.text_encoder.dtype == torch.bfloat16 and m.unet.dtype == torch.float32
    for a, b in ((m.unet, tiny.unet), (pipe.transformer, tiny.unet), (m.pipe.vae, tiny.pipe.vae)):
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    _, latents = m.generate(PROMPTS[:1], [4], num_frames=9, height=32, width=32, steps=2)   # wan defaults to 81 x 480 x 832
    ref = pipe(prompt=PROMPTS[:1], negative_prompt=wan.WAN_NEGATIVE_PROMPT, num_frames=9, height=32, width=32,
               num_inference_steps=2, guidance_scale=5.0, generator=[torch.Generator().manual_seed(4)],
               output_type="latent").frames
    torch.testing.assert_close(latents, ref, atol=0, rtol=0)
    with pytest.raises(models.UserError, match="not a Wan checkpoint"):
        models.load("wan", path=str(tmp_path))


def test_videoscore_samples_wans_81_frames_to_48():
    # VideoScore-v1.1 reads 48 frames: arange(0, 81, 81 / 48) truncated, i.e. floor(1.6875 i).
    idx = sample_frame_indices(81, 48)
    assert len(idx) == 48 and list(idx) == [math.floor(1.6875 * i) for i in range(48)]
    assert idx[-1] == 79 and len(set(idx)) == 48


def test_the_loop_finishes_on_tiny_wan(tmp_path):
    vip_loop.main(["--model", "tiny-wan", "--reward", "pixel", "--stages", "1", "--blocks", "1",
                   "--eval_prompts", "1", "--pool_prompts", "2", "--steps", "2", "--out", str(tmp_path / "run")])
    assert (tmp_path / "run" / "stage_1" / "DONE").is_file() and (tmp_path / "run" / "report.md").is_file()
    config = json.load(open(tmp_path / "run" / "config.json"))
    assert config["gradient_checkpointing"] is True and config["w_sft"] == 1e6
