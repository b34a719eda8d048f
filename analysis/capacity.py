"""When does ReDPO beat SFT? The capacity curve (Sec. 3.1's argument: a student too small to copy
its teacher, trained by SFT, averages the teacher's modes; ReDPO spends its capacity on what the
teacher does better), read from the shipped runs as docs/shapes/PLAN.md fixes it.

The shapes world (toy/capacity.py's runs; cut 2 is the shipped stage-1 sweep's): per cut of k
motion modules, on the 72 held-out videos, video by video,
  damage      full - pruned on the cut's target (the first target property of its prune.json);
              the pruned row is shared by every seed, so its interval is over prompts only
  gains       trained - pruned, each method, on the target and on the standardised Average
  ReDPO - SFT on the target and on the standardised Average, matched by training seed, the
              crossed interval (prompts and training seeds random); the claim "ReDPO beats SFT"
              read with the report's margins, Holm over the cuts within each of the two families.
In 2D (toy/gmm_capacity.py's docs/gmm/capacity.json): per cut of n of the 6 blocks, the damage
(teacher - pruned precision) and ReDPO - SFT in precision and in recall, paired by seed, a t
interval over the seeds, Holm over the cuts within each metric.

    python analysis/capacity.py       # docs/shapes/capacity/README.md, capacity.png; docs/gmm/capacity.md, capacity.png

Both tables and figures are written from the shipped files alone, the same bytes on every run.
"""
import glob
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from infra import cli, disk  # noqa: E402

import numpy as np  # noqa: E402
import scipy.stats  # noqa: E402

from analysis import claims, report, stats  # noqa: E402

SHAPES = os.path.join(ROOT, "docs", "shapes")
CAPACITY_RUNS = os.path.join(SHAPES, "capacity", "runs")
SWEEP_RUNS = os.path.join(SHAPES, "sweep", "runs")
EVIDENCE = os.path.join(SHAPES, "runs")
GMM = os.path.join(ROOT, "docs", "gmm")
CUTS = (1, 2, 3, 4, 5, 6, 7)
SEEDS = (0, 1, 2, 3, 4)           # the plan's training seeds (the sweep's cut 2 also has 5-9: not used)
SHIPPED_CUT = 2                   # the sweep's s1-auto-s<S>, s1-sft-s<S> (toy/capacity.py)
METHODS = (("auto", "ReDPO"), ("sft", "SFT"))
FAMILIES = (("target", "the cut's target"), (claims.Z, "the standardised Average"))
PRECISION = 0.008                 # the evidence's required half-width, ReDPO - SFT on the plain Average (PLAN.md)

# ---------------------------------------------------------------------------------------------
# The shapes world
# ---------------------------------------------------------------------------------------------


def run_dirs(k, method, capacity_runs=CAPACITY_RUNS, sweep_runs=SWEEP_RUNS):
    """{training seed: run folder} of one cut and method among the shipped runs."""
    if k == SHIPPED_CUT:
        pattern, root = f"s1-{method}-s", sweep_runs
    else:
        pattern, root = f"c{k}-{method}-s", capacity_runs
    out = {}
    for d in glob.glob(os.path.join(root, pattern + "*")):
        tail = os.path.basename(d)[len(pattern):]
        # The plan's seeds; a capacity cut's seeds 5-9 too, which its precision rule adds (the sweep's are not used).
        seed_ok = tail.isdigit() and (int(tail) in SEEDS or k != SHIPPED_CUT)
        if seed_ok and os.path.isfile(os.path.join(d, "stage_1", "eval.json")):
            out[int(tail)] = d
    return dict(sorted(out.items()))


