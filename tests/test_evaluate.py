"""evaluate.py: prompt files, confidence intervals, the pixel proxy, the VideoScore head on a tiny
saved checkpoint, TFLOPs, the report, and the CLI end to end (issue 5)."""
import json
import math
import os

import numpy as np
import pytest
import torch

import evaluate
import models
from models import UserError
from conftest import run_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- prompt files -------------------------------------------------------------------------------

def test_read_prompts_txt_csv_json(tmp_path):
    (tmp_path / "p.txt").write_text("a red car\n\n  a blue boat  \n")
    assert evaluate.read_prompts(str(tmp_path / "p.txt")) == [
        {"prompt": "a red car", "static": None}, {"prompt": "a blue boat", "static": None}]
    # WebVid's csv names its caption column "name"; static labels in several spellings, empty = unlabelled.
    (tmp_path / "webvid.csv").write_text('videoid,name,static\n1,"A cat, sleeping",true\n2,Waves,False\n3,Sky,\n')
    assert evaluate.read_prompts(str(tmp_path / "webvid.csv")) == [
        {"prompt": "A cat, sleeping", "static": True}, {"prompt": "Waves", "static": False},
        {"prompt": "Sky", "static": None}]
    (tmp_path / "p.json").write_text(json.dumps(["a dog", {"caption": "a tree", "static": "static"}]))
    assert evaluate.read_prompts(str(tmp_path / "p.json")) == [
        {"prompt": "a dog", "static": None}, {"prompt": "a tree", "static": True}]
    (tmp_path / "bad.csv").write_text("prompt,static\na cat,maybe\n")
    with pytest.raises(UserError, match="bad.csv:2"):
        evaluate.read_prompts(str(tmp_path / "bad.csv"))
    (tmp_path / "p.yaml").write_text("- a cat\n")
    with pytest.raises(UserError, match="unknown prompt file type"):
        evaluate.read_prompts(str(tmp_path / "p.yaml"))
    with pytest.raises(UserError, match="no such prompt file"):
        evaluate.read_prompts(str(tmp_path / "missing.txt"))


def test_default_eval_prompts():
    rows = evaluate.read_prompts(evaluate.DEFAULT_PROMPTS)
    assert 60 <= len(rows) <= 100
    assert all(r["static"] in (True, False) for r in rows)
    assert 0.25 <= sum(r["static"] for r in rows) / len(rows) <= 0.4
    assert len({r["prompt"] for r in rows}) == len(rows)
    assert all(5 <= len(r["prompt"].split()) <= 25 for r in rows)     # the paper's 5-25 words (Sec. 3.3)


# --- statistics ---------------------------------------------------------------------------------

def test_t_quantiles_match_tables():
    # Two-sided 95% Student-t critical values from standard tables.
    for df, t in [(1, 12.7062047), (2, 4.3026527), (4, 2.7764451), (9, 2.2621572), (30, 2.0422725),
                  (120, 1.9799304), (1000, 1.9623391)]:
        assert evaluate.t_quantile(df) == pytest.approx(t, abs=1e-6)
    assert evaluate.t_two_sided_cdf(1.0, 1) == pytest.approx(0.5)              # Cauchy: P(|T| < 1) = 1/2
    assert evaluate.t_two_sided_cdf(2.0, 2) == pytest.approx(2 / math.sqrt(6))  # df 2: t / sqrt(2 + t^2)


