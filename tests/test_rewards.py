"""rewards.py: the pixel proxy, the static rule and the total, and the VideoScore head on a tiny
saved checkpoint in the hub layout."""
import os

from infra.cli import UserError

import numpy as np
import pytest
import torch

import rewards
import tiny_checkpoints


# --- the pixel proxy ----------------------------------------------------------------------------

def texture(seed, size=48, blur=2):
    """A smooth random grey texture in [0, 255] (box-blurred noise)."""
    x = np.random.RandomState(seed).rand(size + 2 * blur, size + 2 * blur)
    for axis in (0, 1):
        x = sum(np.roll(x, s, axis) for s in range(-blur, blur + 1)) / (2 * blur + 1)
    x = x[blur:-blur, blur:-blur]
    x = (x - x.min()) / (x.max() - x.min()) * 255
    return np.repeat(x[..., None], 3, -1)


def as_video(frames):
    return np.clip(np.stack(frames), 0, 255).round().astype(np.uint8)[None]      # (1, F, H, W, 3)


def test_pixel_proxy_moves_the_right_way():
    tex = texture(0)
    static = as_video([tex] * 8)
    smooth = as_video([np.roll(tex, f, axis=1) for f in range(8)])          # slides 1 px a frame
    flicker = as_video([tex if f % 2 == 0 else texture(1) for f in range(8)])
    blurred = as_video([texture(0, blur=6)] * 8)
    s = {name: rewards.pixel_scores(v) for name, v in
         [("static", static), ("smooth", smooth), ("flicker", flicker), ("blurred", blurred)]}
    assert s["static"]["dynamic_degree"][0] == 0.0                            # exactly
    assert s["static"]["temporal_consistency"][0] == pytest.approx(1.0, abs=1e-6)
    assert s["smooth"]["dynamic_degree"][0] > 0.01
    assert s["flicker"]["temporal_consistency"][0] < s["smooth"]["temporal_consistency"][0] - 0.3
    assert s["blurred"]["visual_quality"][0] < s["static"]["visual_quality"][0] - 0.05
    assert np.isnan(s["smooth"]["text_alignment"][0])
    for v in s.values():
        for d in ("visual_quality", "temporal_consistency", "dynamic_degree"):
            assert 0.0 <= v[d][0] <= 1.0


def test_reward_static_rule_and_total():
    reward = rewards.load_reward("pixel")
    tex = texture(2)
    moving = as_video([np.roll(tex, 2 * f, axis=0) for f in range(6)])
    videos = np.concatenate([moving] * 3)
    out = reward(videos, ["a", "b", "c"], static=[True, False, None])
    raw = rewards.pixel_scores(videos)
    assert out["dynamic_degree"][0] == 0.0 and out["dynamic_degree"][1] == out["dynamic_degree"][2] > 0
    # total: the mean of the dimensions it measures (text alignment is NaN for pixels), after the rule.
    expected = (raw["visual_quality"] + raw["temporal_consistency"] + np.array([0, *raw["dynamic_degree"][1:]])) / 3
    np.testing.assert_allclose(out["total"], expected, rtol=1e-6)
    assert "pixels cannot tell" in reward.note
    with pytest.raises(ValueError, match="uint8"):
        reward(videos.astype(np.float32), ["a", "b", "c"])
    with pytest.raises(UserError, match="unknown reward"):
        rewards.load_reward("clip")


# --- VideoScore: the Idefics2 regression head on a tiny checkpoint in the hub layout ------------

def test_sample_frame_indices():
    np.testing.assert_array_equal(rewards.sample_frame_indices(8, 16), np.arange(8))
    np.testing.assert_array_equal(rewards.sample_frame_indices(96, 48), np.arange(0, 96, 2))
    idx = rewards.sample_frame_indices(100, 48)
    assert len(idx) == 48 and idx[0] == 0 and idx[-1] == 97 and np.all(np.diff(idx) >= 2)
    assert rewards.VIDEOSCORE_MAX_FRAMES == {"TIGER-Lab/VideoScore": 16, "TIGER-Lab/VideoScore-v1.1": 48}
    query = rewards.videoscore_query("a cat", 3)
    assert query.endswith('the text prompt is "a cat",\nall the frames of video are as follows:\n<image> <image> <image> ')


def test_videoscore_head_loads_tiny_checkpoint(tmp_path):
    from safetensors.torch import load_file, save_file
    path = tiny_checkpoints.save_tiny_videoscore(str(tmp_path / "videoscore"))
    weights = os.path.join(path, "model.safetensors")
    state = load_file(weights)
    # The hub checkpoint's names: the Idefics2 backbone under model.*, the head under score.*.
    assert {k.split(".")[0] for k in state} == {"model", "score"}
    for k in ("model.vision_model.embeddings.patch_embedding.weight", "model.connector.perceiver_resampler.latents",
              "model.connector.modality_projection.gate_proj.weight", "model.text_model.embed_tokens.weight",
              "model.text_model.layers.0.self_attn.q_proj.weight", "score.weight", "score.bias"):
        assert k in state
    # A head whose outputs vary with the input, so that padding mistakes show.
    state["score.weight"] = state["score.weight"] * 50
    state["score.bias"] = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    save_file(state, weights, metadata={"format": "pt"})

    reward = rewards.load_reward("videoscore", path=path, batch_size=3)
    scorer = reward.score_fn
    assert scorer.max_frames == 48 and scorer.processor.image_processor.do_image_splitting is False
    rng = np.random.RandomState(0)
    videos = rng.randint(0, 256, (3, 8, 32, 48, 3), dtype=np.uint8)
    prompts = ["a cat", "a much longer prompt about a dog running through a park", "sky"]
    batched = scorer.scores(videos, prompts)
    assert batched.shape == (3, 5) and batched.dtype == np.float32
    one_by_one = np.concatenate([scorer.scores(videos[i:i + 1], prompts[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-5)
    assert np.abs(batched[0] - batched[1]).max() > 1e-3                  # the head does see the input
    # One <image> per frame, each expanded to image_seq_len (4) tokens of the tiny perceiver.
    inputs = scorer.processor(text=[rewards.videoscore_query("a cat", 8)], return_tensors="pt")
    assert (inputs["input_ids"] == scorer.model.config.image_token_id).sum() == 8 * 4

    # Order: with the weights zeroed the head outputs its bias, 1..5, in VIDEOSCORE_ASPECTS order.
    with torch.no_grad():
        scorer.model.score.weight.zero_()
    out = reward(videos, prompts, static=[False, True, None])
    for i, aspect in enumerate(rewards.VIDEOSCORE_ASPECTS):
        expected = [3.0, 0.0, 3.0] if aspect == "dynamic_degree" else [i + 1.0] * 3   # static prompt: 0
        np.testing.assert_allclose(out[aspect], expected, rtol=1e-6)
    np.testing.assert_allclose(out["total"], [2.5, 1.75, 2.5], rtol=1e-6)   # mean of the four, not factual


def test_videoscore_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such VideoScore directory"):
        rewards.load_reward("videoscore", path=str(tmp_path / "nowhere"))
