"""evaluate.py: confidence intervals, TFLOPs, the report, and the CLI end to end."""
import json
import math

from infra import cost, disk

import numpy as np
import pytest
import torch

import evaluate
import models
from analysis import report
from analysis import stats
from conftest import run_script
from rewards import DIMENSIONS


# --- statistics ---------------------------------------------------------------------------------

def test_t_quantiles_match_tables():
    # Two-sided 95% Student-t critical values from standard tables.
    for df, t in [(1, 12.7062047), (2, 4.3026527), (4, 2.7764451), (9, 2.2621572), (30, 2.0422725),
                  (120, 1.9799304), (1000, 1.9623391)]:
        assert stats.t_quantile(df) == pytest.approx(t, abs=1e-6)
    assert stats.t_two_sided_cdf(1.0, 1) == pytest.approx(0.5)              # Cauchy: P(|T| < 1) = 1/2
    assert stats.t_two_sided_cdf(2.0, 2) == pytest.approx(2 / math.sqrt(6))  # df 2: t / sqrt(2 + t^2)


def test_mean_ci_known_sample():
    mean, half = stats.mean_ci([1, 2, 3, 4, 5])
    # s = sqrt(2.5), se = s / sqrt(5) = sqrt(0.5), t_(0.975, 4) = 2.776445
    assert mean == 3.0 and half == pytest.approx(2.776445105 * math.sqrt(0.5), rel=1e-8)
    mean, half = stats.mean_ci([2.0, 4.0, float("nan")])          # NaN left out: n = 2
    assert mean == 3.0 and half == pytest.approx(12.7062047 * math.sqrt(2) / math.sqrt(2), rel=1e-7)
    assert stats.mean_ci([7.0])[0] == 7.0 and math.isnan(stats.mean_ci([7.0])[1])
    assert all(math.isnan(x) for x in stats.mean_ci([float("nan")]))


# --- cost ---------------------------------------------------------------------------------------

def test_measure_tflops_counts_attention_and_drops_with_pruning():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    model = models.load("tiny", device="cpu")
    counted = cost.measure_tflops(model, num_frames=8, height=32, width=32, steps=4, guidance=7.5)
    assert counted["tflops"] == pytest.approx(counted["unet_forward_tflops"] * 4 * 2)
    no_cfg = cost.measure_tflops(model, num_frames=8, height=32, width=32, steps=4, guidance=1.0)
    assert no_cfg["tflops"] == pytest.approx(counted["tflops"] / 2)
    # Independent reference: the math attention backend runs attention as plain matmuls, which
    # FlopCounterMode counts on its own.
    x_t, embeds = torch.zeros(1, 4, 8, 16, 16), model.encode([""])
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.noise_pred(x_t, torch.tensor([500]), embeds)
    assert counted["unet_forward_tflops"] == pytest.approx(counter.get_total_flops() / 1e12, rel=1e-9)
    model.remove([next(iter(model.blocks()))])
    pruned = cost.measure_tflops(model, num_frames=8, height=32, width=32, steps=4, guidance=7.5)
    assert pruned["tflops"] < counted["tflops"]


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
    disk.write_json(str(run / "config.json"), {"method": "redpo", "model": "animatediff"})
    dims = DIMENSIONS
    fake_eval(run / "full" / "eval.json", dict(zip(dims, [2.575, 2.505, 2.684, 2.486])), 453_209_280)
    fake_eval(run / "stage_1" / "eval_pruned.json", dict(zip(dims, [2.561, 2.494, 2.713, 2.488])), 309_000_000, shade=100)
    fake_eval(run / "stage_1" / "eval.json", dict(zip(dims, [2.579, 2.524, 2.685, 2.499])), 309_000_000, shade=200)
    fake_eval(run / "stage_2" / "eval_pruned.json", dict(zip(dims, [2.553, 2.478, 2.718, 2.470])), 219_000_000)
    assert (run / "stage_1" / "videos_pruned.npz").is_file() and (run / "stage_1" / "videos.npz").is_file()

    text = report.write_report([str(run)], str(run / "report.md"))
    assert (run / "report.md").read_text() == text
    assert "### ReDPO (animatediff, 1 seed: 0)" in text
    table = [[c.strip() for c in line.split("|")[1:-1]] for line in text.split("## Methods")[0].splitlines()
             if line.startswith(("| Full ", "| Stage ")) and line.split("|")[1].strip() not in ("Stage",)
             and ":" not in line.split("|")[1]]
    rows = {(c[0], c[1]): c[2:] for c in table}
    assert list(rows) == [("Full", "-"), ("Stage 1", "Pruned"), ("Stage 1", "ReDPO"), ("Stage 2", "Pruned")]
    files = {("Full", "-"): "full/eval.json", ("Stage 1", "Pruned"): "stage_1/eval_pruned.json",
             ("Stage 1", "ReDPO"): "stage_1/eval.json", ("Stage 2", "Pruned"): "stage_2/eval_pruned.json"}
    for key, cells in rows.items():
        result = json.loads((run / files[key]).read_text())
        expected = [f"{result['scores'][d]['mean']:.3f}" for d in dims]
        expected += [f"{result['scores']['total']['mean']:.3f}", "n/a", "2", f"{result['params']['trainable'] / 1e6:.3f}"]
        assert cells == expected
    assert rows[("Full", "-")][-1] == "453.209"
    # The grid, for stage 1 only: teacher | pruned | trained, each 8 x 6 clip scaled 22x (6 * 22 =
    # 132 >= 128 px), under a 20-px label band, 4-px white gaps: 20 + 176 rows, 3 * 132 + 2 * 4 columns.
    import imageio.v2 as imageio
    frames = imageio.mimread(str(run / "grids" / "run_stage1_0.gif"))
    assert len(frames) == 3 and frames[0].shape[:2] == (196, 404)
    assert (run / "grids" / "run_stage1_0.mp4").is_file() and not (run / "grids" / "run_stage2_0.gif").exists()
    grid = frames[1][..., :3]                                        # frame 1: shade + 10
    assert grid[20, 0, 0] == grid[195, 131, 0] == 10 and grid[100, 132, 0] == grid[100, 135, 0] == 255
    assert grid[20, 136, 0] == grid[195, 267, 0] == 110 and grid[20, 272, 0] == grid[195, 403, 0] == 210
    bands = [grid[:20, x:x + 132] for x in (0, 136, 272)]            # black text on white, three words
    assert all((b == 0).any() and (b == 255).mean() > 0.7 for b in bands)
    assert not np.array_equal(bands[0], bands[1]) and not np.array_equal(bands[1], bands[2])


