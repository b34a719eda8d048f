"""The collapse alarm: a rule on the training metrics alone (metrics.jsonl), no evaluation.

Without its SFT term (Eq. 3's w_sft = 0: "DPO alone") Diffusion-DPO can raise its margin by making
the student worse on the losers *and* on the winners (Eq. 1 only asks that the losers get worse
faster). The winners are the teacher's videos, so the student's error on them climbing well above
the teacher's is the student leaving the teacher: the collapse that the SFT term (Eq. 2) holds back.

    The alarm fires at step s when, on each of the WINDOW logged steps ending at s,
        err_w > RATIO * ref_err_w
    (err_w, ref_err_w: the student's and the teacher's ||eps^w - eps(x^w_t, t)||^2 over the step's
    winners, as redpo.loss logs them). It fires once per stage; a step whose numbers are not finite
    ends the streak. It never stops a run.

WINDOW and RATIO were chosen (`choose_rule`) on runs the alarm is not scored on: every stage of a
run but its last (stages 1-2 of the shapes world's runs) and the w_sft sweep's stage-1 runs. It is
scored on the last stage of each shipped run (`score`): stage 3 of the online runs, where DPO
alone collapses, and the one-shot runs' single stage. docs/shapes/alarm.md holds both:

    python -m analysis.alarm       # docs/shapes/alarm.md, and the figure of docs/shapes/reading-the-curves.md
"""
import argparse
import math
import os

from infra import cli, disk

WINDOW = 3     # logged steps in a row
RATIO = 2.5    # the student's error on the winners above this many times the teacher's

# How they were chosen (choose_rule), on the selection stages only:
WINDOWS = range(1, 9)      # the windows tried
RATIO_STEP = 0.5           # the ratio: the smallest multiple of this above every selection stage
SETTLED = 0.05             # the window: the smallest past which the ReDPO and SFT stages' largest
                           # streak value shrinks by less than this per step added

COLLAPSE_DROP = 0.1        # scoring: a stage collapsed when its trained Average is this far below its pruned one


class CollapseAlarm:
    """The rule, one logged step at a time: `update(row)` (a metrics.jsonl row) returns the warning
    line on the step the alarm fires, else None; `fired_at` is that step (None: not fired)."""

    def __init__(self, window=WINDOW, ratio=RATIO):
        self.window, self.ratio = window, ratio
        self.streak, self.fired_at = 0, None

    def update(self, row):
        if "err_w" not in row:      # the w_sft rule's line (step 0): not a training step
            return None
        err_w, ref_err_w = row["err_w"], row["ref_err_w"]
        above = math.isfinite(err_w) and math.isfinite(ref_err_w) and err_w > self.ratio * ref_err_w
        self.streak = self.streak + 1 if above else 0
        if self.streak < self.window or self.fired_at is not None:
            return None
        self.fired_at = row["step"]
        return (f"warning: collapse alarm at step {row['step']}: the student's error on the winners has been above "
                f"{self.ratio:g}x the teacher's for {self.window} steps (now {err_w:.4g} vs {ref_err_w:.4g}); "
                "DPO may be pushing the student off the teacher (docs/shapes/alarm.md)")


def fired_at(rows, window=WINDOW, ratio=RATIO):
    """The step at which the alarm fires on a stage's metrics.jsonl rows, or None."""
    alarm = CollapseAlarm(window, ratio)
    for row in rows:
        alarm.update(row)
    return alarm.fired_at


def streak_value(rows, window):
    """The largest r such that err_w > r * ref_err_w held on `window` logged steps in a row: the
    highest RATIO at which the alarm would have fired with this window (-inf: fewer steps)."""
    ratios = [r["err_w"] / r["ref_err_w"] for r in rows if "err_w" in r]
    ratios = [x if math.isfinite(x) else -math.inf for x in ratios]
    return max((min(ratios[i:i + window]) for i in range(len(ratios) - window + 1)), default=-math.inf)


def choose_rule(stages):
    """(window, ratio) from the selection stages ([{"method", "metrics"}], none collapsed): the
    window past which the ReDPO and SFT stages' largest streak value settles (it shrinks by less
    than SETTLED per step added: one step's batch is 4 pairs at one t each, so single steps jump),
    then the smallest multiple of RATIO_STEP above every selection stage's value at that window."""
    healthy = [s for s in stages if s["method"] in ("redpo", "sft")]
    top = {w: max(streak_value(s["metrics"], w) for s in healthy) for w in WINDOWS}
    window = next(w for w in WINDOWS if w + 1 in top and top[w] - top[w + 1] < SETTLED)
    highest = max(streak_value(s["metrics"], window) for s in stages)
    return window, (math.floor(highest / RATIO_STEP) + 1) * RATIO_STEP


# ---------------------------------------------------------------------------------------------
# The shipped runs: which stages choose the rule, which score it
# ---------------------------------------------------------------------------------------------

