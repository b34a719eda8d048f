"""The paper's claims (Sec. 4.2 and 4.3: Tables 1, 3 and 4), each as the paper words it, measured on
the report's runs (analysis/report.py reads them), with a verdict.

Each claim is a difference of rows, video by video (same prompt and eval seed), over the training
seeds; its interval treats prompts and training seeds as random (stats.interval). The claims:

  Table 1  each stage's cut lowers its target property (the largest drop in prune.json, Sec. 3.2);
           ReDPO "improves the explicitly targeted metric" and "also enhances other properties" (each
           other dimension, and the Average), trained - pruned; the final student's results "match
           or exceed the full model's performance in all metrics", final - full.
  Table 3  ReDPO beats SFT on each stage's target and on the final student's Average; SFT "reduces
           properties that pruned models originally excelled" more than ReDPO does: on the dimensions
           where the pruned model is not below the full model (none: no line for that stage),
           (SFT trained - SFT pruned) - (ReDPO trained - ReDPO pruned) < 0.
  Table 4  without SFT (DPO alone) temporal consistency falls and dynamic degree rises (final student,
           DPO - ReDPO); one-shot (`--oneshot`; "w/o online") is worse than online on the final
           Average, at the paper's setting and, where run, at the same total training budget.

The verdict rule, fixed in code (stats.verdict): a claim says the difference has a sign. It **holds**
when the 95% interval lies wholly on the claimed side of 0, **does not hold** when it lies wholly on
the other side, and is **cannot tell** otherwise. A claim of the form ">= 0" ("matches or exceeds",
"keeps or raises") is tested as stated, final - full >= 0: equality cannot be shown by an interval,
so it holds only when the interval lies above 0, does not hold when it lies below 0, and an
interval across 0 is "cannot tell". No margin is added.

    python evaluate.py --report docs/shapes/runs/* --out docs/shapes   # the claims table in report.md
"""

from analysis import stats
from analysis.dimensions import DIMENSIONS

NAMES = {"visual_quality": "visual quality", "temporal_consistency": "temporal consistency",
         "dynamic_degree": "dynamic degree", "text_alignment": "text alignment", "total": "the Average"}
BOOTSTRAP = 4000      # resamples of the two-way bootstrap shown beside each interval


def final_student(run):
    """The last trained row of a run, or None."""
    done = [s["trained"] for s in run["stages"] if s["trained"]]
    return done[-1] if done else None


def before_stage(run, i):
    """The row stage i (0-based) starts from: the full model, or the previous stage's student."""
    return run["stages"][i - 1]["trained"] if i else run["full"]


def target(stage):
    """A stage's target property: the dimension its cut lowered most (prune.json), or None."""
    return stage["targets"][0] if stage["targets"] else None


def diff(after, before, dims):
    """{(prompt, eval seed): after - before} on the mean of dims; None when a row is missing."""
    if not after or not before or not dims or None in dims:
        return None
    return stats.differences(after["per_video"], before["per_video"], list(dims))


def minus(a, b):
    """a - b, video by video, over the videos both hold (None when either is None)."""
    return None if a is None or b is None else {k: x - b[k] for k, x in a.items() if k in b}


def matched(runs_a, runs_b):
    """[(run of a, run of b)] with the same training seed."""
    by_seed = {r["seed"]: r for r in runs_b}
    return [(r, by_seed[r["seed"]]) for r in runs_a if r["seed"] in by_seed]


def kept(stage):
    """The dimensions the pruned model did well: not below the full model, i.e. not among prune.json's
    target properties (Sec. 3.2: the drops relative to the full model)."""
    return [d for d in DIMENSIONS if d not in stage["targets"]]


def measure(table, claim, by_seed, sign):
    """One claim: its interval over the per-seed differences (missing runs left out) and verdict."""
    d = stats.interval([x for x in by_seed if x], n_boot=BOOTSTRAP)
    return {"table": table, "claim": claim, "sign": sign, "diff": d, "verdict": stats.verdict(d, sign)}


