"""toy/capacity.py's queue (the runs docs/shapes/PLAN.md fixes for the capacity curve) and its
resume: synthetic run folders, no model runs."""
import os

from infra import disk

from toy import capacity, compare


def test_the_queue_is_the_plans_runs_seed_by_seed():
    jobs = capacity.plan([0, 1, 2, 3, 4])
    names = [j["name"] for j in jobs]
    # Cuts 1, 3-7 (cut 2 is the shipped sweep's), ReDPO and SFT, 5 seeds.
    assert len(names) == len(set(names)) == 6 * 2 * 5
    assert not any(n.startswith("c2-") for n in names)
    for i in range(5):           # seed by seed: a partial result has every cut and both methods
        assert {n.rsplit("-s", 1)[1] for n in names[12 * i:12 * (i + 1)]} == {str(i)}
        assert [n.split("-")[0] for n in names[12 * i:12 * (i + 1):2]] == ["c1", "c7", "c4", "c5", "c3", "c6"]
    by_name = {j["name"]: j for j in jobs}
    assert by_name["c4-auto-s3"]["argv"] == ["--stages", "1", "--blocks", "4", "--w_sft", "auto", "--seed", "3"]
    assert by_name["c7-sft-s1"]["argv"] == ["--stages", "1", "--blocks", "7", "--method", "sft", "--seed", "1"]
    # The first run makes everything on its own; the rest copy only from runs before them.
    assert names[:2] == ["c1-auto-s0", "c1-sft-s0"] and jobs[0]["copy"] == [] and all(j["copy"] for j in jobs[1:])
    for i, j in enumerate(jobs):
        assert all(src in names[:i] for src in j["after"]), j["name"]
    assert by_name["c5-auto-s0"]["copy"] == [("c1-auto-s0", compare.FULL + compare.CACHE)]
    assert by_name["c5-sft-s4"]["copy"] == [("c5-auto-s0", compare.FULL + compare.CACHE + compare.PRUNED)]
    # A cut's runs copy the search, pruned row and pairs of the same cut only.
    for j in jobs:
        for src, rels in j["copy"]:
            if compare.PRUNED[0] in rels:
                assert src.split("-")[0] == j["name"].split("-")[0]
    assert capacity.shipped_name(2, "sft", 3) == "s1-sft-s3" and capacity.shipped_name(5, "auto", 0) == "c5-auto-s0"


def finished_run(path, seed):
    os.makedirs(os.path.join(path, "stage_1"))
    disk.write_json(os.path.join(path, "config.json"), {"seed": seed})
    disk.write_json(os.path.join(path, "stage_1", "eval.json"), {"per_video": []})
    disk.write_json(os.path.join(path, "timing.json"), {"wall_s_last_process": 1.0, "printed": []})
    with open(os.path.join(path, "report.md"), "w") as f:
        f.write("done\n")


def test_resuming_skips_finished_runs_and_ships_them(tmp_path, capsys):
    runs, docs = str(tmp_path / "runs"), str(tmp_path / "docs")
    for m in ("auto", "sft"):
        finished_run(os.path.join(runs, f"c3-{m}-s0"), 0)
    os.makedirs(os.path.join(runs, "c3-auto-s1"))            # started, not finished
    capacity.main(["--cuts", "2", "3", "--seeds", "0", "1", "--runs", runs, "--docs", docs, "--list"])
    states = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()}
    assert states == {"c3-auto-s0": "done", "c3-sft-s0": "done", "c3-auto-s1": "started", "c3-sft-s1": "queued"}
    # Only the finished runs in the queue: nothing is launched, both are shipped (small files only).
    capacity.main(["--cuts", "3", "--seeds", "0", "--runs", runs, "--docs", docs])
    for m in ("auto", "sft"):
        shipped = os.path.join(docs, "runs", f"c3-{m}-s0")
        assert disk.read_json(os.path.join(shipped, "config.json")) == {"seed": 0}
        assert os.path.isfile(os.path.join(shipped, "stage_1", "eval.json"))
        assert not os.path.exists(os.path.join(shipped, "report.md"))


def test_the_2d_curve_at_five_blocks_removed_is_gmm_pys_own_run(tmp_path):
    # toy/gmm.py's default student (5 of 6 blocks removed), made through its own main() on a short
    # budget, and the same cut through gmm_capacity.curve: the same SFT and ReDPO numbers.
    from tqdm import tqdm
    from toy import gmm, gmm_capacity
    short = ["--seeds", "1", "--teacher_steps", "60", "--distil_steps", "8", "--rounds", "2"]
    gmm.main(["--out", str(tmp_path)] + short)
    shipped = disk.read_json(os.path.join(tmp_path, "metrics.json"))["per_seed"][0]
    cfg = dict(gmm.DEFAULTS, teacher_steps=60, distil_steps=8, rounds=2)
    teacher, _, _ = gmm.build_models(cfg, tqdm)
    (cut,) = gmm_capacity.curve(teacher, cfg, [5], [1])
    made = {}

    def done(n, s, row=None):               # as main() keeps them: one file per finished (cut, seed)
        if row is None:
            return made.get((n, s))
        made[(n, s)] = row
    assert gmm_capacity.curve(teacher, cfg, [5], [1], done) == [cut] and made[(5, 1)] == cut["per_seed"][0]
    made[(5, 1)] = dict(made[(5, 1)], sft="read back")
    assert gmm_capacity.curve(teacher, cfg, [5], [1], done)[0]["per_seed"][0]["sft"] == "read back"
    assert cut["removed"] == 5 and len(cut["blocks"]) == 5
    row = cut["per_seed"][0]
    for m in ("sft", "redpo", "pruned", "teacher"):
        assert row[m] == shipped[m], m
