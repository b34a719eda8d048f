"""bench/same_run.py: the largest difference between two runs, file by file (the speed page's check
that a faster run is the same run)."""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import same_run  # noqa: E402


def write_run(folder, score, step_loss, latency):
    os.makedirs(folder / "full")
    os.makedirs(folder / "stage_1" / "train")
    videos = [{"prompt": "a red circle moving left", "seed": s,
               "scores": {"visual_quality": 0.5 + s, "total": score if s == 1 else 0.25}} for s in (0, 1)]
    (folder / "full" / "eval.json").write_text(json.dumps({"per_video": videos, "latency": latency}))
    (folder / "stage_1" / "prune.json").write_text(json.dumps({"removed": ["a", "b"], "latency_s": {"before": latency}}))
    rows = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": step_loss}]
    (folder / "stage_1" / "train" / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (folder / "config.json").write_text(json.dumps({"out": str(folder)}))


def test_the_differences_are_per_file_and_dimension_and_times_are_left_out(tmp_path, capsys):
    write_run(tmp_path / "a", 0.75, 1.5, latency=1.0)
    write_run(tmp_path / "b", 0.5, 1.5 + 2 ** -10, latency=9.0)
    rows = {(f, what): d for f, what, d in same_run.compare(str(tmp_path / "a"), str(tmp_path / "b"))}
    assert rows == {("full/eval.json", "visual_quality"): 0.0, ("full/eval.json", "total"): 0.25,
                    ("stage_1/prune.json", "every number"): 0.0,
                    ("stage_1/train/metrics.jsonl", "every number"): 2 ** -10}
    assert same_run.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert same_run.main([str(tmp_path / "a"), str(tmp_path / "a")]) == 0
    assert "the largest difference: 0" in capsys.readouterr().out


def test_other_blocks_removed_is_an_infinite_difference_and_a_non_run_is_named(tmp_path, capsys):
    write_run(tmp_path / "a", 0.75, 1.5, latency=1.0)
    write_run(tmp_path / "b", 0.75, 1.5, latency=1.0)
    (tmp_path / "b" / "stage_1" / "prune.json").write_text(json.dumps({"removed": ["a", "c"], "latency_s": {}}))
    rows = {(f, what): d for f, what, d in same_run.compare(str(tmp_path / "a"), str(tmp_path / "b"))}
    assert rows[("stage_1/prune.json", "every number")] == float("inf")
    assert same_run.main([str(tmp_path / "a"), str(tmp_path / "nothing")]) == 2
    assert "holds no full/eval.json" in capsys.readouterr().err


def test_a_dimension_the_reward_does_not_measure_is_left_out(tmp_path):
    """The pixel proxy scores no text alignment (null in every video): compared on the others."""
    for name in ("a", "b"):
        write_run(tmp_path / name, 0.75, 1.5, latency=1.0)
        path = tmp_path / name / "full" / "eval.json"
        row = json.loads(path.read_text())
        for v in row["per_video"]:
            v["scores"]["text_alignment"] = None
        path.write_text(json.dumps(row))
    rows = {(f, what): d for f, what, d in same_run.compare(str(tmp_path / "a"), str(tmp_path / "b"))}
    assert rows[("full/eval.json", "total")] == 0.0 and ("full/eval.json", "text_alignment") not in rows
    assert same_run.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    row["per_video"][0]["scores"]["text_alignment"] = 0.5                 # measured in b only
    path.write_text(json.dumps(row))
    assert dict(((f, w), d) for f, w, d in same_run.compare(str(tmp_path / "a"), str(tmp_path / "b")))[
        ("full/eval.json", "text_alignment")] == float("inf")