def table1(redpo):
    """The claims of Table 1 and its text, on the ReDPO runs."""
    out = []
    for i in range(max(len(r["stages"]) for r in redpo)):
        runs = [(r, r["stages"][i]) for r in redpo if i < len(r["stages"])]
        targets = sorted({target(s) for _, s in runs if target(s)})
        names = ", ".join(NAMES[t] for t in targets)
        out.append(measure("Table 1", f"stage {i + 1}: the cut lowers its target property ({names}); pruned - before",
                           [diff(s["pruned"], before_stage(r, i), [target(s)]) for r, s in runs], -1))
        out.append(measure("Table 1", f"stage {i + 1}: ReDPO improves the explicitly targeted metric ({names}); "
                           "trained - pruned", [diff(s["trained"], s["pruned"], [target(s)]) for _, s in runs], +1))
        for dim in DIMENSIONS:
            others = [(r, s) for r, s in runs if target(s) and target(s) != dim]
            if others:
                out.append(measure("Table 1", f"stage {i + 1}: ReDPO also enhances other properties: {NAMES[dim]}; "
                                   "trained - pruned", [diff(s["trained"], s["pruned"], [dim]) for _, s in others], +1))
        out.append(measure("Table 1", f"stage {i + 1}: ReDPO also enhances the Average; trained - pruned",
                           [diff(s["trained"], s["pruned"], ["total"]) for _, s in runs], +1))
    for dim in DIMENSIONS + ("total",):
        out.append(measure("Table 1", f"the final student matches or exceeds the full model: {NAMES[dim]}; final - full",
                           [diff(final_student(r), r["full"], [dim]) for r in redpo], +1))
    return out


def table3(redpo, sft):
    """Table 3 and its text: ReDPO against SFT, runs matched by training seed."""
    pairs = matched(redpo, sft)
    out = []
    for i in range(min((min(len(r["stages"]), len(s["stages"])) for r, s in pairs), default=0)):
        stages = [(r["stages"][i], s["stages"][i]) for r, s in pairs]
        names = ", ".join(sorted({NAMES[target(a)] for a, _ in stages if target(a)}))
        out.append(measure("Table 3", f"stage {i + 1}: ReDPO beats SFT on the stage's target ({names}); ReDPO - SFT",
                           [diff(a["trained"], b["trained"], [target(a)]) for a, b in stages], +1))
    out.append(measure("Table 3", "ReDPO beats SFT on the final student: the Average; ReDPO - SFT",
                       [diff(final_student(r), final_student(s), ["total"]) for r, s in pairs], +1))
    for i in range(min((min(len(r["stages"]), len(s["stages"])) for r, s in pairs), default=0)):
        stages = [(r["stages"][i], s["stages"][i]) for r, s in pairs if kept(r["stages"][i]) and kept(s["stages"][i])]
        if not stages:      # the pruned model is below the full model on every dimension: nothing to lose
            continue
        out.append(measure("Table 3", f"stage {i + 1}: SFT loses more than ReDPO of what the pruned model did well "
                           "(the dimensions not below the full model); (SFT - pruned) - (ReDPO - pruned)",
                           [minus(diff(b["trained"], b["pruned"], kept(b)), diff(a["trained"], a["pruned"], kept(a)))
                            for a, b in stages], -1))
    return out


def table4(redpo, dpo, oneshots):
    """Table 4: DPO alone against ReDPO; each one-shot variant against online ReDPO (final students)."""
    out = []
    if dpo:
        pairs = matched(dpo, redpo)
        for dim, sign, word in (("temporal_consistency", -1, "falls"), ("dynamic_degree", +1, "rises")):
            out.append(measure("Table 4", f"without SFT, {NAMES[dim]} {word}; DPO - ReDPO (final student)",
                               [diff(final_student(a), final_student(b), [dim]) for a, b in pairs], sign))
    for label, runs in oneshots:
        out.append(measure("Table 4", f"{label} is worse than online: the Average; {label} - ReDPO (final student)",
                           [diff(final_student(a), final_student(b), ["total"]) for a, b in matched(runs, redpo)], -1))
    return out


def claims(groups):
    """Every claim the groups can answer ({(model, label): runs}, report.group_runs): [{"table",
    "claim", "sign", "diff" (stats.interval), "verdict"}]. Needs the ReDPO group."""
    by_label = {key[1]: runs for key, runs in groups.items()}
    redpo = by_label.get("ReDPO")
    if not redpo:
        return []
    out = table1(redpo)
    if by_label.get("SFT"):
        out += table3(redpo, by_label["SFT"])
    oneshots = [(label, runs) for label, runs in by_label.items() if label.startswith("ReDPO one-shot")]
    return out + table4(redpo, by_label.get("DPO"), oneshots)
