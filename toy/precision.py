"""How many held-out prompts and training seeds a paired difference needs: its variance components
(prompts, training seeds, residual; crossed random effects on cells of prompt x training seed, the
eval seeds averaged) from shipped runs, and the 95% half-width they project for other P and S
(Satterthwaite's df). docs/shapes/PLAN.md uses it for the final ReDPO - SFT difference on the Average.

    python toy/precision.py --runs docs/shapes/runs --a redpo --b sft --rel stage_3/eval.json
    python toy/precision.py --runs docs/shapes/runs --a redpo --b redpo --rel stage_3/eval.json --rel_b full/eval.json
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from infra import cli, disk

import numpy as np  # noqa: E402
from scipy import stats as sps  # noqa: E402


def components(y):
    """y (P, S) cells -> (sd_prompt^2, sd_seed^2, sd_residual^2), each estimated below zero taken as 0."""
    P, S = y.shape
    g, rows, cols = y.mean(), y.mean(1, keepdims=True), y.mean(0, keepdims=True)
    ms_p = S * ((rows - g) ** 2).sum() / (P - 1)
    ms_s = P * ((cols - g) ** 2).sum() / (S - 1)
    ms_e = ((y - rows - cols + g) ** 2).sum() / ((P - 1) * (S - 1))
    return max((ms_p - ms_e) / S, 0.0), max((ms_s - ms_e) / P, 0.0), ms_e


def half_width(v_p, v_s, v_e, P, S):
    """(95% half-width, df) of the mean of P x S cells with those components."""
    ms_p, ms_s, ms_e = v_e + S * v_p, v_e + P * v_s, v_e
    df = (ms_p + ms_s - ms_e) ** 2 / (ms_p ** 2 / (P - 1) + ms_s ** 2 / (S - 1) + ms_e ** 2 / ((P - 1) * (S - 1)))
    return float(sps.t.ppf(0.975, df) * np.sqrt(v_p / P + v_s / S + v_e / (P * S))), float(df)


def cells(runs, a, b, rel_a, rel_b, seeds, key):
    """(P, S): per prompt and training seed, the mean over eval seeds of run a's rel_a - run b's rel_b."""
    cols = []
    for s in seeds:
        ja, jb = (disk.read_json(os.path.join(runs, f"{name}-s{s}", rel))["per_video"]
                  for name, rel in ((a, rel_a), (b, rel_b)))
        before = {(v["prompt"], v["seed"]): v["scores"][key] for v in jb}
        d = {}
        for v in ja:
            d.setdefault(v["prompt"], []).append(v["scores"][key] - before[(v["prompt"], v["seed"])])
        cols.append({p: np.mean(x) for p, x in d.items()})
    return np.array([[c[p] for c in cols] for p in sorted(cols[0])])


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--runs", required=True, help="folder of <variant>-s<seed>/ runs")
    p.add_argument("--a", default="redpo", help="variant of the minuend (default: redpo)")
    p.add_argument("--b", default="sft", help="variant of the subtrahend (default: sft)")
    p.add_argument("--rel", default="stage_3/eval.json", help="eval json of a, in its run (default: stage_3/eval.json)")
    p.add_argument("--rel_b", default=None, help="eval json of b (default: --rel)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    p.add_argument("--key", default="total", help="dimension (default: total, the Average)")
    args = p.parse_args(argv)
    y = cells(args.runs, args.a, args.b, args.rel, args.rel_b or args.rel, args.seeds, args.key)
    v = components(y)
    print(f"{args.a} - {args.b} ({args.key}): mean {y.mean():+.4f}, {y.shape[0]} prompts x {y.shape[1]} seeds; "
          f"sd prompt {v[0] ** 0.5:.4f}, seed {v[1] ** 0.5:.4f}, residual {v[2] ** 0.5:.4f}")
    for P, S in ((18, 3), (18, 5), (18, 10), (36, 5), (72, 5)):
        h, df = half_width(*v, P, S)
        print(f"  {P} prompts x {S} seeds: 95% half-width {h:.4f} (df {df:.1f})")


if __name__ == "__main__":
    cli.run_cli(main)