def cut_measures(k, redpo, sft, margins, scale):
    """One cut's row: {"k", "target", "seeds", "blocks", "pairs", "damage", "damage_z", "gain"
    {method: {"target", z}}, "diff" {"target", z}: stats.interval, "margin" {"target", z}}.
    redpo, sft: {seed: report.read_run}."""
    s1 = lambda r: r["stages"][0]           # noqa: E731
    first = next(iter(redpo.values()))
    target = claims.target(s1(first))
    seeds = sorted(set(redpo) & set(sft))
    prune_json = disk.read_json(os.path.join(first["dir"], "stage_1", "prune.json"))
    pairs = os.path.join(first["dir"], "stage_1", "pairs", "summary.json")
    row = {"k": k, "target": target, "seeds": seeds, "blocks": prune_json["removed"],
           "pairs": disk.read_json(pairs).get("pairs") if os.path.isfile(pairs) else None,
           "margin": {"target": margins.get(target, 0.0), claims.Z: margins.get(claims.Z, 0.0)}}
    both = [r for runs in (redpo, sft) for r in runs.values()]     # the same two rows in every run
    row["damage"] = stats.interval([claims.diff(r["full"], s1(r)["pruned"], [target]) for r in both])
    row["damage_z"] = stats.interval([claims.diff(r["full"], s1(r)["pruned"], [claims.Z], scale) for r in both])
    row["gain"] = {}
    for name, runs in (("ReDPO", redpo), ("SFT", sft)):
        rs = [runs[s] for s in seeds]
        row["gain"][name] = {"target": stats.interval([claims.diff(s1(r)["trained"], s1(r)["pruned"], [target]) for r in rs]),
                             claims.Z: stats.interval([claims.diff(s1(r)["trained"], s1(r)["pruned"], [claims.Z], scale)
                                                       for r in rs])}
    row["diff_total"] = stats.interval([claims.diff(s1(redpo[s])["trained"], s1(sft[s])["trained"], ["total"])
                                        for s in seeds])      # the plan's precision rule reads this one
    row["diff"] = {"target": stats.interval([claims.diff(s1(redpo[s])["trained"], s1(sft[s])["trained"], [target])
                                             for s in seeds]),
                   claims.Z: stats.interval([claims.diff(s1(redpo[s])["trained"], s1(sft[s])["trained"], [claims.Z], scale)
                                             for s in seeds])}
    return row


def with_verdicts(rows):
    """Each row's "verdict", "p", "p_holm", "verdict_holm" per family: the claim "ReDPO beats SFT"
    (a sign claim with the family's margin), Holm over the cuts within each family."""
    for fam, _ in FAMILIES:
        ps = []
        for r in rows:
            d, m = r["diff"][fam], r["margin"][fam]
            r.setdefault("verdict", {})[fam] = stats.verdict(d, +1, m, stats.SIGN)
            r.setdefault("p", {})[fam] = stats.p_value(d, +1, m, stats.SIGN)
            ps.append(r["p"][fam])
        for r, p in zip(rows, stats.holm(ps)):
            r.setdefault("p_holm", {})[fam] = p
            r.setdefault("verdict_holm", {})[fam] = stats.adjusted_verdict(r["verdict"][fam], p)
    return rows


def shapes_curve(cuts=CUTS, capacity_runs=CAPACITY_RUNS, sweep_runs=SWEEP_RUNS, evidence=EVIDENCE):
    """The rows of every cut with runs of both methods, verdicts included; and the spreads and margins."""
    scale, margins = report.fixed_scales(sorted(glob.glob(os.path.join(evidence, "redpo-s*"))))
    rows = []
    for k in cuts:
        redpo, sft = ({s: report.read_run(d) for s, d in run_dirs(k, m, capacity_runs, sweep_runs).items()}
                      for m, _ in METHODS)
        if set(redpo) & set(sft):
            rows.append(cut_measures(k, redpo, sft, margins, scale))
    return with_verdicts(rows), scale, margins


def pm(d, digits=3):
    if d is None or not math.isfinite(d.get("mean", math.nan)):
        return "-"
    half = d.get("ci95", math.nan)
    return f"{d['mean']:+.{digits}f}" + (f" ± {half:.{digits}f}" if math.isfinite(half) else "")


def answer(rows, fam):
    """The cuts whose adjusted verdict on `fam` is "holds", as (k, damage mean, diff)."""
    return [(r["k"], r["damage"]["mean"], r["diff"][fam]) for r in rows if r["verdict_holm"][fam] == "holds"]


def answer_sentence(rows, fam, name, digits=3):
    """Where the claim holds after Holm, where it does not hold (SFT ahead), and that the rest cannot be told."""
    cuts = lambda rs: "; ".join(f"cut {r['k']} (damage {r['damage']['mean']:+.{digits}f}): {pm(r['diff'][fam], digits)}"
                                for r in rs)                                                     # noqa: E731
    won = [r for r in rows if r["verdict_holm"][fam] == "holds"]
    lost = [r for r in rows if r["verdict_holm"][fam] == "does not hold"]
    text = (f"On {name} ReDPO beats SFT at " + cuts(won) if won else f"On {name} ReDPO beats SFT at no cut")
    text += f" (after Holm over the {len(rows)} cuts)"
    if lost:
        text += f"; SFT beats ReDPO at {cuts(lost)}"
    return text + "; at the other cuts it cannot be told or is negligible."


