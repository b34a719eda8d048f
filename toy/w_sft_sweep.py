"""The w_sft analysis of the paper's supplement on the shapes world: stage 1 trained at w_sft = 0
(DPO alone), 1e2 ... 1e5, the paper's rule (auto) and SFT alone, against the pruned model it starts
from; and the same at 2x and 4x the training steps (the budget check).

For each setting, over the training seeds, the paired change trained - pruned on the 18 held-out
prompts x 4 eval seeds: on the stage's target property (the dimension whose drop was largest on
the search prompts), on each other dimension, and on the Average. Intervals treat prompts and
training seeds as random (stats.interval, the report's analysis).

    python toy/w_sft_sweep.py                      # docs/shapes/sweep/w_sft.png and w_sft.md
    python toy/w_sft_sweep.py --runs docs/shapes/sweep/runs --out docs/shapes/sweep
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from infra import cli, disk

import numpy as np  # noqa: E402

from analysis import stats  # noqa: E402
from rewards import DIMENSIONS  # noqa: E402

KEYS = DIMENSIONS + ("total",)
NAMES = {"visual_quality": "visual quality", "temporal_consistency": "temporal consistency",
         "dynamic_degree": "dynamic degree", "text_alignment": "text alignment", "total": "Average"}
X_DPO, X_SFT = 10.0, 1e7   # where w_sft = 0 and SFT alone (w_sft -> infinity) sit on the log axis


def per_video(eval_json, key):
    return {(v["prompt"], v["seed"]): v["scores"][key] for v in eval_json["per_video"] if v["scores"][key] is not None}


def read_runs(runs_dir):
    """Every finished sweep run: {"setting", "seed", "w_sft" (used), "target", "diff": {key: {(prompt,
    eval seed): trained - pruned}}}."""
    out = []
    for name in sorted(os.listdir(runs_dir)):
        stage = os.path.join(runs_dir, name, "stage_1")
        if not os.path.isfile(os.path.join(stage, "DONE")):
            continue
        trained, pruned = (disk.read_json(os.path.join(stage, f)) for f in ("eval.json", "eval_pruned.json"))
        w = os.path.join(stage, "train", "w_sft.json")
        out.append({"setting": name[len("s1-"):].rsplit("-s", 1)[0], "seed": int(name.rsplit("-s", 1)[1]),
                    "w_sft": disk.read_json(w)["w_sft"] if os.path.isfile(w) else None,
                    "target": disk.read_json(os.path.join(stage, "prune.json"))["target_properties"][0][0],
                    "diff": {k: {v: per_video(trained, k)[v] - x for v, x in per_video(pruned, k).items()} for k in KEYS}})
    return out


def x_position(setting, runs):
    base = setting.split("-e")[0]
    if base == "dpo":
        return X_DPO
    if base == "sft":
        return X_SFT
    if base == "auto":
        return float(np.mean([r["w_sft"] for r in runs if r["setting"] == "auto"]))
    return float(base[1:])


def summarise(runs):
    """{setting: {"x", "seeds", "w_sft", "target", key: interval}} in sweep order."""
    rows = {}
    for setting in dict.fromkeys(r["setting"] for r in runs):
        mine = [r for r in runs if r["setting"] == setting]
        targets = {r["target"] for r in mine}
        row = {"x": x_position(setting, runs), "seeds": sorted(r["seed"] for r in mine),
               "w_sft": [r["w_sft"] for r in mine], "target": "/".join(sorted(targets))}
        for k in KEYS:
            row[k] = stats.interval([r["diff"][k] for r in mine])
        rows[setting] = row
    return dict(sorted(rows.items(), key=lambda kv: (kv[1]["x"], kv[0])))


def table(rows):
    head = ["setting", "w_sft used", "seeds", "target"] + [NAMES[k] for k in KEYS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for setting, r in rows.items():
        ws = [w for w in r["w_sft"] if w is not None and setting.split("-e")[0] not in ("dpo", "sft")]  # no SFT weight
        used = "-" if not ws else f"{min(ws):.4g}" if min(ws) == max(ws) else f"{min(ws):.4g}-{max(ws):.4g}"
        cells = [f"{r[k]['mean']:+.3f} ± {r[k]['ci95']:.3f}" for k in KEYS]
        lines.append("| " + " | ".join([setting, used, str(len(r["seeds"])), r["target"]] + cells) + " |")
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    target = next(iter(rows.values()))["target"].split("/")[0]
    panels = [(f"target: {NAMES[target]}", [target]), ("other dimensions", [k for k in DIMENSIONS if k != target]),
              ("Average", ["total"])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharex=True)
    # The grid joined by a line; the rule's w_sft (auto) a star; 4 and 8 epochs beside their point.
    kinds = (("grid", "o", 1.0, lambda s: "-e" not in s and s != "auto"), ("auto (the rule)", "*", 1.0, lambda s: s == "auto"),
             ("4 epochs", "s", 1.3, lambda s: s.endswith("-e4")), ("8 epochs", "^", 1.7, lambda s: s.endswith("-e8")))
    for ax, (title, keys) in zip(axes, panels):
        for i, k in enumerate(keys):
            for kind, marker, shift, member in kinds:
                pts = [(r["x"] * shift, r[k]) for s, r in rows.items() if member(s)]
                if not pts:
                    continue
                label = NAMES[k] if kind == "grid" and len(keys) > 1 else kind if kind != "grid" and i == 0 else None
                ax.errorbar([x for x, _ in pts], [d["mean"] for _, d in pts], yerr=[d["ci95"] for _, d in pts],
                            marker=marker, ls="-" if kind == "grid" else "none", color=f"C{i}", capsize=2,
                            ms=9 if marker == "*" else 4, label=label)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xscale("log")
        ax.set_xticks([X_DPO, 1e2, 1e3, 1e4, 1e5, X_SFT], ["0\n(DPO)", "1e2", "1e3", "1e4", "1e5", "SFT"])
        ax.minorticks_off()
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("w_sft")
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=7)
    axes[0].set_ylabel("stage 1: trained - pruned (95% interval)")
    fig.tight_layout()
    with disk.atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def write(runs_dir, out_dir):
    """w_sft.png and w_sft.md in out_dir from the finished runs in runs_dir."""
    runs = read_runs(runs_dir)
    if not runs:
        return None
    rows = summarise(runs)
    plot(rows, os.path.join(out_dir, "w_sft.png"))
    text = ("# Stage 1 against w_sft (toy/w_sft_sweep.py)\n\nTrained - pruned, paired on 18 held-out prompts x "
            "4 eval seeds, mean ± 95% interval with prompts and training seeds random. Settings: the w_sft "
            "grid; `auto` (the paper's rule); `-e4` / `-e8`: 2x / 4x the training steps.\n\n" + table(rows) + "\n")
    with disk.atomic_file(os.path.join(out_dir, "w_sft.md")) as tmp, open(tmp, "w") as f:
        f.write(text)
    print(f"wrote {os.path.join(out_dir, 'w_sft.png')} and w_sft.md from {len(runs)} runs", flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--runs", default=os.path.join(ROOT, "docs", "shapes", "sweep", "runs"),
                   help="the shipped sweep runs (default: docs/shapes/sweep/runs)")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "shapes", "sweep"), help="where w_sft.png and w_sft.md go")
    args = p.parse_args(argv)
    if not os.path.isdir(args.runs) or write(args.runs, args.out) is None:
        raise cli.UserError(f"no finished sweep run in {args.runs}; run toy/compare.py first")


if __name__ == "__main__":
    cli.run_cli(main)
