"""The report (Sec. 4, Tables 1, 3 and 4): every run's rows, paired differences, methods side by side.

One run directory (vip_loop.py's layout) is one method at one training seed. The report groups
runs by method (ReDPO, SFT, DPO, each online or one-shot); within a group the runs are training
seeds. Every row's eval json holds the same eval prompts and seeds, so rows are compared **paired**,
video by video: pruned vs the model before it, trained vs pruned, method vs method. A difference's
95% interval treats prompts and training seeds as random (stats.interval: cell means over the eval
seeds, crossed prompt x seed ANOVA, Satterthwaite df; a difference the same in every seed counts once).

    python evaluate.py --report runs/NAME                        # runs/NAME/report.md, grids, plots
    python evaluate.py --report runs/A runs/B --out runs         # several methods / seeds, one report
    python evaluate.py --report docs/shapes/runs/* --out docs/shapes   # the shapes world's report

report.md holds: what was run, Table 1 (per group, each row's per-dimension mean; with several
seeds the mean over seeds and their spread), the paired differences of each stage, the methods
compared at each stage and at the end, the paper's claims as the paper words them with a verdict
(analysis/claims.py), cost per row, and teacher | pruned | trained video grids. Beside it:
scores_<group>.png (per-dimension bars with 95% intervals) and training_<group>.png (the DPO term,
SFT term, implicit accuracy, reward margin and the winners' and losers' error gaps per stage, from
metrics.jsonl, with where the collapse alarm fired).

The verdict of a claim that a difference has a sign: **negligible** when its 95% interval lies
inside (-margin, +margin), else **holds** when it lies wholly on that side of 0, **does not hold**
when wholly on the other side, **cannot tell** otherwise. The paper's ">= 0" claims ("the final
student matches or exceeds the full model", "keeps or raises") are non-inferiority claims: they hold
when the interval's lower end is above -margin. Each verdict is shown as measured and after Holm's
correction within its paper table (claims.py gives the margins and the families).
"""
import json
import math
import os
import re

from infra import disk
from infra.cli import UserError
from infra.run_folder import videos_path  # also read as report.videos_path

import numpy as np

from analysis import claims
from analysis import stats
from analysis import vbench_eval
from analysis.curves import plot_training
from analysis.dimensions import DIMENSIONS

METHOD_NAMES = {"redpo": "ReDPO", "sft": "SFT", "dpo": "DPO"}
COLUMN_NAMES = {"visual_quality": "Visual Quality", "temporal_consistency": "Temporal Consistency",
                "dynamic_degree": "Dynamic Degree", "text_alignment": "Text Alignment", "total": "Average"}
KEYS = tuple(DIMENSIONS) + ("total",)


