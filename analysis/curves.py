"""The training curves: what redpo.py logs per step (metrics.jsonl), drawn per stage and seed for
report.md's training figure, and a healthy ReDPO stage beside a collapsing DPO-alone one for
docs/shapes/reading-the-curves.md, with where the collapse alarm (analysis/alarm.py) fired.

    python -m analysis.curves      # docs/shapes/reading-the-curves.png from the shipped runs
"""
import argparse
import os

from infra import cli, disk
from analysis import alarm


TRAINING_TERMS = (("dpo", "DPO term (Eq. 1)"), ("sft", "SFT term (Eq. 2)"), ("implicit_acc", "implicit accuracy"),
                  ("reward_margin", "reward margin"), ("err_w_gap", "winners: student - teacher error"),
                  ("err_l_gap", "losers: student - teacher error"))
ALARM_TERM = ("err_w_ratio", "winners: student / teacher error")   # what the collapse alarm reads


def training_curves(metrics):
    """One stage's metrics.jsonl rows -> (steps, {term: values} for TRAINING_TERMS and ALARM_TERM, the
    step at which the collapse alarm fired or None). The gaps: err - ref_err (student minus teacher),
    so above 0 the student does worse than the teacher on those videos."""
    rows = [m for m in metrics if "loss" in m]
    curves = {term: [m.get(term, float("nan")) for m in rows] for term, _ in TRAINING_TERMS[:4]}
    curves["err_w_gap"] = [m["err_w"] - m["ref_err_w"] for m in rows]
    curves["err_l_gap"] = [m["err_l"] - m["ref_err_l"] for m in rows]
    curves["err_w_ratio"] = [m["err_w"] / m["ref_err_w"] for m in rows]
    return [m["step"] for m in rows], curves, alarm.fired_at(metrics)


def plot_training(key, runs, path):
    """Per stage (columns), against the training step, one line per seed (metrics.jsonl): the DPO
    term, the SFT term, the implicit accuracy, the reward margin, and the student's error minus the
    teacher's on the winners and on the losers (rows); a dashed line where the collapse alarm fired
    (analysis/alarm.py). Returns False when no run has metrics."""
    n = max(len(r["stages"]) for r in runs)
    if not any(s["metrics"] for r in runs for s in r["stages"]):
        return False
    columns = [(f"stage {i + 1}", [(f"seed {r['seed']}", r["stages"][i]["metrics"]) for r in runs if i < len(r["stages"])])
               for i in range(n)]
    plot_curves(columns, TRAINING_TERMS, f"{key[1]} training ({key[0]}); dashed: the collapse alarm fired", path)
    return True


def plot_curves(columns, terms, title, path, sharey=False):
    """columns: [(title, [(label, metrics.jsonl rows)])], one panel per column and term (rows), one
    line per label, a dashed line in its colour where the collapse alarm fired; sharey="row": one
    scale across a row."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(terms), len(columns), figsize=(3.2 * len(columns), 2.0 * len(terms)),
                             squeeze=False, sharey=sharey)
    for i, (column, lines) in enumerate(columns):
        axes[0][i].set_title(column)
        axes[-1][i].set_xlabel("step")
        for label, metrics in lines:
            steps, curves, fired = training_curves(metrics)
            for j, (term, _) in enumerate(terms):
                line, = axes[j][i].plot(steps, curves[term], lw=1, label=label)
                if fired is not None:
                    axes[j][i].axvline(fired, color=line.get_color(), ls="--", lw=1)
        for j, (term, name) in enumerate(terms):
            axes[j][0].set_ylabel(name, fontsize=8)
            if term == "sft":
                axes[j][i].set_yscale("log")
            if term in ("reward_margin", "err_w_gap", "err_l_gap"):
                axes[j][i].axhline(0, color="grey", lw=0.5)
            if term == "err_w_ratio":
                axes[j][i].axhline(alarm.RATIO, color="grey", lw=0.5, ls=":")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with disk.atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


HEALTHY, COLLAPSING = ("redpo-s1", 3), ("dpo-s1", 3)   # the figure: the same seed's last stage, ReDPO and DPO alone


def plot_pair(runs_dir, path):
    """A healthy ReDPO stage beside a collapsing DPO-alone one: their training curves and what the
    alarm reads (plot_curves)."""
    columns = [(f"{title}: {name}, stage {k}",
                [(name, disk.read_jsonl(os.path.join(runs_dir, name, f"stage_{k}", "train", "metrics.jsonl")))])
               for title, (name, k) in (("ReDPO", HEALTHY), ("DPO alone", COLLAPSING))]
    plot_curves(columns, TRAINING_TERMS + (ALARM_TERM,),
                       "healthy and collapsing; dashed: the collapse alarm fired, dotted: its ratio", path, sharey="row")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="A healthy ReDPO stage beside a collapsing DPO-alone one: the figure of "
                                            "docs/shapes/reading-the-curves.md.", allow_abbrev=False)
    p.add_argument("--runs", default="docs/shapes/runs", help="the shipped runs (default: docs/shapes/runs)")
    p.add_argument("--out", default="docs/shapes/reading-the-curves.png",
                   help=f"the figure: {HEALTHY[0]} and {COLLAPSING[0]}, stage {HEALTHY[1]} "
                        "(default: docs/shapes/reading-the-curves.png)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not os.path.isdir(args.runs):
        raise cli.UserError(f"no folder {args.runs}: pass the run folders with --runs")
    plot_pair(args.runs, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli.run_cli(main)