def test_mean_ci_known_sample():
    mean, half = evaluate.mean_ci([1, 2, 3, 4, 5])
    # s = sqrt(2.5), se = s / sqrt(5) = sqrt(0.5), t_(0.975, 4) = 2.776445
    assert mean == 3.0 and half == pytest.approx(2.776445105 * math.sqrt(0.5), rel=1e-8)
    mean, half = evaluate.mean_ci([2.0, 4.0, float("nan")])          # NaN left out: n = 2
    assert mean == 3.0 and half == pytest.approx(12.7062047 * math.sqrt(2) / math.sqrt(2), rel=1e-7)
    assert evaluate.mean_ci([7.0])[0] == 7.0 and math.isnan(evaluate.mean_ci([7.0])[1])
    assert all(math.isnan(x) for x in evaluate.mean_ci([float("nan")]))


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
    s = {name: evaluate.pixel_scores(v) for name, v in
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
    reward = evaluate.load_reward("pixel")
    tex = texture(2)
    moving = as_video([np.roll(tex, 2 * f, axis=0) for f in range(6)])
    videos = np.concatenate([moving] * 3)
    out = reward(videos, ["a", "b", "c"], static=[True, False, None])
    raw = evaluate.pixel_scores(videos)
    assert out["dynamic_degree"][0] == 0.0 and out["dynamic_degree"][1] == out["dynamic_degree"][2] > 0
    # total: the mean of the dimensions it measures (text alignment is NaN for pixels), after the rule.
    expected = (raw["visual_quality"] + raw["temporal_consistency"] + np.array([0, *raw["dynamic_degree"][1:]])) / 3
    np.testing.assert_allclose(out["total"], expected, rtol=1e-6)
    assert "pixels cannot tell" in reward.note
    with pytest.raises(ValueError, match="uint8"):
        reward(videos.astype(np.float32), ["a", "b", "c"])
    with pytest.raises(UserError, match="unknown reward"):
        evaluate.load_reward("clip")


# --- VideoScore: the Idefics2 regression head on a tiny checkpoint in the hub layout ------------

def test_sample_frame_indices():
    np.testing.assert_array_equal(evaluate.sample_frame_indices(8, 16), np.arange(8))
    np.testing.assert_array_equal(evaluate.sample_frame_indices(96, 48), np.arange(0, 96, 2))
    idx = evaluate.sample_frame_indices(100, 48)
    assert len(idx) == 48 and idx[0] == 0 and idx[-1] == 97 and np.all(np.diff(idx) >= 2)
    assert evaluate.VIDEOSCORE_MAX_FRAMES == {"TIGER-Lab/VideoScore": 16, "TIGER-Lab/VideoScore-v1.1": 48}
    query = evaluate.videoscore_query("a cat", 3)
    assert query.endswith('the text prompt is "a cat",\nall the frames of video are as follows:\n<image> <image> <image> ')


def test_videoscore_head_loads_tiny_checkpoint(tmp_path):
    from safetensors.torch import load_file, save_file
    path = evaluate.save_tiny_videoscore(str(tmp_path / "videoscore"))
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

    reward = evaluate.load_reward("videoscore", path=path, batch_size=3)
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
    inputs = scorer.processor(text=[evaluate.videoscore_query("a cat", 8)], return_tensors="pt")
    assert (inputs["input_ids"] == scorer.model.config.image_token_id).sum() == 8 * 4

    # Order: with the weights zeroed the head outputs its bias, 1..5, in VIDEOSCORE_ASPECTS order.
    with torch.no_grad():
        scorer.model.score.weight.zero_()
    out = reward(videos, prompts, static=[False, True, None])
    for i, aspect in enumerate(evaluate.VIDEOSCORE_ASPECTS):
        expected = [3.0, 0.0, 3.0] if aspect == "dynamic_degree" else [i + 1.0] * 3   # static prompt: 0
        np.testing.assert_allclose(out[aspect], expected, rtol=1e-6)
    np.testing.assert_allclose(out["total"], [2.5, 1.75, 2.5], rtol=1e-6)   # mean of the four, not factual


def test_videoscore_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such VideoScore directory"):
        evaluate.load_reward("videoscore", path=str(tmp_path / "nowhere"))


# --- cost ---------------------------------------------------------------------------------------

def test_measure_tflops_counts_attention_and_drops_with_pruning():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    model = models.load("tiny", device="cpu")
    cost = evaluate.measure_tflops(model, num_frames=8, height=32, width=32, steps=4, guidance=7.5)
    assert cost["tflops"] == pytest.approx(cost["unet_forward_tflops"] * 4 * 2)
    no_cfg = evaluate.measure_tflops(model, num_frames=8, height=32, width=32, steps=4, guidance=1.0)
    assert no_cfg["tflops"] == pytest.approx(cost["tflops"] / 2)
    # Independent reference: the math attention backend runs attention as plain matmuls, which
    # FlopCounterMode counts on its own.
    x_t, embeds = torch.zeros(1, 4, 8, 16, 16), model.encode([""])
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.noise_pred(x_t, torch.tensor([500]), embeds)
    assert cost["unet_forward_tflops"] == pytest.approx(counter.get_total_flops() / 1e12, rel=1e-9)
    model.remove([next(iter(model.blocks()))])
    pruned = evaluate.measure_tflops(model, num_frames=8, height=32, width=32, steps=4, guidance=7.5)
    assert pruned["tflops"] < cost["tflops"]


# --- the report ---------------------------------------------------------------------------------

def fake_eval(path, means, prunable, prompts=("p0", "p1"), seeds=(0, 1), shade=0):
    scores = {k: {"mean": m, "ci95": 0.01, "n": 2} for k, m in means.items()}
    scores["total"] = {"mean": float(np.mean(list(means.values()))), "ci95": 0.02, "n": 2}
    result = {"model": "tiny", "reward": "videoscore", "reward_note": "VideoScore.", "num_videos": 2,
              "generation": {"fps": 4}, "scores": scores,
              "params": {"total": 10 ** 6, "unet": 10 ** 6, "prunable": prunable, "trainable": prunable,
                         "removed_blocks": 0},
              "tflops": {"tflops": 0.5}, "latency": {"seconds_per_video": 1.0}, "per_video": [],
              "videos": {"prompts": list(prompts), "seeds": list(seeds),
                         "frames": (shade + 10 * np.arange(3)[None, :, None, None, None]
                                    + np.zeros((2, 3, 8, 6, 3))).astype(np.uint8)}}   # frame f: shade + 10 f
    evaluate.save_eval(result, str(path))


def test_report_matches_eval_json(tmp_path):
    run = tmp_path / "run"
    (run / "full").mkdir(parents=True)
    (run / "stage_1").mkdir()
    (run / "stage_2").mkdir()
    models.write_json(str(run / "config.json"), {"method": "redpo", "model": "animatediff"})
    dims = evaluate.DIMENSIONS
    fake_eval(run / "full" / "eval.json", dict(zip(dims, [2.575, 2.505, 2.684, 2.486])), 453_209_280)
    fake_eval(run / "stage_1" / "eval_pruned.json", dict(zip(dims, [2.561, 2.494, 2.713, 2.488])), 309_000_000, shade=100)
    fake_eval(run / "stage_1" / "eval.json", dict(zip(dims, [2.579, 2.524, 2.685, 2.499])), 309_000_000, shade=200)
    fake_eval(run / "stage_2" / "eval_pruned.json", dict(zip(dims, [2.553, 2.478, 2.718, 2.470])), 219_000_000)
    assert (run / "stage_1" / "videos_pruned.npz").is_file() and (run / "stage_1" / "videos.npz").is_file()

    text = evaluate.write_report([str(run)], str(run / "report.md"))
    assert (run / "report.md").read_text() == text
    table = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| animatediff")]
    rows = {(c[1].strip(), c[2].strip()): [c.strip() for c in c[3:]] for c in table}
    assert list(rows) == [("Full", "-"), ("Stage 1", "Pruned"), ("Stage 1", "ReDPO"), ("Stage 2", "Pruned")]
    files = {("Full", "-"): "full/eval.json", ("Stage 1", "Pruned"): "stage_1/eval_pruned.json",
             ("Stage 1", "ReDPO"): "stage_1/eval.json", ("Stage 2", "Pruned"): "stage_2/eval_pruned.json"}
    for key, cells in rows.items():
        result = json.loads((run / files[key]).read_text())
        expected = [f"{result['scores'][d]['mean']:.3f}" for d in dims]
        expected += [f"{result['scores']['total']['mean']:.3f}", f"{result['params']['trainable'] / 1e6:.3f}"]
        assert cells == expected
    assert rows[("Full", "-")][-1] == "453.209"
    # The grid: teacher | pruned | trained side by side, 2-pixel white gaps, for stage 1 only.
    import imageio.v2 as imageio
    frames = imageio.mimread(str(run / "grids" / "run_stage1_0.gif"))
    assert len(frames) == 3 and frames[0].shape[:2] == (8, 3 * 6 + 2 * 2)
    assert (run / "grids" / "run_stage1_0.mp4").is_file() and not (run / "grids" / "run_stage2_0.gif").exists()
    grid = frames[1][..., :3]
    assert grid[0, 0, 0] == 10 and grid[0, 6, 0] == 255 and grid[0, 8, 0] == 110 and grid[0, 16, 0] == 210


# --- the CLI, end to end ------------------------------------------------------------------------

def run_cli(*args):
    return run_script("evaluate.py", *args)


def test_cli_evaluates_tiny_and_writes_report(tmp_path):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([{"prompt": "a red car driving on a road", "static": False},
                                   {"prompt": "a quiet stone church", "static": True},
                                   {"prompt": "not used", "static": False}]))
    run = tmp_path / "run"
    proc = run_cli("--model", "tiny", "--reward", "pixel", "--prompts", str(prompts), "--limit", "2",
                   "--out", str(run / "full"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((run / "full" / "eval.json").read_text())
    assert result["num_videos"] == 2 and [v["seed"] for v in result["per_video"]] == [0, 1]
    assert result["per_video"][1]["scores"]["dynamic_degree"] == 0.0
    assert result["per_video"][0]["scores"]["dynamic_degree"] > 0.0
    assert result["scores"]["text_alignment"]["mean"] is None                 # pixels: no text alignment
    per = [v["scores"]["total"] for v in result["per_video"]]
    assert result["scores"]["total"]["mean"] == pytest.approx(np.mean(per))
    assert result["scores"]["total"]["ci95"] == pytest.approx(12.7062047 * np.std(per, ddof=1) / np.sqrt(2))
    assert result["params"]["prunable"] == result["params"]["trainable"] > 0
    assert result["tflops"]["tflops"] > 0 and result["latency"]["seconds_per_video"] > 0
    with np.load(run / "full" / "videos.npz") as z:
        assert z["frames"].shape == (2, 8, 32, 32, 3) and z["frames"].dtype == np.uint8
        assert list(z["seeds"]) == [0, 1]
    # The same videos stand in for a stage, so the report has a full row, a stage and a grid.
    (run / "stage_1").mkdir()
    for src, dst in [("eval.json", "eval_pruned.json"), ("eval.json", "eval.json"),
                     ("videos.npz", "videos_pruned.npz"), ("videos.npz", "videos.npz")]:
        (run / "stage_1" / dst).write_bytes((run / "full" / src).read_bytes())
    models.write_json(str(run / "config.json"), {"method": "sft"})
    proc = run_cli("--report", str(run))
    assert proc.returncode == 0, proc.stderr
    report = (run / "report.md").read_text()
    assert "| tiny | Stage 1 | SFT |" in report and "not VideoScore" in report
    assert (run / "grids" / "run_stage1_0.gif").is_file()


def test_cli_help_and_user_errors(tmp_path):
    assert run_cli("--help").returncode == 0
    proc = run_cli("--model", "tiny", "--reward", "clip", "--out", str(tmp_path))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("error: unknown reward 'clip': choose one of videoscore, pixel")