def read_stages(runs_dir, group="{variant} stage {k}"):
    """Every stage of every run under runs_dir: [{"run", "k", "last" (the run's last stage),
    "method", "group" (`group` filled in with k, the variant (the run's name less -s<seed>) and the config's keys), "drop" (trained - pruned
    Average), "metrics"}], by run name and stage."""
    stages = []
    for name in sorted(os.listdir(runs_dir)):
        run = os.path.join(runs_dir, name)
        if not os.path.isfile(os.path.join(run, "config.json")):
            continue
        config = disk.read_json(os.path.join(run, "config.json"))
        ks = sorted(int(d.split("_", 1)[1]) for d in os.listdir(run) if d.startswith("stage_") and d[6:].isdigit())
        for k in ks:
            stage = os.path.join(run, f"stage_{k}")
            pruned, trained = (disk.read_json(os.path.join(stage, f))["scores"]["total"]["mean"]
                               for f in ("eval_pruned.json", "eval.json"))
            stages.append({"run": name, "k": k, "last": k == ks[-1], "method": config["method"],
                           "group": group.format(k=k, variant=name.rsplit("-s", 1)[0], **{key: f"{v:g}" if isinstance(v, float) else v
                                                         for key, v in config.items()}),
                           "drop": trained - pruned,
                           "metrics": disk.read_jsonl(os.path.join(stage, "train", "metrics.jsonl"))})
    return stages


def selection_lines(stages):
    """The selection section: each method's largest streak value per window, and the rule chosen."""
    groups = {}
    for s in stages:
        groups.setdefault(s["group"], []).append(s)
    lines = ["| stages | n | lowest Average change (trained - pruned) | "
             + " | ".join(f"window {w}" for w in WINDOWS) + " |", "|---|---|---|" + "---|" * len(WINDOWS)]
    for name, group in sorted(groups.items()):
        cells = [name, str(len(group)), f"{min(s['drop'] for s in group):+.3f}"]
        cells += [f"{max(streak_value(s['metrics'], w) for s in group):.2f}" for w in WINDOWS]
        lines.append("| " + " | ".join(cells) + " |")
    window, ratio = choose_rule(stages)
    return lines + ["", f"Chosen: window {window}, ratio {ratio:g}."]


def score_lines(stages):
    """The score on the held-out stages: per method, the collapsed stages flagged (and at which step)
    and the false alarms; then every held-out stage."""
    for s in stages:
        s["collapsed"] = s["drop"] < -COLLAPSE_DROP
        s["fired"] = fired_at(s["metrics"])
        s["steps"] = max(r["step"] for r in s["metrics"])
    groups = {}
    for s in stages:
        groups.setdefault(s["group"], []).append(s)
    collapsed, healthy = [s for s in stages if s["collapsed"]], [s for s in stages if not s["collapsed"]]
    lines = [f"**{sum(s['fired'] is not None for s in collapsed)} of {len(collapsed)} collapsed stages flagged** "
             f"(at steps {', '.join(str(s['fired']) for s in collapsed if s['fired'] is not None)} of their "
             f"{', '.join(str(s['steps']) for s in collapsed if s['fired'] is not None)}); "
             f"**{sum(s['fired'] is not None for s in healthy)} false alarms** on the {len(healthy)} stages that did not "
             f"collapse ({sum(s['method'] in ('redpo', 'sft') for s in healthy)} of them ReDPO or SFT).", "",
             "| stages | n | collapsed | collapsed and flagged (step / steps) | flagged, not collapsed (false alarms) |",
             "|---|---|---|---|---|"]
    for name, group in groups.items():
        hits = [s for s in group if s["collapsed"] and s["fired"] is not None]
        false = [s for s in group if not s["collapsed"] and s["fired"] is not None]
        collapsed = sum(s["collapsed"] for s in group)
        flagged = ", ".join(f"{s['run']}: {s['fired']} / {s['steps']}" for s in hits)
        cells = [name, str(len(group)), str(collapsed), f"{len(hits)} of {collapsed}" + (f" ({flagged})" if hits else ""),
                 f"{len(false)} of {len(group) - collapsed}" + (f" ({', '.join(s['run'] for s in false)})" if false else "")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| run | stage | Average change (trained - pruned) | collapsed | alarm at step | steps |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {s['run']} | {s['k']} | {s['drop']:+.3f} | {'yes' if s['collapsed'] else 'no'} | "
              f"{'-' if s['fired'] is None else s['fired']} | {s['steps']} |" for s in stages]
    return lines