def fmt(x, digits=3, sign=False):
    """A score as tables print it: 0.812, +0.035 with sign, n/a for None or NaN."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _diff(d):
    """'+0.035 ± 0.015' (paired mean and 95% half width)."""
    return f"{fmt(d['mean'], sign=True)} ± {fmt(d['ci95'])}"


# ---------------------------------------------------------------------------------------------
# Reading runs
# ---------------------------------------------------------------------------------------------

def _stage_dirs(run_dir):
    """[(k, path)] of runs/NAME/stage_k, by k."""
    if not os.path.isdir(run_dir):
        return []
    stages = [(int(n.split("_", 1)[1]), os.path.join(run_dir, n)) for n in os.listdir(run_dir)
              if n.startswith("stage_") and n.split("_", 1)[1].isdigit()]
    return sorted(stages)


def read_run(run_dir):
    """One run: {"dir", "name", "config", "label" (method, "one-shot" added), "seed", "full" (eval
    dict), "full_search" (the full model on the block search's prompts, or None), "stages": [{"k",
    "pruned", "trained" (eval dicts or None), "targets" (prune.json's target properties, largest drop
    first), "search_change" (prune.json: the cut's pruned - base mean per dimension on the search's
    videos), "metrics" (metrics.jsonl rows)}]}."""
    config_path = os.path.join(run_dir, "config.json")
    config = disk.read_json(config_path) if os.path.isfile(config_path) else {}
    label = METHOD_NAMES.get(str(config.get("method", "")).lower(), config.get("method") or "trained")
    label += " one-shot" if config.get("oneshot") else ""
    # toy/compare.py's variant trained as long in total as the online run: a group of its own.
    label += " (same budget)" if os.path.basename(os.path.normpath(run_dir)).rsplit("-s", 1)[0].endswith("-budget") else ""
    maybe = lambda p: disk.read_json(p) if os.path.isfile(p) else None          # noqa: E731
    run = {"dir": run_dir, "name": os.path.basename(os.path.normpath(run_dir)), "config": config,
           "label": label, "seed": config.get("seed", 0), "full": maybe(os.path.join(run_dir, "full", "eval.json")),
           "full_search": maybe(os.path.join(run_dir, "full", "eval_search.json")), "stages": []}
    run["model"] = config.get("model") or (run["full"] or {}).get("model", "?")
    for k, stage in _stage_dirs(run_dir):
        prune_json = maybe(os.path.join(stage, "prune.json")) or {}
        metrics_path = os.path.join(stage, "train", "metrics.jsonl")
        metrics = []
        if os.path.isfile(metrics_path):
            with open(metrics_path) as f:
                metrics = [json.loads(line) for line in f if line.strip()]
        run["stages"].append({"k": k, "pruned": maybe(os.path.join(stage, "eval_pruned.json")),
                              "trained": maybe(os.path.join(stage, "eval.json")),
                              "targets": [d for d, _ in prune_json.get("target_properties", [])],
                              "search_change": search_change(prune_json),
                              "metrics": metrics})
    return run


def search_change(prune_json):
    """{dimension: pruned - base}: the cut's change of each mean on the block search's videos
    (prune.json), over the dimensions the reward measures in both."""
    def means(scores):      # flat {dim: mean} or eval.json's {dim: {"mean", ...}}; null: not measured
        means = {d: v["mean"] if isinstance(v, dict) else v for d, v in (scores or {}).items()}
        return {d: v for d, v in means.items() if v is not None and math.isfinite(v)}
    pruned, base = means(prune_json.get("pruned_scores")), means(prune_json.get("base_scores"))
    return {d: pruned[d] - base[d] for d in pruned if d in base}


def check_comparable(runs):
    """Refuse, in one line naming the runs and the setting, runs one report cannot compare: runs of
    other models, rewards or eval sets (rows are paired video by video); other pruning schedules (the
    same blocks per stage, a one-shot run the same blocks in all); two runs of one method at the same
    training seed (a group's seeds would repeat); runs of one method with different numbers of
    finished stages (its Final row would pair one run's stage 3 with another's stage 1)."""
    def refuse(a, b, why):
        raise UserError(f"{a['dir']} and {b['dir']} {why}")

    def eval_set(r):
        return [(v["prompt"], v["seed"]) for v in r["full"]["per_video"]]

    def size(r):
        return f"{len({p for p, _ in eval_set(r)})} prompts, {len(eval_set(r))} videos"

    def blocks(r):
        b = r["config"].get("blocks")
        return b if isinstance(b, list) else None

    first = runs[0]
    online = next((r for r in runs if blocks(r) and not r["config"].get("oneshot")), None)
    for r in runs[1:]:
        for name, value in (("models", lambda x: x["model"]), ("rewards", lambda x: x["full"].get("reward", "?"))):
            if value(r) != value(first):
                refuse(first, r, f"have different {name} ({value(first)} vs {value(r)}): one report compares "
                       "runs of one model and reward; report them apart")
        if eval_set(r) != eval_set(first):
            refuse(first, r, f"have different eval sets ({size(first)} vs {size(r)}"
                   f"{', other prompts or seeds' if size(r) == size(first) else ''}): rows are compared video by "
                   "video; report them apart")
        if blocks(r) and blocks(first) and sum(blocks(r)) != sum(blocks(first)):
            refuse(first, r, f"remove {sum(blocks(first))} and {sum(blocks(r))} blocks in all (--blocks "
                   f"{' '.join(map(str, blocks(first)))} vs {' '.join(map(str, blocks(r)))}): report them apart")
        if online and blocks(r) and not r["config"].get("oneshot") and blocks(r) != blocks(online):
            refuse(online, r, f"prune on different schedules (--blocks {' '.join(map(str, blocks(online)))} vs "
                   f"{' '.join(map(str, blocks(r)))}, blocks per stage): report them apart")
    seen = {}
    for r in runs:
        if (r["label"], r["seed"]) in seen:
            refuse(seen[r["label"], r["seed"]], r, f"are both {r['label']} at training seed {r['seed']}: a report "
                   "takes one run per method and seed; pass one of them")
        seen[r["label"], r["seed"]] = r
        same = [x for x in runs if x["label"] == r["label"]]
        finished = [sum(1 for s in x["stages"] if s["trained"]) for x in same]
        if finished[0] != finished[same.index(r)]:
            refuse(same[0], r, f"are both {r['label']} with {finished[0]} and {finished[same.index(r)]} finished "
                   "stages: finish them (run the same command again) or report them apart")


def fixed_scales(redpo_dirs):
    """(spreads, margins) of the shipped evidence from its ReDPO run folders: the standardised
    Average's scale and every margin as the report uses them (claims.scales), so that a test fixed
    on them later (docs/shapes/PLAN.md's capacity curve and confirmation) uses the same numbers."""
    runs = [read_run(d) for d in redpo_dirs]
    if not runs:
        raise UserError("no ReDPO runs to take the spreads and margins from")
    scale = claims.spread(runs)
    return scale, claims.margins(runs, scale)


def group_runs(runs):
    """{(model, label): [runs sorted by training seed]}, in the order first seen."""
    groups = {}
    for run in runs:
        groups.setdefault((run["model"], run["label"]), []).append(run)
    return {key: sorted(rs, key=lambda r: r["seed"]) for key, rs in groups.items()}


def table_rows(run):
    """[(stage, label, eval dict, previous eval dict)]: Full, then per stage Pruned and trained."""
    rows = [("Full", "-", run["full"], None)] if run["full"] else []
    before = run["full"]
    for s in run["stages"]:
        if s["pruned"]:
            rows.append((f"Stage {s['k']}", "Pruned", s["pruned"], before))
        if s["trained"]:
            rows.append((f"Stage {s['k']}", run["label"], s["trained"], s["pruned"]))
            before = s["trained"]
    return rows


def final(run):
    """The last trained row of a run (its final student), or None."""
    done = [s["trained"] for s in run["stages"] if s["trained"]]
    return done[-1] if done else None


def paired(rows_after, rows_before, keys=KEYS):
    """{key: stats.interval}: after - before video by video, runs i of the two lists paired (training
    seeds), prompts and training seeds random."""
    pairs = [(a["per_video"], b["per_video"]) for a, b in zip(rows_after, rows_before) if a and b]
    return {k: stats.interval([stats.differences(a, b, [k]) for a, b in pairs]) for k in keys}


# ---------------------------------------------------------------------------------------------
# The sections of report.md
# ---------------------------------------------------------------------------------------------

def table1(key, runs):
    """Table 1's shape for one group: per row the mean over seeds of each dimension; with several
    seeds, the Average's spread over seeds (sd) beside it."""
    name = f"{key[1]} ({key[0]}, {len(runs)} seed{'s' if len(runs) > 1 else ''}: " \
           f"{', '.join(str(r['seed']) for r in runs)})"
    header = ["Stage", "Method"] + [COLUMN_NAMES[d] for d in KEYS] + ["Average: sd over seeds", "Videos", "Param (M)"]
    lines = [f"### {name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    per_run = [table_rows(r) for r in runs]
    for i, (stage, label, result, _) in enumerate(per_run[0]):
        same = [rows[i][2] for rows in per_run if i < len(rows)]
        means = {d: [r["scores"][d]["mean"] for r in same if r["scores"][d]["mean"] is not None] for d in KEYS}
        sd = float(np.std(means["total"], ddof=1)) if len(means["total"]) > 1 else float("nan")
        cells = [stage, label] + [fmt(float(np.mean(means[d])) if means[d] else None) for d in KEYS]
        cells += [fmt(sd), str(result["num_videos"]), fmt(result["params"]["trainable"] / 1e6)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def paired_table(key, runs):
    """Per stage: pruned - the model before it, trained - pruned; and final - full. Over the group's
    seeds (paired), with the per-seed Average differences to show the spread."""
    header = ["Comparison", "Target"] + [COLUMN_NAMES[d] for d in KEYS] + ["Average per seed"]
    lines = [f"Paired differences, {key[1]} (mean ± 95% interval; prompts and training seeds random):", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    n_stages = max(len(r["stages"]) for r in runs)

    def row(title, target, after, before):
        d = paired(after, before)
        per_seed = [stats.mean_ci(list(stats.differences(a["per_video"], b["per_video"], ["total"]).values()))[0]
                    for a, b in zip(after, before) if a and b]
        cells = [title, target] + [_diff(d[k]) for k in KEYS] + [" / ".join(fmt(x, 3, True) for x in per_seed)]
        lines.append("| " + " | ".join(cells) + " |")

    for i in range(n_stages):
        stage = [r["stages"][i] if i < len(r["stages"]) else None for r in runs]
        previous = [(r["stages"][i - 1]["trained"] if i else r["full"]) if s else None for r, s in zip(runs, stage)]
        targets = ", ".join(sorted({s["targets"][0] for s in stage if s and s["targets"]})) or "-"
        row(f"Stage {i + 1}: Pruned - before", targets, [s and s["pruned"] for s in stage], previous)
        row(f"Stage {i + 1}: {key[1]} - Pruned", targets, [s and s["trained"] for s in stage],
            [s and s["pruned"] for s in stage])
    row("Final - Full", "-", [final(r) for r in runs], [r["full"] for r in runs])
    return lines


def methods_table(groups, reference):
    """Every other group minus the reference group, paired video by video, runs matched by seed:
    at each stage's trained row (same stage count only) and at the final student."""
    ref_key, ref_runs = reference
    header = ["Comparison"] + [COLUMN_NAMES[d] for d in KEYS]
    lines = [f"Methods compared with {ref_key[1]} (paired, runs matched by training seed; prompts and seeds random):", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, runs in groups.items():
        if key == ref_key:
            continue
        by_seed = {r["seed"]: r for r in ref_runs}
        matched = [(r, by_seed[r["seed"]]) for r in runs if r["seed"] in by_seed]
        if not matched:
            continue
        if all(len(a["stages"]) == len(b["stages"]) for a, b in matched):
            for i in range(len(matched[0][0]["stages"])):
                d = paired([a["stages"][i]["trained"] for a, _ in matched], [b["stages"][i]["trained"] for _, b in matched])
                lines.append("| " + " | ".join([f"Stage {i + 1}: {key[1]} - {ref_key[1]}"] + [_diff(d[k]) for k in KEYS]) + " |")
        d = paired([final(a) for a, _ in matched], [final(b) for _, b in matched])
        lines.append("| " + " | ".join([f"Final: {key[1]} - {ref_key[1]}"] + [_diff(d[k]) for k in KEYS]) + " |")
    return lines


def scales_line(m, scale):
    """The margins and the standardised Average's spreads the verdicts used (claims.scales)."""
    dims = [d for d in KEYS if d in m] + ([claims.Z] if claims.Z in m else [])
    parts = [f"{claims.NAMES.get(d, 'the standardised Average')} {fmt(m[d], 4)}"
             + (f" (sd {fmt(scale[d], 4)})" if d in scale else "") for d in dims]
    return ("Margins (sd: the full model's per-video spread on the search's videos, the standardised Average's "
            "scale): " + "; ".join(parts) + ".")


def claims_table(found, m=None, scale=None):
    """The claims section: the rule, the margins, then one line per claim (claims.claims) with its
    verdict before and after Holm's correction, its margin, p-values and analysis."""
    lines = ["Verdict (analysis/claims.py; docs/shapes/PLAN.md's amendment): a claim that a difference has a sign is "
             "**negligible** when its 95% interval lies inside (-margin, +margin), else **holds** when the interval "
             "lies wholly on the claimed side of 0, **does not hold** when wholly on the other side, else **cannot "
             "tell**; a \">= 0\" claim (\"matches or exceeds\", \"keeps or raises\") is non-inferiority: **holds** "
             "when the interval's lower end is above -margin, **does not hold** when its upper end is below -margin. "
             f"Margin: {claims.MARGIN_FRACTION:g} x the largest change one cut makes to the dimension's mean on the "
             "block search's videos (a mean of dimensions: the mean of their margins). After Holm: the claims of each "
             "paper table are one family; a verdict whose Holm-adjusted p (of the test it rests on) is not below 0.05 "
             "reads cannot tell. The standardised Average divides each dimension by its per-video sd in the full "
             "model on the search's videos; it is the Average claims' reading, the plain Average (the paper's) is "
             "beside it. Interval: per (prompt, training seed) the mean over eval seeds, prompts x seeds "
             "crossed random effects (two-way ANOVA, Satterthwaite df); a difference the same in every seed counts "
             "once (prompts only). Smallest detectable: the true difference found with 80% power, "
             "(t_0.975 + t_0.8) x SE. Bootstrap: prompts and seeds resampled independently, a check only: with 3 "
             "seeds it runs narrow (in simulation it covers ~75% where seeds dominate; tests/test_stats.py).", ""]
    if m:
        lines += [scales_line(m, scale or {}), ""]
    lines += ["| Table | Claim (as the paper words it); difference | Verdict | After Holm | Mean ± 95% | Margin | p "
              "| Holm p | Analysis | Prompts | Seeds | df | Smallest detectable | Bootstrap 95% |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in found:
        d = c["diff"]
        boot = d.get("bootstrap")
        cells = [c["table"], c["claim"], f"{c['verdict']}", f"**{c['verdict_holm']}**", _diff(d), fmt(c["margin"], 4),
                 fmt_p(c["p"]), fmt_p(c["p_holm"]), d["analysis"], str(d["n_prompts"]),
                 str(d["n_seeds"]), fmt(d["df"], 1), fmt(d["mde"]),
                 f"[{fmt(boot[0], sign=True)}, {fmt(boot[1], sign=True)}]" if boot else "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def fmt_p(p):
    """A p-value as the claims table prints it: 0.012, <0.001, n/a."""
    if p is None or not math.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


# ---------------------------------------------------------------------------------------------
# Pictures: video grids and plots
# ---------------------------------------------------------------------------------------------

GRID_LABELS = ("teacher", "pruned", "trained")
MIN_CLIP = 128   # px: the grids scale every clip up (nearest neighbour) until its shorter side is at least this


def label_band(text, width, height):
    """A white (height, width, 3) uint8 band with `text` centred in black (Pillow's own font)."""
    from PIL import Image, ImageDraw, ImageFont
    try:
        font = ImageFont.load_default(size=max(10, int(height * 0.7)))
    except TypeError:     # Pillow before 10.1: one bitmap size only
        font = ImageFont.load_default()
    band = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(band)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text(((width - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top), text, fill=(0, 0, 0), font=font)
    return np.asarray(band, dtype=np.uint8)


def video_grid(videos, labels=GRID_LABELS, min_size=MIN_CLIP, separator=4):
    """Clips side by side, each scaled up by the same whole factor (nearest neighbour, so no pixel
    is invented) until the smallest clip's shorter side is at least `min_size`, with a label band
    above each and white gaps between: [(F, H, W, 3) uint8, ...] -> (F, band + H', W', 3), both
    sides even (video encoders want them so)."""
    frames = min(len(v) for v in videos)
    scale = max(1, math.ceil(min_size / min(min(v.shape[1:3]) for v in videos)))
    height = max(v.shape[1] for v in videos) * scale
    band_height = 2 * max(10, height // 24)      # even; the label text is 0.7 of it
    parts = []
    for i, v in enumerate(videos):
        if i:
            parts.append(np.full((frames, band_height + height, separator, 3), 255, dtype=np.uint8))
        clip = v[:frames].repeat(scale, axis=1).repeat(scale, axis=2)      # (F, H s, W s, 3)
        column = np.full((frames, band_height + height, clip.shape[2], 3), 255, dtype=np.uint8)
        column[:, :band_height] = label_band(labels[i] if labels else "", clip.shape[2], band_height)
        column[:, band_height:band_height + clip.shape[1]] = clip
        parts.append(column)
    grid = np.concatenate(parts, axis=2)
    pad = ((0, 0), (0, grid.shape[1] % 2), (0, grid.shape[2] % 2), (0, 0))
    return np.pad(grid, pad, constant_values=255)


def _load_videos(json_path):
    path = videos_path(json_path)
    if not os.path.isfile(path):
        return None
    z = disk.load_npz(path)
    return {"frames": z["frames"], "prompts": [str(p) for p in z["prompts"]], "seeds": [int(s) for s in z["seeds"]]}


def write_grids(run_dir, out_dir, max_videos=2):
    """teacher | pruned | trained for the same prompt and seed, per stage: mp4 + gif under
    out_dir/grids. Returns [(stage, prompt, gif path)]; skips stages whose videos are missing or
    were generated from other prompts / seeds."""
    full = os.path.join(run_dir, "full", "eval.json")
    teacher = _load_videos(full)
    fps = disk.read_json(full).get("generation", {}).get("fps", 8) if os.path.isfile(full) else 8
    made = []
    if teacher is None:
        return made
    name = os.path.basename(os.path.normpath(run_dir))
    for k, stage in _stage_dirs(run_dir):
        pruned = _load_videos(os.path.join(stage, "eval_pruned.json"))
        trained = _load_videos(os.path.join(stage, "eval.json"))
        if pruned is None or trained is None:
            continue
        n = min(max_videos, len(teacher["seeds"]), len(pruned["seeds"]), len(trained["seeds"]))
        for i in range(n):
            keys = {(v["prompts"][i], v["seeds"][i]) for v in (teacher, pruned, trained)}
            if len(keys) != 1:
                continue
            grid = video_grid([teacher["frames"][i], pruned["frames"][i], trained["frames"][i]])
            stem = os.path.join(out_dir, "grids", f"{name}_stage{k}_{i}")
            disk.save_video(stem + ".mp4", grid, fps)
            disk.save_video(stem + ".gif", grid, fps)
            made.append((k, teacher["prompts"][i], stem + ".gif"))
    return made


def _slug(key):
    return re.sub(r"[^a-z0-9_.]+", "-", "_".join(key).lower()).strip("-")   # a plain file name: no brackets in a link


def plot_scores(key, runs, path):
    """One bar chart: every row of the group (first seed) per dimension, with its 95% interval."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = table_rows(runs[0])
    fig, ax = plt.subplots(figsize=(10, 3.6))
    width = 0.8 / max(len(rows), 1)
    for j, (stage, label, result, _) in enumerate(rows):
        x = np.arange(len(KEYS)) + (j - (len(rows) - 1) / 2) * width
        means = [result["scores"][d]["mean"] or 0 for d in KEYS]
        errs = [result["scores"][d]["ci95"] or 0 for d in KEYS]
        ax.bar(x, means, width, yerr=errs, capsize=2, label=f"{stage} {label}".replace(" -", ""))
    ax.set_xticks(np.arange(len(KEYS)), [COLUMN_NAMES[d] for d in KEYS])
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{key[1]} ({runs[0]['name']}): per-dimension score, 95% interval over {rows[0][2]['num_videos']} videos")
    ax.legend(fontsize=7, ncol=4, loc="lower right")
    fig.tight_layout()
    with disk.atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# report.md
# ---------------------------------------------------------------------------------------------

def what_was_run(groups):
    """The opening of report.md: the model, the reward, the eval set, and per method its training
    seeds, stages (blocks removed in each), settings and training steps (metrics.jsonl)."""
    runs = [r for group in groups.values() for r in group]
    videos = runs[0]["full"]["per_video"]
    rewards = sorted({r["full"].get("reward", "?") for r in runs})
    prompts = {v["prompt"] for v in videos}
    per_prompt = len(videos) / max(len(prompts), 1)
    lines = [f"What was run: model {', '.join(sorted({f'`{r}`' for r, _ in groups}))}, scored by the "
             f"{', '.join(f'`{r}`' for r in rewards)} reward; every row evaluated on the same "
             f"{len(prompts)} prompts, {per_prompt:g} eval seed{'s' if per_prompt != 1 else ''} each ({len(videos)} "
             "videos). A method runs once per training seed (pair order, t and eps).", ""]
    if "pixel" in rewards:
        lines += ["**The pixel proxy is for smoke runs only; these numbers are not VideoScore.**", ""]
    lines += ["| Method | Training seeds | Stages (blocks removed) | beta | w_sft | lr | batch | epochs / stage "
              "| training steps |", "|---|---|---|---|---|---|---|---|---|"]
    models = {model for model, _ in groups}
    for (model, label), group in groups.items():
        c = group[0]["config"]
        label = label if len(models) == 1 else f"{label} ({model})"
        blocks = c.get("blocks") if isinstance(c.get("blocks"), list) else []
        stages = f"1 ({sum(blocks)} at once)" if c.get("oneshot") else f"{len(blocks)} ({', '.join(map(str, blocks))})"
        steps = sorted({sum(max((m.get("step", 0) for m in s["metrics"]), default=0) for s in r["stages"]) for r in group})
        cells = [label, ", ".join(str(r["seed"]) for r in group), stages if blocks else "?"]
        unused = {"sft": ("beta", "w_sft"), "dpo": ("w_sft",)}.get(c.get("method"), ())   # terms the loss leaves out
        cells += ["-" if k in unused else f"{c[k]:g}" if isinstance(c.get(k), (int, float)) else str(c.get(k, "?"))
                  for k in ("beta", "w_sft", "lr", "batch", "epochs")]
        lines.append("| " + " | ".join(cells + [" / ".join(map(str, steps))]) + " |")
    return lines


AVERAGE = {"videoscore": "the mean of the four dimensions (VideoScore total)",
           "shapes": "the mean of the four dimensions of the shapes world's exact reward (toy/shapes_world.py; "
                     "not VideoScore)",
           "pixel": "the mean of the three dimensions the pixel proxy measures (it cannot tell text alignment, "
                    "n/a; not VideoScore)"}
PARAM = {"toy": "the toy teacher's 10 motion modules (the rest of its 1.5M parameters stays frozen)",
         "animatediff": "AnimateDiff's motion modules (the SD 1.5 UNet stays frozen)",
         "videocrafter2": "the whole UNet", "wan": "the whole transformer"}


def table1_notes(runs):
    """The line under Table 1, true for the runs' own model and reward (check_comparable: one of each)."""
    model, reward = runs[0]["model"], runs[0]["full"].get("reward")
    base = "animatediff" if model == "tiny" else model.replace("tiny-", "")
    notes = [f"Average: {AVERAGE.get(reward, f'the mean of the dimensions the {reward} reward measures')}.",
             f"Param: the trained part, {PARAM.get(base, 'the denoiser')}"
             + (f" (here a tiny random-weight {base})" if model.startswith("tiny") else "") + "."]
    if any(v.get("static") for v in runs[0]["full"]["per_video"]):
        notes.append("Prompts labelled static score dynamic degree 0 (the revised dynamic score, Sec. 4.1).")
    return " ".join(notes + ["Paired: the same prompt and seed in both rows."])


COST_NOTE = ("Latency: one generation at batch 1 after a one-step warm-up, timed once on the run's device: a single "
             "timing, which on a shared CPU can differ by tens of percent from one call to the next, so a pruned row "
             "may time slower than the model before it; TFLOPs (counted, not timed) is the cost that does not vary.")


def training_note(runs):
    """What the training plot's scales mean, and the run's own DPO term and implicit accuracy in the
    first and last quarter of each stage's steps (mean over seeds)."""
    lines = ["The DPO term is -log sigmoid(-beta/2 x D) with D = (err_w - ref_err_w) - (err_l - ref_err_l) (Eq. 1, "
             "T w(lambda_t) folded into beta): ln 2 = 0.693 when the student predicts both videos as the teacher "
             "does (D = 0), about beta/2 x D once that is above ~3. The reference is the full model, and "
             "the winners are its own videos: a pruned student that predicts them worse than the full model does "
             "has D > 0, so its implicit accuracy (the share of pairs where it prefers the winner more than the "
             "full model does) sits near 0 and its DPO term is large, until training brings its error on the "
             "winners down to the full model's. The SFT term is on a log scale (it spans decades). Here (first -> "
             "last quarter of each stage's steps, mean over seeds):", ""]
    for i in range(max(len(r["stages"]) for r in runs)):
        quarters = [[], []]
        for r in runs:
            rows = [m for m in (r["stages"][i]["metrics"] if i < len(r["stages"]) else []) if "dpo" in m]
            n = max(1, len(rows) // 4)
            if rows:
                quarters[0] += rows[:n]
                quarters[1] += rows[-n:]
        if quarters[0]:
            mean = lambda rows, k: float(np.mean([m[k] for m in rows]))      # noqa: E731
            lines.append(f"- Stage {i + 1}: DPO term {fmt(mean(quarters[0], 'dpo'), 2)} -> {fmt(mean(quarters[1], 'dpo'), 2)}, "
                         f"implicit accuracy {fmt(mean(quarters[0], 'implicit_acc'), 2)} -> "
                         f"{fmt(mean(quarters[1], 'implicit_acc'), 2)}")
    return lines


def write_report(run_dirs, out_path, grids=True):
    """Write report.md (and its plots and grids beside it) for one or more runs. Returns the text."""
    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    runs = [read_run(d) for d in run_dirs]
    runs = [r for r in runs if r["full"]]
    if not runs:
        raise UserError(f"no full/eval.json under {', '.join(run_dirs)}; run evaluate.py (or vip_loop.py) first")
    check_comparable(runs)
    groups = group_runs(runs)
    lines = ["# V.I.P. results", ""] + what_was_run(groups)
    lines += ["", "## Table 1", ""]
    for key, group in groups.items():
        lines += table1(key, group) + [""] + paired_table(key, group) + [""]
    lines.append(table1_notes(runs))
    table2 = vbench_eval.report_lines(runs)          # VBench rows, where analysis/vbench_eval.py wrote vbench.json
    lines += [""] + table2 if table2 else []
    if len(groups) > 1:
        reference = next(((k, g) for k, g in groups.items() if k[1] == "ReDPO"), next(iter(groups.items())))
        lines += ["", "## Methods (Tables 3 and 4)", ""] + methods_table(groups, reference)
    found = claims.claims(groups)
    if found:
        lines += ["", "## The paper's claims", ""] + claims_table(found, *claims.scales(groups))
    lines += ["", "## Cost", "", "| Run | Stage | Method | Average ± 95% CI | Videos | TFLOPs / video | Latency (s / video, one timing) |",
              "|---|---|---|---|---|---|---|"]
    for run in runs:
        for stage, label, result, _ in table_rows(run):
            total = result["scores"]["total"]
            tflops = result.get("tflops", {}).get("tflops")
            latency = result.get("latency", {}).get("seconds_per_video")
            lines.append(f"| {run['name']} | {stage} | {label} | {fmt(total['mean'])} ± {fmt(total['ci95'])} | "
                         f"{result['num_videos']} | {'n/a' if tflops is None else f'{tflops:.4g}'} | {fmt(latency, 2)} |")
    lines += ["", COST_NOTE]
    pictures = []
    for key, group in groups.items():
        plot_scores(key, group, os.path.join(out_dir, f"scores_{_slug(key)}.png"))
        pictures.append(f"![scores, {key[1]}](scores_{_slug(key)}.png)")
        if plot_training(key, group, os.path.join(out_dir, f"training_{_slug(key)}.png")):
            pictures += [f"![training, {key[1]}](training_{_slug(key)}.png)", ""] + training_note(group) + [""]
    lines += ["", "## Plots", ""] + pictures
    made = [(g[0], grid) for g in groups.values() for grid in write_grids(g[0]["dir"], out_dir)] if grids else []
    if made:
        lines += ["", "## Teacher | pruned | trained (same prompt and seed)", ""]
        for run, (k, prompt, gif) in made:
            rel = os.path.relpath(gif, out_dir)
            lines.append(f"- {run['name']}, stage {k}: \"{prompt}\"  ")
            lines.append(f"  ![{prompt}]({rel}) ([mp4]({os.path.splitext(rel)[0]}.mp4))")
    text = "\n".join(lines) + "\n"
    with disk.atomic_file(out_path) as tmp, open(tmp, "w") as f:
        f.write(text)
    return text
