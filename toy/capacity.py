"""When does preference distillation beat SFT (Sec. 3.1's capacity argument)? Stage 1 of the shapes
world at cuts of 1 to 7 of its 10 motion modules, ReDPO (w_sft by the paper's rule) against SFT at
the same budget, run resumably; the runs, measures and statistics are fixed in docs/shapes/PLAN.md
("The capacity curve").

Every run is `python vip_loop.py --stages 1 --blocks k` on the toy preset: the block search (on
toy/search_prompts.txt, training prompts) chooses which k modules go and its rule picks the targets;
curation keeps the pairs of those targets; 2 epochs; 18 held-out prompts x 4 eval seeds per row.

    c<k>-auto-s<S>    ReDPO, --w_sft auto     (docs/shapes/capacity/runs/c<k>-auto-s<S>/)
    c<k>-sft-s<S>     SFT,   --method sft

Cut 2 is not run: its runs are the shipped stage-1 runs docs/shapes/sweep/runs/s1-auto-s<S> and
s1-sft-s<S> (the same arguments; PLAN.md).

    python toy/capacity.py                      # every run, 2 at a time, resumable (about 1.5 h on 2 cores)
    python toy/capacity.py --list               # the queue, in order, with what is done
    python toy/capacity.py --cuts 7 --seeds 5 6 7 8 9      # a part of it
    python analysis/capacity.py                 # then the table and the figures from the shipped runs

Queue order: seed 0 at every cut and both methods, then seed 1, and so on, so that a partial result
is balanced; within a seed the ends and the middle of the curve first (cuts 1, 7, 4, 5, 3, 6).
What does not depend on the training seed or the loss is made once and copied (the files
vip_loop.py would write, byte for byte, as in toy/compare.py): the full model's rows and the
teacher's curation cache from the queue's first run (toy/compare.py's shared_check.json showed
such copies equal to files made apart); per cut the block search, the pruned row and the pairs from
the cut's ReDPO run at the first seed. Each finished run's small files (no weights) go to
docs/shapes/capacity/runs/. Nothing here commits.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from infra import cli  # noqa: E402
from infra.cli import UserError  # noqa: E402
from toy import compare  # noqa: E402

CUTS = (1, 2, 3, 4, 5, 6, 7)         # motion modules removed in stage 1, of the toy teacher's 10
ORDER = (1, 7, 4, 5, 3, 6)           # within a seed: the ends and the middle of the curve first
SHIPPED_CUT = 2                      # made by toy/compare.py's sweep: s1-auto-s<S>, s1-sft-s<S>
METHODS = {"auto": ["--w_sft", "auto"], "sft": ["--method", "sft"]}


def name(k, method, seed):
    return f"c{k}-{method}-s{seed}"


def shipped_name(k, method, seed):
    """Where a run of the curve lives among the shipped runs: cut 2 is the sweep's stage-1 run."""
    return f"s1-{method}-s{seed}" if k == SHIPPED_CUT else name(k, method, seed)


def plan(seeds, cuts=CUTS):
    """The queue: [{"name", "group", "argv", "copy": [(source run, relative paths)], "after"}], seed by
    seed, each seed every cut (cut 2 left out: shipped; the ends and the middle of the curve first,
    ORDER) and both methods. The first run (the first cut's ReDPO at the first seed) makes
    everything; every other cut's ReDPO run at the first seed copies the full rows and the cache
    from it; every other run copies its cut's search, pruned row and pairs too."""
    cuts = sorted((k for k in cuts if k != SHIPPED_CUT), key=lambda k: (ORDER.index(k) if k in ORDER else len(ORDER), k))
    if not cuts or not seeds:
        return []
    first = seeds[0]
    donor = name(cuts[0], "auto", first)
    jobs = []
    for s in seeds:
        for k in cuts:
            for m, argv in METHODS.items():
                job = {"name": name(k, m, s), "group": "capacity",
                       "argv": ["--stages", "1", "--blocks", str(k)] + argv + ["--seed", str(s)]}
                cut_donor = name(k, "auto", first)
                if job["name"] == donor:
                    job["copy"] = []
                elif job["name"] == cut_donor:
                    job["copy"] = [(donor, compare.FULL + compare.CACHE)]
                else:
                    job["copy"] = [(cut_donor, compare.FULL + compare.CACHE + compare.PRUNED)]
                jobs.append(job)
    for j in jobs:
        j["after"] = sorted({src for src, _ in j["copy"]})
    return jobs


def parse_args(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="training seeds (default: 0 1 2 3 4)")
    p.add_argument("--cuts", nargs="+", type=int, default=list(CUTS),
                   help="motion modules removed, 1-10; 2 is shipped and never run (default: 1 2 3 4 5 6 7)")
    compare.add_queue_flags(p, "shapes/capacity", "shapes/capacity", "the shipped files, under runs/,")
    args = p.parse_args(argv)
    if any(not 1 <= k <= 10 for k in args.cuts):
        raise UserError(f"--cuts must lie in 1..10 (the toy teacher has 10 motion modules), got {args.cuts}")
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    return args


def main(argv=None):
    args = parse_args(argv)
    jobs = plan(sorted(set(args.seeds)), sorted(set(args.cuts)))
    dest = lambda j: os.path.join(args.docs, "runs", j["name"])  # noqa: E731
    if args.list:
        for j in jobs:
            path = compare.run_path(args.runs, j)
            state = "done" if compare.finished(path) else "started" if os.path.isdir(path) else "queued"
            print(f"{j['name']:16s} {state:8s} vip_loop.py {' '.join(j['argv'])}"
                  + (f"   (copies from {', '.join(j['after'])})" if j["after"] else ""))
        return
    compare.run_queue(list(jobs), jobs, args.runs, dest, args.jobs)
    print(f"{len(jobs)} runs finished and shipped to {os.path.join(args.docs, 'runs')}")


if __name__ == "__main__":
    cli.run_cli(main)
