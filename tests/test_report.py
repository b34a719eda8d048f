"""report.py and stats.py (issue 13): paired differences against a hand computation, training seeds,
methods side by side, the paper's claims with a verdict, the plots."""
import math

import pytest

import report
import runtime
import stats
from rewards import DIMENSIONS

KEYS = list(DIMENSIONS) + ["total"]


def videos(values, prompts=("p0", "p1", "p2"), seeds=(0, 0, 0)):
    """per_video entries with every dimension equal to values[i] (so total = values[i])."""
    return [{"prompt": p, "seed": s, "static": False, "scores": {k: v for k in KEYS}}
            for p, s, v in zip(prompts, seeds, values)]


# --- stats --------------------------------------------------------------------------------------

def test_paired_difference_by_hand():
    before = videos([0.5, 0.6, 0.7])
    after = videos([0.6, 0.72, 0.84])[::-1]                    # order does not matter: (prompt, seed) does
    d = stats.paired_ci(after, before, ["total"])["total"]
    # differences 0.1, 0.12, 0.14: mean 0.12, sd 0.02, t_2 = 4.302653 -> 4.302653 * 0.02 / sqrt(3)
    assert d["n"] == 3 and d["mean"] == pytest.approx(0.12)
    assert d["ci95"] == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-5)
    # The rows' own intervals (+-0.248 each) overlap; paired, the difference is clear.
    assert stats.mean_ci([0.5, 0.6, 0.7])[1] > 0.12 and stats.verdict(d, +1) == "holds"


def test_paired_difference_skips_unmatched_and_null_and_pools_runs():
    before = videos([0.5, 0.6, 0.7])
    after = videos([0.6, 0.8, 1.0], seeds=(0, 0, 1))            # p2 has another seed: not the same video
    after[1]["scores"]["visual_quality"] = None                  # a dimension the reward did not measure
    diffs = stats.paired_differences(after, before, ["total", "visual_quality"])
    assert diffs["total"] == pytest.approx([0.1, 0.2]) and diffs["visual_quality"] == pytest.approx([0.1])
    pooled = stats.paired_differences([videos([1, 1, 1]), videos([2, 2, 2])],
                                      [videos([0, 0, 0]), videos([0, 0, 0])], ["total"])
    assert pooled["total"] == [1, 1, 1, 2, 2, 2]


def test_verdict_words():
    assert stats.verdict({"mean": 0.05, "ci95": 0.02}, +1) == "holds"
    assert stats.verdict({"mean": 0.05, "ci95": 0.02}, -1) == "does not hold"
    assert stats.verdict({"mean": -0.05, "ci95": 0.02}, -1) == "holds"
    assert stats.verdict({"mean": 0.01, "ci95": 0.02}, +1) == "cannot tell"
    assert stats.verdict({"mean": 0.01, "ci95": float("nan")}, +1) == "cannot tell"


# --- the report ---------------------------------------------------------------------------------

def fake_eval(path, values, trainable=100):
    per = videos(values)
    scores = {k: {"mean": sum(values) / len(values), "ci95": 0.1, "n": len(values)} for k in KEYS}
    runtime.write_json(path, {"model": "toy", "reward": "shapes", "reward_note": "exact.", "num_videos": len(values),
                              "generation": {"fps": 4}, "scores": scores, "per_video": per,
                              "params": {"trainable": trainable}})


def fake_run(root, name, method, seed, rows, oneshot=False, target="visual_quality"):
    """rows: [full, (pruned, trained), ...] lists of per-video values."""
    run = root / name
    runtime.write_json(str(run / "config.json"), {"model": "toy", "method": method, "seed": seed, "oneshot": oneshot})
    fake_eval(str(run / "full" / "eval.json"), rows[0], 453)
    for k, (pruned, trained) in enumerate(rows[1:], start=1):
        stage = run / f"stage_{k}"
        fake_eval(str(stage / "eval_pruned.json"), pruned, 300)
        fake_eval(str(stage / "eval.json"), trained, 300)
        runtime.write_json(str(stage / "prune.json"), {"target_properties": [[target, -0.1]]})
        (stage / "train").mkdir()
        with open(stage / "train" / "metrics.jsonl", "w") as f:
            for step in (1, 2):
                f.write(f'{{"step": {step}, "dpo": 0.69, "sft": 0.01, "implicit_acc": 0.5}}\n')
    return str(run)


