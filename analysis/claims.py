"""The paper's claims (Sec. 4.2 and 4.3: Tables 1, 3 and 4), each as the paper words it, measured on
the report's runs (analysis/report.py reads them), with a verdict.

Each claim is a difference of rows, video by video (same prompt and eval seed), over the training
seeds; its interval treats prompts and training seeds as random (stats.interval). The claims:

  Table 1  each stage's cut lowers its target property (the largest drop in prune.json, Sec. 3.2);
           ReDPO "improves the explicitly targeted metric" and keeps or raises ("also enhances") the
           other properties (each other dimension, and the Average), trained - pruned; the final
           student's results "match or exceed the full model's performance in all metrics", final - full.
  Table 3  ReDPO beats SFT on each stage's target and on the final student's Average; SFT "reduces
           properties that pruned models originally excelled" more than ReDPO does: on the dimensions
           where the pruned model is not below the full model (none: no line for that stage),
           (SFT trained - SFT pruned) - (ReDPO trained - ReDPO pruned) < 0.
  Table 4  without SFT (DPO alone) temporal consistency falls and dynamic degree rises (final student,
           DPO - ReDPO); one-shot (`--oneshot`; "w/o online") is worse than online on the final
           Average, at the paper's setting and, where run, at the same total training budget.

The verdict rule, fixed in code (stats.verdict) and in docs/shapes/PLAN.md's amendment. Each claim
has a margin, its smallest effect of interest: MARGIN_FRACTION of the largest change that one cut
of the ReDPO runs makes to that dimension's mean on the block search's videos (prune.json; stage 1
shared, stages 2 and 3 averaged over the seeds); a mean over dimensions takes the same mean of
their margins. A claim that a difference has a sign is **negligible** when its 95% interval lies
inside (-margin, +margin); else it **holds** when the interval lies wholly on the claimed side of 0,
**does not hold** when wholly on the other side, and is **cannot tell** otherwise. A claim of the form
">= 0" ("matches or exceeds", "keeps or raises") is a non-inferiority claim: it **holds** when the
interval's lower end is above -margin, **does not hold** when its upper end is below -margin, else
**cannot tell**. The claims of each paper table are one family: each claim's p (the test its
verdict rests on) is Holm-adjusted within its table, and a verdict whose adjusted p is not below
0.05 reads **cannot tell** after adjustment (`verdict_holm`).

Every Average claim is read twice: on the standardised Average (each dimension divided by its
per-video standard deviation in the full model on the search's videos, then the mean: each
dimension weighs alike, as VideoScore's four do in the paper), which is the claim's reading, and on
the plain mean of the four dimensions (the paper's Average, "plain").

    python evaluate.py --report docs/shapes/runs/* --out docs/shapes   # the claims table in report.md
"""

from analysis import stats
from analysis.dimensions import DIMENSIONS

NAMES = {"visual_quality": "visual quality", "temporal_consistency": "temporal consistency",
         "dynamic_degree": "dynamic degree", "text_alignment": "text alignment", "total": "the Average"}
BOOTSTRAP = 4000      # resamples of the two-way bootstrap shown beside each interval
MARGIN_FRACTION = 0.2  # the smallest effect of interest: a fifth of the most one cut moves a dimension (PLAN.md)
Z = "standardised"     # the standardised Average's name among the dimensions of a reading
AVERAGES = ((Z, "the Average (standardised)"), ("total", "the Average (plain)"))


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


def diff(after, before, dims, scale=None):
    """{(prompt, eval seed): after - before} on the mean of dims; dims [Z]: the standardised Average
    (each dimension of `scale` divided by its spread). None when a row is missing."""
    if not after or not before or not dims or None in dims:
        return None
    if list(dims) == [Z]:
        if not scale:
            return None
        return stats.differences(after["per_video"], before["per_video"], list(scale),
                                 {d: 1 / s for d, s in scale.items()})
    return stats.differences(after["per_video"], before["per_video"], list(dims))


# ---------------------------------------------------------------------------------------------
# The scale of each dimension, from the block search's videos only (PLAN.md's amendment)
# ---------------------------------------------------------------------------------------------

def spread(runs):
    """{dimension: per-video sd of the full model on the search's videos}: the standardised Average's
    scale, from the first run with full/eval_search.json (the full model's row is the same in
    every run); {} when none has it."""
    found = next((r["full_search"] for r in runs if r.get("full_search")), None)
    return stats.spreads(found["per_video"], DIMENSIONS) if found else {}


