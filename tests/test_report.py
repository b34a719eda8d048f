"""analysis/report.py and analysis/claims.py: what was run, Table 1 over training seeds, paired differences and the
methods side by side with intervals over prompts and seeds, the paper's claims with a verdict
(numbers against hand computations), the plots."""
import math

import pytest

from analysis import claims
from analysis import report
from infra import disk
from rewards import DIMENSIONS

KEYS = list(DIMENSIONS) + ["total"]
PROMPTS = ("p0", "p1", "p2", "p3")
T3 = 3.182446305284263          # t_(0.975, 3)


def videos(values):
    """per_video entries, one per prompt (eval seed i), every dimension equal to values[i] (so total too)."""
    return [{"prompt": p, "seed": i, "static": False, "scores": {k: v for k in KEYS}}
            for i, (p, v) in enumerate(zip(PROMPTS, values))]


def fake_eval(path, values, trainable=100):
    scores = {k: {"mean": sum(values) / len(values), "ci95": 0.1, "n": len(values)} for k in KEYS}
    disk.write_json(path, {"model": "toy", "reward": "shapes", "reward_note": "exact.", "num_videos": len(values),
                              "generation": {"fps": 4}, "scores": scores, "per_video": videos(values),
                              "params": {"trainable": trainable}})


def fake_run(root, name, method, seed, rows, oneshot=False, target="visual_quality"):
    """rows: [full, (pruned, trained), ...] lists of per-video values."""
    run = root / name
    disk.write_json(str(run / "config.json"), {"model": "toy", "method": method, "seed": seed, "oneshot": oneshot,
                                                  "blocks": [2], "beta": 5000.0, "w_sft": 1e4, "epochs": 2})
    fake_eval(str(run / "full" / "eval.json"), rows[0], 453)
    for k, (pruned, trained) in enumerate(rows[1:], start=1):
        stage = run / f"stage_{k}"
        fake_eval(str(stage / "eval_pruned.json"), pruned, 300)
        fake_eval(str(stage / "eval.json"), trained, 300)
        disk.write_json(str(stage / "prune.json"), {"target_properties": [[target, 0.1]]})
        (stage / "train").mkdir()
        with open(stage / "train" / "metrics.jsonl", "w") as f:
            for step in (1, 2):
                f.write(f'{{"step": {step}, "dpo": 0.69, "sft": 0.01, "implicit_acc": 0.5}}\n')
    return str(run)


def cells(text, start):
    line = next(line for line in text.splitlines() if line.startswith(start))
    return [c.strip() for c in line.split("|")[1:-1]]