def test_report_seeds_paired_rows_methods_and_claims(tmp_path):
    full = [0.8, 0.8, 0.8]
    runs = [fake_run(tmp_path, "redpo-0", "redpo", 0, [full, ([0.6, 0.7, 0.8], [0.8, 0.9, 1.0])]),
            fake_run(tmp_path, "redpo-1", "redpo", 1, [full, ([0.6, 0.7, 0.8], [0.7, 0.8, 0.9])]),
            fake_run(tmp_path, "sft-0", "sft", 0, [full, ([0.6, 0.7, 0.8], [0.6, 0.7, 0.8])]),
            fake_run(tmp_path, "sft-1", "sft", 1, [full, ([0.6, 0.7, 0.8], [0.5, 0.6, 0.7])])]
    text = report.write_report(runs, str(tmp_path / "report.md"))

    # Table 1: the mean over the two seeds, and their spread (sd of the two Averages).
    assert "### ReDPO (toy, 2 seeds: 0, 1)" in text and "### SFT (toy, 2 seeds: 0, 1)" in text
    redpo_rows = [line for line in text.split("### ReDPO")[1].split("Paired")[0].splitlines() if line.startswith("| Stage 1 | ReDPO")]
    cells = [c.strip() for c in redpo_rows[0].split("|")[1:-1]]
    assert cells[6] == "0.850" and cells[7] == f"{math.sqrt(0.005):.3f}"          # (0.9 + 0.8) / 2; sd 0.0707

    # Paired: ReDPO - Pruned pooled over both seeds: differences 0.2 x3 and 0.1 x3.
    d = stats.paired_ci([videos([0.8, 0.9, 1.0]), videos([0.7, 0.8, 0.9])],
                        [videos([0.6, 0.7, 0.8])] * 2, ["total"])["total"]
    assert d["mean"] == pytest.approx(0.15)
    line = next(line for line in text.splitlines() if line.startswith("| Stage 1: ReDPO - Pruned"))
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[1] == "visual_quality" and cells[6] == f"+0.150 ± {d['ci95']:.3f}" and cells[7] == "+0.200 / +0.100"

    # Methods: SFT - ReDPO at stage 1, matched by seed: -0.2 x3 and -0.2 x3.
    line = next(line for line in text.splitlines() if line.startswith("| Stage 1: SFT - ReDPO"))
    assert "-0.200 ± 0.000" in line

    # Claims: the cut lowers the target; ReDPO recovers it; ReDPO beats SFT; SFT loses the non-targets
    # (seed 0 keeps them, 0 x 9; seed 1 loses 0.1 x 9: mean -0.05 +- 0.026, below zero).
    claims = {line.split("|")[1].strip(): line.split("|")[3].strip() for line in text.split("## The paper's claims")[1]
              .split("## Cost")[0].splitlines() if line.startswith("| Table")}
    assert claims["Table 1, stage 1: the pruning cut lowers its target (visual_quality)"] == "**holds**"
    assert claims["Table 1, stage 1: ReDPO recovers the target (visual_quality)"] == "**holds**"
    assert claims["Table 3: ReDPO beats SFT on each stage's target"] == "**holds**"
    assert claims["Table 3: SFT loses what the pruned model was good at (the non-target dimensions)"] == "**holds**"
    assert (tmp_path / "scores_toy_redpo.png").stat().st_size > 1000
    assert (tmp_path / "training_toy_sft.png").stat().st_size > 1000