def cut_changes(redpo):
    """Per stage (0-based), the mean over the runs of the cut's change on the search's videos,
    {dimension: pruned - base} (prune.json)."""
    out = []
    for i in range(max((len(r["stages"]) for r in redpo), default=0)):
        changes = [r["stages"][i].get("search_change") or {} for r in redpo if i < len(r["stages"])]
        dims = set.intersection(*(set(c) for c in changes)) if changes else set()
        out.append({d: sum(c[d] for c in changes) / len(changes) for d in dims})
    return out


def margins(redpo, scale, fraction=MARGIN_FRACTION):
    """{dimension: fraction x the largest |change| one cut makes to its mean on the search's videos},
    and for the Averages the mean of the four (plain: "total"; standardised: Z, each over its sd).
    A dimension no prune.json measures gets margin 0 (the verdict without a margin)."""
    changes = cut_changes(redpo)
    m = {d: fraction * max((abs(c[d]) for c in changes if d in c), default=0.0) for d in DIMENSIONS}
    m["total"] = sum(m[d] for d in DIMENSIONS) / len(DIMENSIONS)
    if scale:
        m[Z] = sum(m[d] / s for d, s in scale.items()) / len(scale)
    return m


def margin_of(m, dims):
    """The margin of a mean over dims: the same mean of their margins."""
    return sum(m.get(d, 0.0) for d in dims) / len(dims) if dims else 0.0


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


def measure(table, claim, by_seed, sign, margin=0.0, kind=stats.SIGN):
    """One claim: its interval over the per-seed differences (missing runs left out), its verdict
    and the p it rests on (Holm's adjustment follows in claims())."""
    d = stats.interval([x for x in by_seed if x], n_boot=BOOTSTRAP)
    return {"table": table, "claim": claim, "sign": sign, "margin": margin, "kind": kind, "diff": d,
            "verdict": stats.verdict(d, sign, margin, kind), "p": stats.p_value(d, sign, margin, kind)}


def adjust(found):
    """Holm within each paper table: "p_holm" and "verdict_holm" added to every claim."""
    for table in dict.fromkeys(c["table"] for c in found):
        family = [c for c in found if c["table"] == table]
        for c, p in zip(family, stats.holm([c["p"] for c in family])):
            c["p_holm"], c["verdict_holm"] = p, stats.adjusted_verdict(c["verdict"], p)
    return found


def table1(redpo, m, scale):
    """The claims of Table 1 and its text, on the ReDPO runs (m: margins, scale: spreads)."""
    out, keeps = [], stats.NON_INFERIOR
    for i in range(max(len(r["stages"]) for r in redpo)):
        runs = [(r, r["stages"][i]) for r in redpo if i < len(r["stages"])]
        targets = sorted({target(s) for _, s in runs if target(s)})
        names = ", ".join(NAMES[t] for t in targets)
        out.append(measure("Table 1", f"stage {i + 1}: the cut lowers its target property ({names}); pruned - before",
                           [diff(s["pruned"], before_stage(r, i), [target(s)]) for r, s in runs], -1,
                           margin_of(m, targets)))
        out.append(measure("Table 1", f"stage {i + 1}: ReDPO improves the explicitly targeted metric ({names}); "
                           "trained - pruned", [diff(s["trained"], s["pruned"], [target(s)]) for _, s in runs], +1,
                           margin_of(m, targets)))
        for dim in DIMENSIONS:
            others = [(r, s) for r, s in runs if target(s) and target(s) != dim]
            if others:
                out.append(measure("Table 1", f"stage {i + 1}: ReDPO keeps or raises the other properties ('also "
                                   f"enhances'): {NAMES[dim]}; trained - pruned",
                                   [diff(s["trained"], s["pruned"], [dim]) for _, s in others], +1, m[dim], keeps))
        for key, name in AVERAGES:
            if key in m:
                out.append(measure("Table 1", f"stage {i + 1}: ReDPO keeps or raises {name}; trained - pruned",
                                   [diff(s["trained"], s["pruned"], [key], scale) for _, s in runs], +1, m[key], keeps))
    for dim in DIMENSIONS:
        out.append(measure("Table 1", f"the final student matches or exceeds the full model: {NAMES[dim]}; final - full",
                           [diff(final_student(r), r["full"], [dim]) for r in redpo], +1, m[dim], keeps))
    for key, name in AVERAGES:
        if key in m:
            out.append(measure("Table 1", f"the final student matches or exceeds the full model: {name}; final - full",
                               [diff(final_student(r), r["full"], [key], scale) for r in redpo], +1, m[key], keeps))
    return out