def test_report_seeds_paired_rows_methods_and_claims(tmp_path):
    full = [0.8] * 4
    pruned = [0.6, 0.62, 0.64, 0.66]                     # the same stage-1 pruned row in every run
    gain = {0: [0.2, 0.1, 0.2, 0.1], 1: [0.1, 0.2, 0.1, 0.2]}
    redpo = {s: [p + g for p, g in zip(pruned, gain[s])] for s in (0, 1)}
    runs = []
    for s in (0, 1):
        runs += [fake_run(tmp_path, f"redpo-s{s}", "redpo", s, [full, (pruned, redpo[s])]),
                 fake_run(tmp_path, f"sft-s{s}", "sft", s, [full, (pruned, pruned)]),
                 fake_run(tmp_path, f"dpo-s{s}", "dpo", s, [full, (pruned, [x - 0.1 for x in redpo[s]])]),
                 fake_run(tmp_path, f"redpo-oneshot-s{s}", "redpo", s, [full, ([0.5] * 4, [x - 0.1 for x in redpo[s]])],
                          oneshot=True),
                 fake_run(tmp_path, f"redpo-oneshot-budget-s{s}", "redpo", s,
                          [full, ([0.5] * 4, [x + 0.05 for x in redpo[s]])], oneshot=True)]
    text = report.write_report(runs, str(tmp_path / "report.md"))

    # What was run: first, before Table 1; the budget-matched one-shot is a group of its own.
    head = text.split("## Table 1")[0]
    assert "model `toy`, scored by the `shapes` reward" in head and "4 prompts, 1 eval seed each (4 videos)" in head
    assert cells(text, "| ReDPO one-shot (same budget) |")[1:4] == ["0, 1", "1 (2 at once)", "5000"]
    assert cells(text, "| SFT |")[-1] == "2" and "exact." not in head
    assert cells(text, "| SFT |")[3:5] == ["-", "-"] and cells(text, "| DPO |")[3:5] == ["5000", "-"]   # unused
    assert cells(text, "| ReDPO |")[3:5] == ["5000", "10000"]

    # Table 1: the mean over the two seeds, and their spread (sd of the two Averages: both 0.78).
    assert "### ReDPO (toy, 2 seeds: 0, 1)" in text and "### SFT (toy, 2 seeds: 0, 1)" in text
    row = cells(text.split("### ReDPO (toy")[1], "| Stage 1 | ReDPO")
    assert row[6] == "0.780" and row[7] == "0.000"

    # Paired, ReDPO - Pruned: cells y = gain (4 prompts x 2 seeds), MS_P = MS_S = 0, MS_E = 0.02 / 3:
    # both components below zero, Var = MS_E / 8 = 1 / 1200, df 3.
    half = T3 * math.sqrt(1 / 1200)
    row = cells(text.split("### ReDPO (toy")[1], "| Stage 1: ReDPO - Pruned")
    assert row[1] == "visual_quality" and row[6] == f"+0.150 ± {half:.3f}" and row[7] == "+0.150 / +0.150"
    # Pruned - before: the same row in both seeds, so prompts only: -0.2, -0.18, -0.16, -0.14.
    shared = T3 * math.sqrt(0.002 / 3) / 2
    assert cells(text.split("### ReDPO (toy")[1], "| Stage 1: Pruned - before")[6] == f"-0.170 ± {shared:.3f}"
    assert f"-0.150 ± {half:.3f}" in cells(text, "| Stage 1: SFT - ReDPO")

    # Claims: one line each, with the analysis, prompts, seeds, df and the smallest detectable effect.
    found = {c[1]: c for c in (cells(line, "|") for line in text.split("## The paper's claims")[1]
                                .split("## Cost")[0].splitlines() if line.startswith("| Table"))}
    c = found["stage 1: the cut lowers its target property (visual quality); pruned - before"]
    assert c[2:5] == ["holds", "**holds**", f"-0.170 ± {shared:.3f}"]
    assert c[5] == "0.0000"       # no prune.json search scores here: margin 0, the verdict without a margin
    assert c[8:12] == ["prompts, the row shared by every seed", "4", "1", "3.0"]
    mde = (T3 + 0.9784723123633045) * math.sqrt(0.002 / 3) / 2       # t_(0.8, 3) = 0.978
    assert c[12] == f"{mde:.3f}"
    c = found["stage 1: ReDPO improves the explicitly targeted metric (visual quality); trained - pruned"]
    assert c[2] == "holds" and c[4] == f"+0.150 ± {half:.3f}" and c[8:11] == ["prompts x seeds", "4", "2"]
    # Final - full: cells (pruned - full) + gain; MS_P = 0.004 / 3 < MS_E = 0.02 / 3: Var = MS_E / 8 again.
    c = found["the final student matches or exceeds the full model: the Average (plain); final - full"]
    assert c[2:5] == ["cannot tell", "**cannot tell**", f"-0.020 ± {half:.3f}"]
    assert found["ReDPO beats SFT on the final student: the Average (plain); ReDPO - SFT"][2] == "holds"
    c = found["stage 1: SFT loses more than ReDPO of what the pruned model did well (the dimensions not below the "
              "full model); (SFT - pruned) - (ReDPO - pruned)"]
    assert c[2] == "holds" and c[4] == f"-0.150 ± {half:.3f}"
    assert found["without SFT, temporal consistency falls; DPO - ReDPO (final student)"][2:5:2] == ["holds", "-0.100 ± 0.000"]
    assert found["without SFT, dynamic degree rises; DPO - ReDPO (final student)"][2] == "does not hold"
    assert found["ReDPO one-shot is worse than online: the Average (plain); ReDPO one-shot - ReDPO (final student)"][2] == "holds"
    c = found["ReDPO one-shot (same budget) is worse than online: the Average (plain); ReDPO one-shot (same budget) - "
              "ReDPO (final student)"]
    assert c[2:5:2] == ["does not hold", "+0.050 ± 0.000"]
    # Without the search's full row there is no scale for the standardised Average: no such line.
    assert not any("standardised" in name for name in found)
    assert (tmp_path / "scores_toy_redpo.png").stat().st_size > 1000
    assert (tmp_path / "training_toy_sft.png").stat().st_size > 1000