def precision_sentence(rows):
    """The plan's precision rule: ReDPO - SFT on the plain Average within PRECISION at 5 seeds, or seeds
    5-9 of that cut (`toy/capacity.py --seeds 5 6 7 8 9 --cuts K`)."""
    reading = lambda r: f"cut {r['k']} (± {r['diff_total']['ci95']:.3f} at {len(r['seeds'])} seeds)"   # noqa: E731
    met = [r for r in rows if r["diff_total"]["ci95"] <= PRECISION]
    missed = [r for r in rows if r["diff_total"]["ci95"] > PRECISION]
    added = [r for r in rows if len(r["seeds"]) > len(SEEDS)]
    text = (f"The plan's precision rule (ReDPO - SFT on the plain Average within ± {PRECISION}): met at "
            + (", ".join(f"cut {r['k']}" for r in met) or "no cut") + "; missed at " + (", ".join(map(reading, missed)) or "no cut"))
    if added:
        text += "; " + ", ".join(f"cut {r['k']}" for r in added) + " missed it at 5 seeds and has the rule's seeds 5-9"
    waiting = [r for r in missed if len(r["seeds"]) <= len(SEEDS)]
    if waiting:
        text += (", and " + ", ".join(f"cut {r['k']}" for r in waiting) + " waits for its seeds 5-9 "
                 "(`python toy/capacity.py --seeds 5 6 7 8 9 --cuts K`)")
    return text + "."