def page(runs_dir, sweep_dir, out):
    """docs/shapes/alarm.md's text (links relative to `out`): the rule, the selection table it was
    chosen on, and its score."""
    shipped = read_stages(runs_dir)
    selection = [s for s in shipped if not s["last"]] + (read_stages(sweep_dir, "sweep: {variant} ({method}, w_sft {w_sft})") if sweep_dir else [])
    rel = lambda p: os.path.relpath(os.path.abspath(p), os.path.dirname(os.path.abspath(out)))   # noqa: E731
    lines = ["# The collapse alarm", "",
             "Made by `python -m analysis.alarm` (analysis/alarm.py, which states the rule) from "
             f"[{rel(runs_dir)}]({rel(runs_dir)})" + (f" and [{rel(sweep_dir)}]({rel(sweep_dir)})" if sweep_dir else "")
             + ". The rule reads the training metrics alone:", "",
             f"> **The alarm fires at step s when the student's error on the winners, err_w, was above {RATIO:g} times "
             f"the teacher's, ref_err_w, on each of the {WINDOW} logged steps ending at s.** It fires once per stage, "
             "prints one warning line, and never stops the run.", "",
             "## How it was chosen", "",
             f"On the selection stages only: every stage of a shipped run but its last, and the w_sft sweep's "
             f"stage-1 runs ({len(selection)} stages; none collapsed, the lowest Average change is "
             f"{min(s['drop'] for s in selection):+.3f}). Per window, the largest ratio r such that err_w > r x "
             "ref_err_w held on that many logged steps in a row:", ""] + selection_lines(selection)
    lines += ["", f"The window: the smallest past which the ReDPO and SFT stages' largest value shrinks by less "
              f"than {SETTLED:g} per step added (one step is 4 pairs at one t each, so single steps jump). The "
              f"ratio: the smallest multiple of {RATIO_STEP:g} above every selection stage at that window, DPO "
              "alone's included: none of them collapsed, so the alarm must stay silent on all of them.", "",
              "Seen before the rule was fixed: every stage's Average change (the labels it is scored against, "
              "below), and the first two training steps of one held-out stage (dpo-s0's stage 3, which did not "
              "collapse) while reading the file's format; no other metric of a held-out stage.",
              "", "## Its score on the stages it did not see", "",
              f"The last stage of every shipped run: stage 3 of the online runs, the one-shot runs' only stage. "
              f"Collapsed: the trained row's Average more than {COLLAPSE_DROP:g} below the pruned row's (eval.json, "
              "eval_pruned.json). Flagged: the alarm fired during the stage's training.", ""]
    lines += score_lines([s for s in shipped if s["last"]])
    return "\n".join(lines) + "\n"


HEALTHY, COLLAPSING = ("redpo-s1", 3), ("dpo-s1", 3)   # the figure: the same seed's last stage, ReDPO and DPO alone


def plot_pair(runs_dir, path):
    """A healthy ReDPO stage beside a collapsing DPO-alone one: their training curves and what the
    alarm reads (report.plot_curves)."""
    from analysis import report    # the figure's only: the training loop imports this module without it
    columns = [(f"{title}: {name}, stage {k}",
                [(name, disk.read_jsonl(os.path.join(runs_dir, name, f"stage_{k}", "train", "metrics.jsonl")))])
               for title, (name, k) in (("ReDPO", HEALTHY), ("DPO alone", COLLAPSING))]
    report.plot_curves(columns, report.TRAINING_TERMS + (report.ALARM_TERM,),
                       "healthy and collapsing; dashed: the collapse alarm fired, dotted: its ratio", path, sharey="row")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="The collapse alarm's rule, how it was chosen, and its score on the "
                                            "shipped runs it did not see: writes docs/shapes/alarm.md.")
    p.add_argument("--runs", default="docs/shapes/runs",
                   help="the runs: each one's last stage scores the rule, the stages before it choose it "
                        "(default: docs/shapes/runs)")
    p.add_argument("--sweep", default="docs/shapes/sweep/runs",
                   help="more runs to choose the rule on, every stage; none: no sweep (default: docs/shapes/sweep/runs)")
    p.add_argument("--out", default="docs/shapes/alarm.md", help="the page to write (default: docs/shapes/alarm.md)")
    p.add_argument("--figure", default="docs/shapes/reading-the-curves.png",
                   help=f"the figure of a healthy and a collapsing stage ({HEALTHY[0]} and {COLLAPSING[0]}, stage "
                        f"{HEALTHY[1]}, from --runs); none: no figure (default: docs/shapes/reading-the-curves.png)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    for path in (args.runs,) + ((args.sweep,) if args.sweep != "none" else ()):
        if not os.path.isdir(path):
            raise cli.UserError(f"no folder {path}: pass the run folders with --runs / --sweep")
    text = page(args.runs, None if args.sweep == "none" else args.sweep, args.out)
    with disk.atomic_file(args.out) as tmp, open(tmp, "w") as f:
        f.write(text)
    print(f"wrote {args.out}")
    if args.figure != "none":
        plot_pair(args.runs, args.figure)
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    cli.run_cli(main)