def test_verdict_rule_is_in_the_docstrings():
    for module in (report, claims):
        assert "does not hold" in module.__doc__ and "cannot tell" in module.__doc__ and ">= 0" in module.__doc__


@pytest.mark.parametrize("name, label", [("redpo-oneshot-s0", "ReDPO one-shot"),
                                         ("redpo-oneshot-budget-s3", "ReDPO one-shot (same budget)")])
def test_the_budget_matched_one_shot_is_its_own_group(tmp_path, name, label):
    run = fake_run(tmp_path, name, "redpo", 0, [[0.8] * 4, ([0.5] * 4, [0.6] * 4)], oneshot=True)
    assert report.read_run(run)["label"] == label


def test_margins_from_the_search_set_and_the_standardised_average():
    """margins(): a fifth of the largest |change| one cut makes on the search's videos, stages 2 and 3
    averaged over the runs; the Averages take the mean of the four (the standardised one over each sd)."""
    stage = lambda change: {"search_change": change}                                      # noqa: E731
    s1 = {"visual_quality": -0.06, "temporal_consistency": -0.005, "dynamic_degree": 0.1, "text_alignment": 0.01}
    runs = [{"stages": [stage(s1), stage({"visual_quality": 0.0, "temporal_consistency": -0.001,
                                          "dynamic_degree": -0.2, "text_alignment": -0.02})]},
            {"stages": [stage(s1), stage({"visual_quality": 0.0, "temporal_consistency": -0.003,
                                          "dynamic_degree": -0.1, "text_alignment": -0.04})]}]
    scale = {"visual_quality": 0.02, "temporal_consistency": 0.02, "dynamic_degree": 0.5, "text_alignment": 0.1}
    m = claims.margins(runs, scale)
    # stage 2's means: tc -0.002, dd -0.15, ta -0.03; the largest |change|: vq 0.06, tc 0.005, dd 0.15, ta 0.03
    assert m["visual_quality"] == pytest.approx(0.012) and m["temporal_consistency"] == pytest.approx(0.001)
    assert m["dynamic_degree"] == pytest.approx(0.03) and m["text_alignment"] == pytest.approx(0.006)
    assert m["total"] == pytest.approx((0.012 + 0.001 + 0.03 + 0.006) / 4)
    assert m[claims.Z] == pytest.approx((0.6 + 0.05 + 0.06 + 0.06) / 4)
    assert claims.margin_of(m, ["dynamic_degree", "text_alignment"]) == pytest.approx(0.018)

    # The standardised Average of a difference: each dimension over its sd, then the mean.
    def row(vq, dd):
        return {"per_video": [{"prompt": "p", "seed": 0, "scores": {"visual_quality": vq, "temporal_consistency": 0.9,
                                                                      "dynamic_degree": dd, "text_alignment": 0.5}}]}
    got = claims.diff(row(0.92, 0.5), row(0.90, 0.7), [claims.Z], scale)[("p", 0)]
    assert got == pytest.approx((0.02 / 0.02 - 0.2 / 0.5) / 4)
    assert claims.diff(row(0.92, 0.5), row(0.90, 0.7), [claims.Z], {}) is None