def shapes_table(rows, scale, margins):
    names = claims.NAMES
    lines = ["# When does ReDPO beat SFT? The capacity curve on the shapes world", "",
             "Generated by `python analysis/capacity.py` from [runs/](runs/) (made by `python toy/capacity.py`) "
             "and, for cut 2, the stage-1 sweep's [s1-auto-s*, s1-sft-s*](../sweep/runs/); the runs, measures and "
             "statistics are fixed in [PLAN.md](../PLAN.md) (\"The capacity curve\"). Stage 1 of the shapes world "
             "with k of its 10 motion modules removed (the block search's choice on training prompts), ReDPO "
             "(w_sft auto) and SFT at the same budget; every number on the 72 held-out videos, paired, mean ± 95% "
             "half-width. Damage: full - pruned on the cut's target (one row shared by every seed: prompts only). "
             "ReDPO - SFT: prompts and training seeds random (crossed), the claim \"ReDPO beats SFT\" with the "
             "report's margins, Holm over the cuts within each column's family. z: the standardised Average.", "",
             "![ReDPO - SFT against the cut's damage](capacity.png)", "",
             "- " + answer_sentence(rows, "target", "the cut's target"),
             "- " + answer_sentence(rows, claims.Z, "the standardised Average"),
             "- " + precision_sentence(rows), "",
             "| cut | removed | target | seeds | pairs | damage on target | damage on z | ReDPO gain, target | "
             "SFT gain, target | ReDPO gain, z | SFT gain, z | ReDPO - SFT, target | verdict (Holm) | "
             "ReDPO - SFT, z | verdict (Holm) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        blocks = ", ".join(b.replace(".motion_modules.", ".") for b in r["blocks"])
        lines.append(
            f"| {r['k']} | {blocks} | {names[r['target']]} | {len(r['seeds'])} | {r['pairs'] if r['pairs'] is not None else '-'} "
            f"| {pm(r['damage'])} | {pm(r['damage_z'], 2)} | {pm(r['gain']['ReDPO']['target'])} "
            f"| {pm(r['gain']['SFT']['target'])} | {pm(r['gain']['ReDPO'][claims.Z], 2)} | {pm(r['gain']['SFT'][claims.Z], 2)} "
            f"| {pm(r['diff']['target'])} | {r['verdict']['target']} ({r['verdict_holm']['target']}, p {r['p_holm']['target']:.2g}) "
            f"| {pm(r['diff'][claims.Z], 2)} | {r['verdict'][claims.Z]} ({r['verdict_holm'][claims.Z]}, "
            f"p {r['p_holm'][claims.Z]:.2g}) |")
    lines += ["", "Margins (the report's, from the shipped evidence runs): " + "; ".join(
        f"{names[d]} {margins[d]:.4f}" for d in claims.DIMENSIONS) + f"; z {margins[claims.Z]:.4f}. "
        "Text alignment's margin is so small that a claim on it is in effect a test against 0. "
        "z's weights 1 / (4 s_d): " + ", ".join(f"{names[d]} {1 / (4 * s):.2f}" for d, s in scale.items()) + ".",
        "", "Block names: `up_blocks.1.0` is up_blocks.1's first motion module (`motion_modules.0`). "
        "Verdict: as measured, then after Holm's correction (its p). A cut whose seeds are fewer than the "
        "plan's 5 is still running (toy/capacity.py resumes it)."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# 2D (toy/gmm_capacity.py)
# ---------------------------------------------------------------------------------------------

def seed_interval(values):
    """{"mean", "ci95", "df", "p" (two-sided t test against 0), "n"} over per-seed values."""
    v = np.asarray(values, dtype=np.float64)
    mean, half = stats.mean_ci(v)
    n = len(v)
    se = v.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
    if n < 2:
        p = math.nan
    elif se == 0:
        p = 0.0 if mean != 0 else 1.0
    else:
        p = float(2 * scipy.stats.t.sf(abs(mean) / se, n - 1))
    return {"mean": mean, "ci95": half, "df": n - 1, "p": p, "n": n}


def gmm_curve(data):
    """Per cut of capacity.json: {"removed", "parameters", "seeds", "damage" (teacher - pruned
    precision), "sft", "redpo" (mean precision, recall), "diff" {metric: seed_interval of ReDPO -
    SFT}, "verdict_holm" {metric}}; Holm over the cuts within each metric; a "holds" needs the
    interval above 0 (no margin is fixed in 2D)."""
    rows = []
    for c in data["cuts"]:
        ps = c["per_seed"]
        row = {"removed": c["removed"], "parameters": c["parameters"], "seeds": [r["seed"] for r in ps],
               "damage": seed_interval([r["teacher"]["precision"] - r["pruned"]["precision"] for r in ps]),
               "diff": {}}
        for m in ("pruned", "sft", "redpo"):
            row[m] = {k: float(np.mean([r[m][k] for r in ps])) for k in ("precision", "recall")}
        for k in ("precision", "recall"):
            row["diff"][k] = seed_interval([r["redpo"][k] - r["sft"][k] for r in ps])
        rows.append(row)
    for k in ("precision", "recall"):
        for r, p in zip(rows, stats.holm([r["diff"][k]["p"] for r in rows])):
            d = r["diff"][k]
            word = stats.verdict({"mean": d["mean"], "ci95": d["ci95"]}, +1)
            r.setdefault("verdict", {})[k] = word
            r.setdefault("verdict_holm", {})[k] = stats.adjusted_verdict(word, p)
            r.setdefault("p_holm", {})[k] = p
    return rows


def reproduces_shipped(data, metrics):
    """The 5-block cut's SFT and ReDPO numbers at the seeds both files hold equal docs/gmm/metrics.json's
    (toy/gmm.py's default run): (seeds compared, all equal)."""
    cut = next((c for c in data["cuts"] if c["removed"] == data["config"]["n_blocks"] - metrics["config"]["keep"]), None)
    if cut is None:
        return [], False
    shipped = dict(zip(metrics["config"]["seeds"], metrics["per_seed"]))
    seeds = [r["seed"] for r in cut["per_seed"] if r["seed"] in shipped]
    same = all(r[m] == shipped[r["seed"]][m] for r in cut["per_seed"] if r["seed"] in shipped for m in ("sft", "redpo"))
    return seeds, bool(seeds) and same


def gmm_table(rows, data, check):
    seeds, same = check
    lines = ["# When does ReDPO beat SFT in 2D? The capacity curve", "",
             "Generated by `python analysis/capacity.py` from [capacity.json](capacity.json) (made by "
             "`python toy/gmm_capacity.py`); fixed in [PLAN.md](../shapes/PLAN.md) (\"The same curve in 2D\"). "
             "toy/gmm.py's world and budget (2000 steps, ReDPO beta 100, w_sft 100, rounds 4), the student being "
             "the teacher with n of its 6 blocks removed. Mean over seeds, ± the 95% t half-width over the "
             f"{len(rows[0]['seeds']) if rows else 0} seeds (df {len(rows[0]['seeds']) - 1 if rows else 0}); "
             "ReDPO - SFT paired by seed, Holm over the 5 cuts within each metric.", "",
             "![ReDPO - SFT against the cut's damage, 2D](capacity.png)", "",
             f"The 5-block cut at seeds {', '.join(map(str, seeds)) or '-'} "
             + ("reproduces" if same else "does NOT reproduce") + " [metrics.json](metrics.json)'s SFT and ReDPO "
             "numbers exactly (toy/gmm.py's default run).", "",
             "| blocks removed | student parameters | damage: teacher - pruned precision | pruned precision, recall | "
             "SFT precision, recall | ReDPO precision, recall | ReDPO - SFT, precision | verdict (Holm) | "
             "ReDPO - SFT, recall | verdict (Holm) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pr = lambda m: f"{r[m]['precision']:.3f}, {r[m]['recall']:.3f}"  # noqa: E731
        lines.append(f"| {r['removed']} | {r['parameters']:,} | {pm(r['damage'])} | {pr('pruned')} | {pr('sft')} | "
                     f"{pr('redpo')} | {pm(r['diff']['precision'])} | {r['verdict']['precision']} "
                     f"({r['verdict_holm']['precision']}, p {r['p_holm']['precision']:.2g}) | {pm(r['diff']['recall'])} "
                     f"| {r['verdict']['recall']} ({r['verdict_holm']['recall']}, p {r['p_holm']['recall']:.2g}) |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

def band_plot(ax, x, series, xerr=None):
    """Points with their 95% intervals, joined by a shaded band, in order of x; series: [(label,
    means, half-widths, colour)]."""
    order = np.argsort(x)
    xs = np.asarray(x)[order]
    for label, means, halves, colour in series:
        m, h = np.asarray(means)[order], np.asarray(halves)[order]
        ax.fill_between(xs, m - h, m + h, color=colour, alpha=0.2, lw=0)
        ax.errorbar(xs, m, yerr=h, xerr=None if xerr is None else np.asarray(xerr)[order], fmt="o-",
                    color=colour, label=label, capsize=3, ms=4, lw=1)
    ax.axhline(0, color="k", lw=0.8)


def save(fig, path):
    """A PNG whose bytes depend only on the figure (no software version, no date)."""
    with disk.atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, metadata={"Software": None})


def shapes_figure(rows, margins, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    x = [r["damage"]["mean"] for r in rows]
    xerr = [r["damage"]["ci95"] for r in rows]
    for ax, (fam, name) in zip(axes, FAMILIES):
        band_plot(ax, x, [("ReDPO - SFT", [r["diff"][fam]["mean"] for r in rows],
                           [r["diff"][fam]["ci95"] for r in rows], "tab:red")], xerr)
        for r in rows:
            ax.annotate(f"{r['k']}", (r["damage"]["mean"], r["diff"][fam]["mean"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        if fam == claims.Z:
            ax.axhspan(-margins[claims.Z], margins[claims.Z], color="grey", alpha=0.15, lw=0, label="± margin")
            ax.legend(fontsize=8, loc="best")
        ax.set_xlabel("the cut's damage: full - pruned on its target (95%)")
        ax.set_ylabel(f"ReDPO - SFT on {name}")
        ax.set_title(f"{name}; number: modules removed", fontsize=9)
    fig.suptitle("Shapes world, stage 1: ReDPO - SFT against the cut's damage (72 held-out videos, 95% intervals)",
                 fontsize=10)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)


def gmm_figure(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4))
    x = [r["damage"]["mean"] for r in rows]
    band_plot(ax, x, [(f"ReDPO - SFT, {k}", [r["diff"][k]["mean"] for r in rows], [r["diff"][k]["ci95"] for r in rows], c)
                      for k, c in (("precision", "tab:red"), ("recall", "tab:blue"))])
    for r in rows:
        ax.annotate(f"{r['removed']}", (r["damage"]["mean"], r["diff"]["precision"]["mean"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.set_xlabel("the cut's damage: teacher - pruned precision")
    ax.set_ylabel("ReDPO - SFT")
    ax.set_title("2D mixture: ReDPO - SFT against the cut's damage\n(number: blocks removed of 6; 95% t intervals over seeds)",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)


def write_text(path, text):
    with disk.atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.parse_args(argv)
    rows, scale, margins = shapes_curve()
    if rows:
        os.makedirs(os.path.join(SHAPES, "capacity"), exist_ok=True)
        write_text(os.path.join(SHAPES, "capacity", "README.md"), shapes_table(rows, scale, margins))
        shapes_figure(rows, margins, os.path.join(SHAPES, "capacity", "capacity.png"))
        print("wrote docs/shapes/capacity/README.md, capacity.png: cuts "
              + ", ".join(f"{r['k']} ({len(r['seeds'])} seeds)" for r in rows))
    gmm_json = os.path.join(GMM, "capacity.json")
    if os.path.isfile(gmm_json):
        data = disk.read_json(gmm_json)
        g = gmm_curve(data)
        check = reproduces_shipped(data, disk.read_json(os.path.join(GMM, "metrics.json")))
        write_text(os.path.join(GMM, "capacity.md"), gmm_table(g, data, check))
        gmm_figure(g, os.path.join(GMM, "capacity.png"))
        print("wrote docs/gmm/capacity.md, capacity.png")
    else:
        print(f"{gmm_json} is missing: run python toy/gmm_capacity.py first")


if __name__ == "__main__":
    cli.run_cli(main)
