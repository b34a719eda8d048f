"""Sec. 3.1's capacity argument in 2D: ReDPO against SFT as the student shrinks, toy/gmm.py's world
and budget unchanged, the student being the teacher with 1 to 5 of its 6 blocks removed (the
least important by ablation). The runs and measures are fixed in docs/shapes/PLAN.md ("The same
curve in 2D"); analysis/capacity.py draws the figure.

    python toy/gmm_capacity.py                  # docs/gmm/capacity.json: 5 cuts x 5 seeds, ~10 min on an idle core
    python toy/gmm_capacity.py --seeds 0 1 2 --out runs/gmm-capacity

Seed by seed, every cut at a seed before the next: capacity.json is rewritten after each seed, and
a run stopped and started again resumes from its finished (cut, seed) files in --work.

For every cut and seed: the teacher's and the pruned student's metrics, and those of the student
distilled with SFT and with ReDPO (toy/gmm.py's bench and run_method: the same pairs, batches, t,
eps and steps for both). The 5-block cut is toy/gmm.py's default student, so at seeds 0-2 its SFT
and ReDPO rows are docs/gmm/metrics.json's.
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from infra.cli import UserError, run_cli  # noqa: E402
from infra.disk import atomic_file, read_json, write_json  # noqa: E402

import torch  # noqa: E402

from toy import gmm  # noqa: E402
from toy.gmm_model import Denoiser, num_parameters, prune  # noqa: E402

CUTS = (1, 2, 3, 4, 5)          # blocks removed, of the teacher's 6
METHODS = ("sft", "redpo")


def cut_row(teacher, pruned, seed, cfg, bar=None):
    """One cut at one seed: {"seed", "teacher", "pruned", "sft", "redpo": gmm.evaluate's metrics}."""
    b = gmm.bench(teacher, pruned, seed, cfg)
    row = {"seed": seed, **{k: gmm.evaluate(b["samples"][k], b["region"], b["teacher_ref"]) for k in ("teacher", "pruned")}}
    for method in METHODS:
        row[method] = gmm.evaluate(gmm.run_method(teacher, pruned, b, method, cfg), b["region"], b["teacher_ref"])
        if bar is not None:
            bar.update()
    return row


def curve(teacher, cfg, cuts, seeds, done=None, bar=None):
    """[{"removed" (blocks removed), "blocks" (their indices), "parameters", "per_seed": [cut_row]}]
    for every cut, seed by seed (every cut at a seed before the next seed). done(cut, seed) -> a
    row made earlier, or None; after each (cut, seed) done is told the new row as done(cut, seed, row)."""
    students = {n: prune(teacher, cfg["n_blocks"] - n) for n in cuts}
    for student, _ in students.values():     # trainable, as gmm.py's pruned student (distil freezes the teacher it copies)
        student.requires_grad_(True)
    out = {n: {"removed": n, "blocks": students[n][1], "parameters": num_parameters(students[n][0]), "per_seed": []}
           for n in cuts}
    for seed in seeds:
        for n in cuts:
            row = done(n, seed) if done else None
            if row is None:
                row = cut_row(teacher, students[n][0], seed, cfg, bar)
                if done:
                    done(n, seed, row)
            out[n]["per_seed"].append(row)
    return [out[n] for n in cuts]


def trained_teacher(cfg, work):
    """toy/gmm.py's teacher (build_models: fixed seed, the same every time), trained once and kept
    in work/teacher.pt (a pure speed-up: the weights are those build_models makes)."""
    from tqdm import tqdm
    path = os.path.join(work, "teacher.pt")
    if os.path.isfile(path):
        teacher = Denoiser(cfg["width"], cfg["n_blocks"])
        teacher.load_state_dict(torch.load(path))
        return teacher.eval()
    teacher, _, _ = gmm.build_models(cfg, tqdm)
    os.makedirs(work, exist_ok=True)
    with atomic_file(path) as tmp:
        torch.save(teacher.state_dict(), tmp)
    return teacher


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "gmm"), help="folder of capacity.json (default: docs/gmm)")
    p.add_argument("--work", default=os.path.join("runs", "gmm-capacity"),
                   help="the teacher and each finished (cut, seed), for resuming (default: runs/gmm-capacity)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds (default: 0 1 2 3 4)")
    p.add_argument("--cuts", type=int, nargs="+", default=list(CUTS), help="blocks removed, 1-5 (default: 1 2 3 4 5)")
    args = p.parse_args(argv)
    if any(not 1 <= n <= 5 for n in args.cuts):
        raise UserError(f"--cuts must lie in 1..5 (the teacher has 6 blocks and the student keeps one), got {args.cuts}")
    from tqdm import tqdm
    torch.set_num_threads(1)    # as toy/gmm.py: (N, 32) tensors, more threads only add overhead
    cfg = dict(gmm.DEFAULTS, seeds=args.seeds)
    start = time.time()
    teacher = trained_teacher(cfg, args.work)

    def done(n, seed, row=None):
        path = os.path.join(args.work, f"cut{n}-seed{seed}.json")
        if row is None:
            return read_json(path) if os.path.isfile(path) else None
        write_json(path, row)
        if n == args.cuts[-1]:      # a seed finished at every cut: capacity.json with the seeds so far
            write(args, teacher, cfg, args.seeds[:args.seeds.index(seed) + 1])

    with tqdm(total=len(args.cuts) * len(args.seeds) * len(METHODS), desc="distil") as bar:
        cuts = curve(teacher, cfg, args.cuts, args.seeds, done, bar)
    write(args, teacher, cfg, args.seeds)
    for c in cuts:
        mean = lambda m, k: sum(r[m][k] for r in c["per_seed"]) / len(c["per_seed"])  # noqa: E731
        print(f"{c['removed']} removed: " + ", ".join(f"{m} prec {mean(m, 'precision'):.3f} rec {mean(m, 'recall'):.3f}"
                                                   for m in ("pruned",) + METHODS))
    print(f"wrote {os.path.join(args.out, 'capacity.json')} in {time.time() - start:.0f} s")


def write(args, teacher, cfg, seeds):
    """capacity.json from the finished (cut, seed) files of these seeds."""
    cuts = curve(teacher, cfg, args.cuts, seeds, lambda n, s, row=None: read_json(
        os.path.join(args.work, f"cut{n}-seed{s}.json")))
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, "capacity.json"),
               {"config": dict(cfg, seeds=seeds), "teacher_parameters": num_parameters(teacher), "cuts": cuts})


if __name__ == "__main__":
    run_cli(main)