def test_grid_scales_clips_up_with_nearest_neighbour_and_labels_them():
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8) for _ in range(3)]
    grid = report.video_grid(clips)
    band = 2 * max(10, 128 // 24)                                    # 20 px above clips of 128 px
    assert grid.shape == (2, band + 128, 3 * 128 + 2 * 4, 3)
    for i, clip in enumerate(clips):
        x = i * (128 + 4)
        assert np.array_equal(grid[:, band:, x:x + 128], clip.repeat(8, axis=1).repeat(8, axis=2))
    assert np.array_equal(report.video_grid(clips, labels=None)[:, :band], np.full((2, band, 392, 3), 255))
    big = report.video_grid([np.zeros((1, 320, 512, 3), np.uint8)])  # already large: not scaled
    assert big.shape == (1, 2 * (320 // 24) + 320, 512, 3)
    odd = report.video_grid([np.zeros((1, 129, 129, 3), np.uint8)])   # encoders want even sides
    assert odd.shape[1] % 2 == 0 and odd.shape[2] % 2 == 0


# --- the CLI, end to end ------------------------------------------------------------------------

def run_cli(*args):
    return run_script("evaluate.py", *args)


def test_cli_evaluates_tiny_and_writes_report(tmp_path):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([{"prompt": "a red car driving on a road", "static": False},
                                   {"prompt": "a quiet stone church", "static": True},
                                   {"prompt": "not used", "static": False}]))
    run = tmp_path / "run"
    proc = run_cli("--model", "tiny", "--reward", "pixel", "--prompts", str(prompts), "--eval_prompts", "2",
                   "--eval_seeds", "2", "--out", str(run / "full"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((run / "full" / "eval.json").read_text())
    # prompt i at seed index j: seed 1000 j + i, seed index first (vip_loop.py's eval set)
    assert result["num_videos"] == 4 and [v["seed"] for v in result["per_video"]] == [0, 1, 1000, 1001]
    assert [v["prompt"] for v in result["per_video"]] == ["a red car driving on a road", "a quiet stone church"] * 2
    assert [v["scores"]["dynamic_degree"] for v in result["per_video"]][1::2] == [0.0, 0.0]
    assert all(v["scores"]["dynamic_degree"] > 0.0 for v in result["per_video"][0::2])
    assert result["scores"]["text_alignment"]["mean"] is None                 # pixels: no text alignment
    per = [v["scores"]["total"] for v in result["per_video"]]
    assert result["scores"]["total"]["mean"] == pytest.approx(np.mean(per))
    assert result["scores"]["total"]["ci95"] == pytest.approx(3.1824463 * np.std(per, ddof=1) / np.sqrt(4))  # t(3)
    assert result["params"]["prunable"] == result["params"]["trainable"] > 0
    assert result["tflops"]["tflops"] > 0 and result["latency"]["seconds_per_video"] > 0
    with np.load(run / "full" / "videos.npz") as z:
        assert z["frames"].shape == (4, 8, 16, 16, 3) and z["frames"].dtype == np.uint8
        assert list(z["seeds"]) == [0, 1, 1000, 1001]
    # The same videos stand in for a stage, so the report has a full row, a stage and a grid.
    (run / "stage_1").mkdir()
    for src, dst in [("eval.json", "eval_pruned.json"), ("eval.json", "eval.json"),
                     ("videos.npz", "videos_pruned.npz"), ("videos.npz", "videos.npz")]:
        (run / "stage_1" / dst).write_bytes((run / "full" / src).read_bytes())
    disk.write_json(str(run / "config.json"), {"method": "sft"})
    proc = run_cli("--report", str(run))
    assert proc.returncode == 0, proc.stderr
    report = (run / "report.md").read_text()
    assert "### SFT (tiny, 1 seed: 0)" in report and "| Stage 1 | SFT |" in report and "not VideoScore" in report
    assert (run / "grids" / "run_stage1_0.gif").is_file()


def test_cli_help_and_user_errors(tmp_path):
    assert run_cli("--help").returncode == 0
    proc = run_cli("--model", "tiny", "--reward", "clip", "--out", str(tmp_path))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("error: unknown reward 'clip': choose one of videoscore, pixel")