def test_holm_within_each_table():
    found = [{"table": "Table 1", "verdict": "holds", "p": 0.01}, {"table": "Table 1", "verdict": "holds", "p": 0.03},
             {"table": "Table 3", "verdict": "negligible", "p": 0.03}]
    claims.adjust(found)
    # Table 1: 0.01 x 2 = 0.02, 0.03 x 1 -> 0.03; Table 3 alone: 0.03.
    assert [c["p_holm"] for c in found] == pytest.approx([0.02, 0.03, 0.03])
    assert [c["verdict_holm"] for c in found] == ["holds", "holds", "negligible"]
    found = [{"table": "Table 1", "verdict": "holds", "p": 0.03}, {"table": "Table 1", "verdict": "cannot tell", "p": 0.2},
             {"table": "Table 1", "verdict": "holds", "p": 0.02}]
    claims.adjust(found)                      # 0.02 x 3 = 0.06: neither holds after the correction
    assert [c["verdict_holm"] for c in found] == ["cannot tell"] * 3


def test_runs_a_report_cannot_compare_are_refused_in_one_line(tmp_path):
    """Two runs of one method at one seed, another model, reward, eval set or pruning schedule, and a
    method's runs with different numbers of finished stages: refused, naming both runs and the setting."""
    full, stage = [0.8] * 4, ([0.6] * 4, [0.7] * 4)
    base = fake_run(tmp_path, "redpo-s0", "redpo", 0, [full, stage, stage])

    def variant(name, method="redpo", seed=1, rows=(full, stage, stage), config=None, full_eval=None):
        run = fake_run(tmp_path, name, method, seed, list(rows))
        if config:
            disk.write_json(f"{run}/config.json", dict(disk.read_json(f"{run}/config.json"), **config))
        if full_eval:
            disk.write_json(f"{run}/full/eval.json", dict(disk.read_json(f"{run}/full/eval.json"), **full_eval))
        return run

    def refused(run, *words):
        with pytest.raises(report.UserError) as e:
            report.write_report([base, run], str(tmp_path / "report.md"))
        assert base in str(e.value) and run in str(e.value) and "\n" not in str(e.value)
        for w in words:
            assert w in str(e.value)
        assert not (tmp_path / "report.md").exists()

    # The case: seed 0 twice, 2 stages and 1.
    refused(variant("redpo-1stage-s0", seed=0, rows=(full, stage)), "both ReDPO at training seed 0")
    refused(variant("redpo-short-s1", rows=(full, stage)), "2 and 1 finished stages")
    refused(variant("tiny-s1", config={"model": "tiny"}), "different models (toy vs tiny)")
    refused(variant("pixel-s1", full_eval={"reward": "pixel"}), "different rewards (shapes vs pixel)")
    other = [dict(v, prompt="q" + v["prompt"]) for v in disk.read_json(f"{base}/full/eval.json")["per_video"]]
    refused(variant("prompts-s1", full_eval={"per_video": other}), "different eval sets", "other prompts or seeds")
    refused(variant("blocks-s1", config={"blocks": [3]}), "remove 2 and 3 blocks in all")
    refused(variant("schedule-s1", config={"blocks": [1, 1]}), "different schedules (--blocks 2 vs 1 1")
    # What the report can compare: another seed, another method, a one-shot run of the same blocks.
    text = report.write_report([base, variant("redpo-s1"), variant("sft-s0", method="sft", seed=0),
                                variant("redpo-oneshot-s0", seed=0, rows=(full, stage),
                                        config={"oneshot": True, "blocks": [1, 1]})], str(tmp_path / "report.md"))
    assert "### ReDPO (toy, 2 seeds: 0, 1)" in text and "### ReDPO one-shot (toy, 1 seed: 0)" in text