def table3(redpo, sft, m, scale):
    """Table 3 and its text: ReDPO against SFT, runs matched by training seed."""
    pairs = matched(redpo, sft)
    out = []
    for i in range(min((min(len(r["stages"]), len(s["stages"])) for r, s in pairs), default=0)):
        stages = [(r["stages"][i], s["stages"][i]) for r, s in pairs]
        targets = sorted({target(a) for a, _ in stages if target(a)})
        out.append(measure("Table 3", f"stage {i + 1}: ReDPO beats SFT on the stage's target "
                           f"({', '.join(NAMES[t] for t in targets)}); ReDPO - SFT",
                           [diff(a["trained"], b["trained"], [target(a)]) for a, b in stages], +1, margin_of(m, targets)))
    for key, name in AVERAGES:
        if key in m:
            out.append(measure("Table 3", f"ReDPO beats SFT on the final student: {name}; ReDPO - SFT",
                               [diff(final_student(r), final_student(s), [key], scale) for r, s in pairs], +1, m[key]))
    for i in range(min((min(len(r["stages"]), len(s["stages"])) for r, s in pairs), default=0)):
        stages = [(r["stages"][i], s["stages"][i]) for r, s in pairs if kept(r["stages"][i]) and kept(s["stages"][i])]
        if not stages:      # the pruned model is below the full model on every dimension: nothing to lose
            continue
        out.append(measure("Table 3", f"stage {i + 1}: SFT loses more than ReDPO of what the pruned model did well "
                           "(the dimensions not below the full model); (SFT - pruned) - (ReDPO - pruned)",
                           [minus(diff(b["trained"], b["pruned"], kept(b)), diff(a["trained"], a["pruned"], kept(a)))
                            for a, b in stages], -1,
                           sum(margin_of(m, kept(a)) for a, _ in stages) / len(stages)))
    return out


def table4(redpo, dpo, oneshots, m, scale):
    """Table 4: DPO alone against ReDPO; each one-shot variant against online ReDPO (final students)."""
    out = []
    if dpo:
        pairs = matched(dpo, redpo)
        for dim, sign, word in (("temporal_consistency", -1, "falls"), ("dynamic_degree", +1, "rises")):
            out.append(measure("Table 4", f"without SFT, {NAMES[dim]} {word}; DPO - ReDPO (final student)",
                               [diff(final_student(a), final_student(b), [dim]) for a, b in pairs], sign, m[dim]))
    for label, runs in oneshots:
        for key, name in AVERAGES:
            if key in m:
                out.append(measure("Table 4", f"{label} is worse than online: {name}; {label} - ReDPO (final student)",
                                   [diff(final_student(a), final_student(b), [key], scale)
                                    for a, b in matched(runs, redpo)], -1, m[key]))
    return out


def scales(groups):
    """(margins, spreads) of the claims: margins() and spread() of the ReDPO group, or ({}, {})."""
    redpo = next((runs for key, runs in groups.items() if key[1] == "ReDPO"), None)
    if not redpo:
        return {}, {}
    scale = spread(redpo)
    return margins(redpo, scale), scale


def claims(groups):
    """Every claim the groups can answer ({(model, label): runs}, report.group_runs): [{"table",
    "claim", "sign", "margin", "kind", "diff" (stats.interval), "verdict", "p", "p_holm",
    "verdict_holm"}]. Needs the ReDPO group; the margins and the standardised Average's scale come
    from its runs' search-set files (margins(), spread())."""
    by_label = {key[1]: runs for key, runs in groups.items()}
    redpo = by_label.get("ReDPO")
    if not redpo:
        return []
    m, scale = scales(groups)
    out = table1(redpo, m, scale)
    if by_label.get("SFT"):
        out += table3(redpo, by_label["SFT"], m, scale)
    oneshots = [(label, runs) for label, runs in by_label.items() if label.startswith("ReDPO one-shot")]
    return adjust(out + table4(redpo, by_label.get("DPO"), oneshots, m, scale))