def test_notes_say_what_holds_for_the_runs_own_model_and_reward(tmp_path):
    """Table 1's note names the run's reward and trained part; the cost table says its latency is one
    timing; the training plot's scales are explained, with the run's own first and last quarters."""
    run = fake_run(tmp_path, "redpo-s0", "redpo", 0, [[0.8] * 4, ([0.6] * 4, [0.7] * 4)])
    with open(f"{run}/stage_1/train/metrics.jsonl", "w") as f:      # 4 steps: quarters of one step
        for step, (dpo, acc) in enumerate([(20.0, 0.0), (10.0, 0.25), (5.0, 0.25), (2.0, 0.5)], start=1):
            f.write(f'{{"step": {step}, "dpo": {dpo}, "sft": 0.01, "implicit_acc": {acc}}}\n')
    text = report.write_report([run], str(tmp_path / "report.md"), grids=False)
    note = next(line for line in text.splitlines() if line.startswith("Average: "))
    assert "shapes world's exact reward" in note and "not VideoScore" in note and "10 motion modules" in note
    assert "VideoScore total" not in note and "static" not in note           # no prompt here is labelled static
    assert "| Latency (s / video, one timing) |" in text and report.COST_NOTE in text
    assert "- Stage 1: DPO term 20.00 -> 2.00, implicit accuracy 0.00 -> 0.50" in text
    assert "implicit accuracy (the share of pairs where it prefers the winner more than the full model does) sits near 0" in text

    tiny = fake_run(tmp_path / "t", "redpo-s0", "redpo", 0, [[0.8] * 4, ([0.6] * 4, [0.7] * 4)])
    row = disk.read_json(f"{tiny}/full/eval.json")
    row["per_video"][0]["static"] = True
    disk.write_json(f"{tiny}/full/eval.json", dict(row, reward="pixel"))
    disk.write_json(f"{tiny}/config.json", dict(disk.read_json(f"{tiny}/config.json"), model="tiny"))
    text = report.write_report([tiny], str(tmp_path / "t" / "report.md"), grids=False)
    note = next(line for line in text.splitlines() if line.startswith("Average: "))
    assert "three dimensions the pixel proxy measures" in note and "AnimateDiff's motion modules" in note
    assert "tiny random-weight animatediff" in note and "labelled static score dynamic degree 0" in note


def test_the_training_figure_plots_the_gaps_student_minus_teacher_and_marks_the_alarm():
    def row(step, err_w, ref_err_w):
        return {"step": step, "loss": 1.0, "dpo": 0.5, "sft": 0.01, "implicit_acc": 0.25, "reward_margin": -2.0,
                "err_w": err_w, "ref_err_w": ref_err_w, "err_l": 0.03, "ref_err_l": 0.05}
    metrics = [{"step": 0, "w_sft": 1e4}] + [row(1, 0.01, 0.01), row(2, 0.03, 0.01), row(3, 0.04, 0.01),
                                              row(4, 0.05, 0.01), row(5, 0.01, 0.01)]
    steps, curves, fired = report.training_curves(metrics)
    assert steps == [1, 2, 3, 4, 5] and fired == 4          # 3x, 4x, 5x the teacher's on steps 2-4 (analysis/alarm.py)
    assert curves["err_w_gap"] == pytest.approx([0.0, 0.02, 0.03, 0.04, 0.0])
    assert curves["err_l_gap"] == pytest.approx([-0.02] * 5) and curves["reward_margin"] == [-2.0] * 5
    assert [t for t, _ in report.TRAINING_TERMS] == ["dpo", "sft", "implicit_acc", "reward_margin", "err_w_gap", "err_l_gap"]
    assert report.training_curves(metrics[:4])[2] is None
