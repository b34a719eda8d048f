"""The user study of Sec. 4 (Fig. 4): people rank the full model's, SFT's and ReDPO's videos of a prompt.

    python -m analysis.user_study make --runs runs/ad-redpo runs/ad-sft --stage 3 --out study
    python -m analysis.user_study serve --study study              # http://127.0.0.1:8000/?rater=CODE
    python -m analysis.user_study simulate --study study --by shapes --raters 30 --noise 0.05   # toy world
    python -m analysis.user_study score --study study              # study/score.md, score.json, ranking.png

`make` takes the videos the runs already kept (the full model's from the first run's full/, each run's
trained student at --stage), for the prompts and seeds they share, and writes a study folder:
index.html (the page, analysis/user_study.html: inline JS and CSS, no network), study.json (what the
page needs: prompts and opaque clip names), clips/*.png, and two files that are never served: key.json
(which clip is which method) and raters.txt (one code per rater). Each clip is a PNG sheet of its
frames scaled up by a whole factor (nearest neighbour) until its shorter side is at least 256 px; the
page draws the three sheets on canvases from one timer, so they loop in exact sync, "played once" is
exact (the frame counter wrapped), and nothing is lost to a codec (a GIF's 256 colours or an MP4's
halved chroma would change tiny shapes). Attention checks: one item shown twice, and one item whose
clip of one method is replaced by a blurred and noised copy, which must be ranked last. The server,
the clip sheets and each rater's plan: analysis/user_study_server.py.

The ranking score (Fig. 4): with K methods ranked 1..K per answer, a method gets K - rank points;
its score is its points over all points given, sum(K - rank_m) / (N * K (K - 1) / 2), so the K scores
sum to 1 and indifferent raters give each 1/K (docs/user_study/README.md: whether this is the paper's
definition). Intervals resample raters and prompts both (a crossed bootstrap); agreement is Kendall's W.
"""
import argparse
import json
import math
import os
import secrets
import shutil

from infra import cli, disk
from infra.cli import UserError

import numpy as np

from analysis import report
from analysis.user_study_server import LETTERS, StudyServer, answer_record, frames_of, rater_plan, read_study, sprite_sheet

PAPER = {   # Fig. 4's ranking scores
    "AnimateDiff": {"SFT": 0.309, "Full": 0.338, "ReDPO": 0.353},
    "VideoCrafter2": {"SFT": 0.317, "Full": 0.332, "ReDPO": 0.351},
}
MIN_SIZE = 256          # px: the shorter side of a clip on the page, at least
QUESTION = "Which video is better overall for this prompt? Click them from best to worst (or press their letters)."


# ---------------------------------------------------------------------------------------------
# The ranking score, win rates, agreement and the attention checks (pure functions)
# ---------------------------------------------------------------------------------------------

def rank_table(answers, methods):
    """answers [{"rater", "item", "order": methods best first}] -> (raters, items, ranks (R, I, K) with
    rank 1..K, NaN where a rater did not answer an item)."""
    raters = sorted({a["rater"] for a in answers})
    items = sorted({a["item"] for a in answers})
    ranks = np.full((len(raters), len(items), len(methods)), np.nan)
    for a in answers:
        r, i = raters.index(a["rater"]), items.index(a["item"])
        for rank, m in enumerate(a["order"], start=1):
            ranks[r, i, methods.index(m)] = rank
    return raters, items, ranks


def summarise(ranks, weight=None):
    """Per method: the ranking score (K - rank points over all points), mean rank, share ranked first;
    wins[m, n]: share of answers ranking m above n. `weight` (R, I) counts each answer (the bootstrap's
    multiplicities); None counts each answer once. A leading batch axis (B, R, I) gives (B, ...) results."""
    K = ranks.shape[-1]
    answered = ~np.isnan(ranks[..., 0])                                  # (R, I)
    w = answered.astype(float) if weight is None else weight * answered
    filled = np.nan_to_num(ranks)
    total = w.sum(axis=(-2, -1))[..., None]                              # answers counted
    score = np.einsum("...ri,rik->...k", w, K - filled) / (total * K * (K - 1) / 2)
    mean_rank = np.einsum("...ri,rik->...k", w, filled) / total
    first = np.einsum("...ri,rik->...k", w, filled == 1) / total
    above = filled[..., :, None] < filled[..., None, :]                  # (R, I, K, K)
    wins = np.einsum("...ri,rikn->...kn", w, above) / total[..., None]
    return {"score": score, "mean_rank": mean_rank, "first": first, "wins": wins}


def crossed_bootstrap(ranks, draws=2000, seed=0):
    """summarise() over `draws` resamples that draw raters and prompts (items) with replacement, each
    independently: an answer (r, i) counts (times r drawn) x (times i drawn). Both are random samples
    of their populations, so both vary in the interval (a two-way bootstrap; it errs wide, Owen 2007)."""
    R, I = ranks.shape[:2]
    rng = np.random.default_rng(seed)
    raters = rng.multinomial(R, np.full(R, 1 / R), size=draws).astype(float)     # (B, R)
    items = rng.multinomial(I, np.full(I, 1 / I), size=draws).astype(float)      # (B, I)
    with np.errstate(invalid="ignore", divide="ignore"):   # a draw whose raters answered none of its items
        return summarise(ranks, raters[:, :, None] * items[:, None, :])


def kendall_w(ranks):
    """Kendall's W of m judges ranking n objects: W = 12 S / (m^2 (n^3 - n)), S = sum_j (R_j - m (n+1) / 2)^2,
    R_j the sum of object j's ranks (no ties: a ranking has none). Per item over its raters, averaged
    ("do raters agree on a prompt"), and over all answers as judges of the methods, with Friedman's
    chi^2 = m (n - 1) W on n - 1 df ("do answers agree on an order of the methods")."""
    from scipy.stats import chi2

    def w_of(rows):                                                      # rows (m, n): one ranking each
        m, n = rows.shape
        S = ((rows.sum(axis=0) - m * (n + 1) / 2) ** 2).sum()
        return 12 * S / (m ** 2 * (n ** 3 - n))

    K = ranks.shape[-1]
    per_item = [w_of(ranks[:, i][~np.isnan(ranks[:, i, 0])]) for i in range(ranks.shape[1])
                if (~np.isnan(ranks[:, i, 0])).sum() >= 2]
    rows = ranks.reshape(-1, K)
    rows = rows[~np.isnan(rows[:, 0])]
    w_all = w_of(rows)
    stat = len(rows) * (K - 1) * w_all
    return {"per_item": float(np.mean(per_item)) if per_item else float("nan"), "items": len(per_item),
            "all": float(w_all), "answers": len(rows), "chi2": float(stat), "df": K - 1, "p": float(chi2.sf(stat, K - 1))}


def discordant_pairs(order_a, order_b):
    """Kendall's distance: the pairs of methods two rankings (best first) put in opposite orders."""
    pos = {m: j for j, m in enumerate(order_b)}
    return sum(pos[order_a[x]] > pos[order_a[y]] for x in range(len(order_a)) for y in range(x + 1, len(order_a)))


def random_flag_rate(K):
    """The share of pairs of random rankings of K methods with more than one pair swapped."""
    import itertools
    perms = list(itertools.permutations(range(K)))
    return sum(discordant_pairs(list(p), list(range(K))) > 1 for p in perms) / len(perms)


def attention(answers, key):
    """{rater: (why dropped or None, flagged)}. Dropped: the degraded clip not ranked last, or not
    answered (the rater stopped before it). Flagged, not dropped: the repeated item ranked with more
    than one pair of methods swapped (one swap is forgiven: two close clips). A flag is not a drop
    because a repeat of an item whose clips are alike is a coin toss for an attentive rater too; the
    share flagged is reported beside what random rankings give (K = 3: 1/2)."""
    checks = key["checks"]
    by_rater = {}
    for a in answers:
        by_rater.setdefault(a["rater"], {})[a["item"]] = a["order"]
    verdict = {}
    for rater, got in by_rater.items():
        degraded, original, repeat = (got.get(checks[k]) for k in ("degraded", "original", "repeat"))
        why = ("did not reach the degraded clip" if degraded is None else
               "did not rank the degraded clip last" if degraded[-1] != "degraded" else None)
        verdict[rater] = (why, original is not None and repeat is not None and discordant_pairs(original, repeat) > 1)
    return verdict


# ---------------------------------------------------------------------------------------------
# Reading the answers back: damaged and foreign lines are counted, never fatal
# ---------------------------------------------------------------------------------------------

def parse_answer(line, key):
    """A decoded line -> {"rater", "item", "order": methods best first} or None (not this study's answer)."""
    if not isinstance(line, dict) or line.get("study") != key["study"] or line.get("item") not in key["items"]:
        return None
    clips = key["items"][line["item"]]["clips"]
    shown, ranking, rater = line.get("shown"), line.get("ranking"), line.get("rater")
    if not isinstance(rater, str) or not isinstance(shown, list) or sorted(map(str, shown)) != sorted(clips):
        return None
    letters = list(LETTERS[:len(shown)])
    if not isinstance(ranking, list) or sorted(map(str, ranking)) != letters:
        return None
    return {"rater": rater, "item": line["item"], "order": [clips[shown[letters.index(x)]] for x in ranking]}


def read_responses(path, key):
    """(answers, counts): every readable answer of this study, the first per (rater, item); counts of
    lines that were damaged (not UTF-8 JSON), foreign (JSON, but not an answer of this study) or repeats."""
    counts = {"file": os.path.basename(path), "lines": 0, "damaged": 0, "foreign": 0, "duplicate": 0}
    answers, seen = [], set()
    if not os.path.isfile(path):
        return answers, counts
    with open(path, "rb") as f:
        raw = f.read()
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        counts["lines"] += 1
        try:
            parsed = parse_answer(json.loads(line.decode("utf-8")), key)
        except (UnicodeDecodeError, ValueError):
            counts["damaged"] += 1
            continue
        if parsed is None:
            counts["foreign"] += 1
        elif (parsed["rater"], parsed["item"]) in seen:
            counts["duplicate"] += 1
        else:
            seen.add((parsed["rater"], parsed["item"]))
            answers.append(parsed)
    return answers, counts


def no_answers(path, counts, study):
    """Why there is nothing to score when `path` holds no answer of this study (read_responses' counts)."""
    serve = f"python -m analysis.user_study serve --study {study}"
    if not os.path.isfile(path):
        return f"no responses yet: {path} does not exist (raters' answers go there while `{serve}` runs)"
    return (f"no answers of this study in {path}: {counts['lines']} lines, {counts['damaged']} damaged, "
            f"{counts['foreign']} of another study (pass --responses, or collect answers with `{serve}`)")


def score_study(answers, key, draws=2000, seed=0):
    """Fig. 4 from the answers: the attention checks, then on the kept raters' main items the scores,
    win rates, their crossed-bootstrap 95% intervals and Kendall's W."""
    verdict = attention(answers, key)
    main = set(key["main_items"])
    kept = [{**a, "item": key["items"][a["item"]]["index"]}          # items in make's order: the bootstrap
            for a in answers if verdict[a["rater"]][0] is None and a["item"] in main]   # repeats for every make
    dropped = {}
    for why, _ in verdict.values():
        if why:
            dropped[why] = dropped.get(why, 0) + 1
    if not kept:
        said = ", ".join(f"{n} {why}" for why, n in dropped.items()) or "none of them answered a main item"
        raise UserError(f"no answers left after the attention checks: of the {len(verdict)} raters who answered, "
                        f"{said}; nothing to score")
    methods = key["methods"]
    raters, items, ranks = rank_table(kept, methods)
    point = summarise(ranks)
    boot = crossed_bootstrap(ranks, draws, seed)
    interval = {k: np.nanpercentile(boot[k], [2.5, 97.5], axis=0) for k in ("score", "wins")}   # 95%, percentile
    return {"methods": methods, "raters": len(raters), "items": len(items), "answers": len(kept),
            "raters_total": len(verdict), "dropped": dropped,
            "flagged": sum(flag for why, flag in verdict.values() if why is None),
            "score": point["score"].tolist(), "score_ci": [interval["score"][0].tolist(), interval["score"][1].tolist()],
            "mean_rank": point["mean_rank"].tolist(), "first": point["first"].tolist(),
            "wins": point["wins"].tolist(), "wins_ci": [interval["wins"][0].tolist(), interval["wins"][1].tolist()],
            "kendall_w": kendall_w(ranks), "bootstrap": {"draws": draws, "seed": seed}}


# ---------------------------------------------------------------------------------------------
# The degraded clip (a pure function)
# ---------------------------------------------------------------------------------------------

def degrade(frames, seed):
    """An obviously worse copy of a clip: a box blur a quarter of its size wide, then Gaussian noise
    (std 60 of 255) on every pixel."""
    from scipy.ndimage import uniform_filter
    size = max(3, min(frames.shape[1:3]) // 4)
    blurred = uniform_filter(frames.astype(np.float32), size=(1, size, size, 1), mode="nearest")
    noise = np.random.default_rng(seed).normal(0, 60, frames.shape)
    return np.clip(blurred + noise, 0, 255).round().astype(np.uint8)




# ---------------------------------------------------------------------------------------------
# make: a study folder from run folders
# ---------------------------------------------------------------------------------------------

def _videos(json_path):
    """{(prompt, seed): frames} of the videos an eval json kept (report.videos_path), or None."""
    path = report.videos_path(json_path)
    if not os.path.isfile(path):
        return None
    z = disk.load_npz(path)
    return {(str(p), int(s)): f for p, s, f in zip(z["prompts"], z["seeds"], z["frames"])}


def last_common_stage(run_dirs):
    stages = [{k for k, d in report._stage_dirs(r) if _videos(os.path.join(d, "eval.json"))} for r in run_dirs]
    common = set.intersection(*stages) if stages else set()
    if not common:
        raise UserError(f"no stage of {', '.join(run_dirs)} has kept videos in every run; finish the runs first")
    return max(common)


def method_videos(run_dirs, stage):
    """[(method, {(prompt, seed): frames})]: the full model from the first run's full/, then each run's
    trained student at `stage`, named by its method (config.json)."""
    full = _videos(os.path.join(run_dirs[0], "full", "eval.json"))
    if full is None:
        raise UserError(f"{run_dirs[0]}/full has no kept videos (videos.npz); finish that run first")
    out = [("Full", full)]
    for run in run_dirs:
        clips = _videos(os.path.join(run, f"stage_{stage}", "eval.json"))
        if clips is None:
            raise UserError(f"{run}/stage_{stage} has no kept videos (videos.npz): finish that stage or pass another --stage")
        out.append((report.read_run(run)["label"], clips))
    names = [m for m, _ in out]
    if len(set(names)) != len(names):
        raise UserError(f"two runs are the same method ({', '.join(names)}): give one run per method")
    return out


def make_study(run_dirs, stage, out, seed=0, raters=20, min_size=MIN_SIZE, fps=None):
    """Write the study folder `out` (module docstring). --seed picks the checks; clip and item names
    and the raters' shuffle seed come from os.urandom, so nobody rebuilds the key from the runs."""
    if os.path.exists(out) and os.listdir(out):
        raise UserError(f"{out} already exists and is not empty: a study is made once; pass a new --out")
    for run in run_dirs:
        if not os.path.isdir(run):
            raise UserError(f"no run folder {run}")
    stage = stage or last_common_stage(run_dirs)
    videos = method_videos(run_dirs, stage)
    methods = [m for m, _ in videos]
    keys = [k for k in videos[0][1] if all(k in v for _, v in videos)]
    if len(keys) < 2:
        raise UserError(f"the runs share {len(keys)} kept video(s) (same prompt and seed); a study needs at least 2")
    F, H, W, _ = videos[0][1][keys[0]].shape
    scale = max(1, math.ceil(min_size / min(H, W)))
    rng = np.random.default_rng(seed)
    original, degraded_key = keys[rng.integers(len(keys))], keys[rng.integers(len(keys))]
    degraded_method = methods[rng.integers(len(methods))]
    run_fps = disk.read_json(os.path.join(run_dirs[0], "full", "eval.json")).get("generation", {}).get("fps", 8)
    screens = [(k, "main") for k in keys] + [(original, "repeat"), (degraded_key, "degraded")]
    ids = [secrets.token_hex(4) for _ in screens]
    key = {"study": secrets.token_hex(6), "seed": seed, "methods": methods, "stage": stage,
           "runs": dict(zip(methods, [run_dirs[0]] + list(run_dirs))), "scale": scale, "frames": F, "height": H,
           "width": W, "items": {}, "main_items": [i for i, (_, kind) in zip(ids, screens) if kind == "main"],
           "checks": {"original": ids[keys.index(original)], "repeat": ids[-2], "degraded": ids[-1]},
           "degraded_method": degraded_method}
    public = {"study": key["study"], "question": QUESTION, "fps": fps or run_fps, "frames": F, "height": H * scale,
              "width": W * scale, "items": {}, "apart": [[key["checks"]["original"], key["checks"]["repeat"]]],
              "shuffle_seed": secrets.randbits(63)}
    from PIL import Image
    with disk.atomic_dir(out) as tmp:
        os.makedirs(os.path.join(tmp, "clips"))
        for index, (item, ((prompt, vseed), kind)) in enumerate(zip(ids, screens)):
            clips = {}
            for method, clips_of in videos:
                frames = clips_of[(prompt, vseed)]
                if kind == "degraded" and method == degraded_method:
                    frames, method = degrade(frames, seed), "degraded"
                token = secrets.token_hex(8)
                sheet, cols = sprite_sheet(frames, scale)
                Image.fromarray(sheet).save(os.path.join(tmp, "clips", token + ".png"), optimize=True)
                clips[token] = method
            key["items"][item] = {"prompt": prompt, "seed": vseed, "kind": kind, "index": index, "clips": clips}
            names = list(clips)
            secrets.SystemRandom().shuffle(names)
            public["items"][item] = {"prompt": prompt, "clips": names}
        key["cols"] = public["cols"] = cols
        public["items"] = dict(sorted(public["items"].items()))          # their order would tell the checks apart
        disk.write_json(os.path.join(tmp, "study.json"), public)
        disk.write_json(os.path.join(tmp, "key.json"), key)
        with open(os.path.join(tmp, "raters.txt"), "w") as f:
            f.write("".join(f"r{j + 1:02d}-{secrets.token_hex(3)}\n" for j in range(raters)))
        shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "user_study.html"),
                    os.path.join(tmp, "index.html"))
    return key





# ---------------------------------------------------------------------------------------------
# simulate: raters who rank by a reward plus noise
# ---------------------------------------------------------------------------------------------

def clip_frames(study_dir, key, token):
    """A clip's original frames, read back from its sheet on the page."""
    from PIL import Image
    sheet = np.asarray(Image.open(os.path.join(study_dir, "clips", token + ".png")).convert("RGB"))
    return frames_of(sheet, key["frames"], key["height"], key["width"], key["scale"], key["cols"])


def clip_rewards(study_dir, key, by="shapes"):
    """{clip name: reward} for every clip of the study, computed from the frames the raters see."""
    if by != "shapes":
        raise ValueError(f"unknown reward {by!r}: choose one of shapes")
    from toy import shapes_world
    out = {}
    for item in key["items"].values():
        for token in item["clips"]:
            frames = clip_frames(study_dir, key, token)
            out[token] = float(shapes_world.reward(frames[None], [item["prompt"]])["total"][0])
    return out


def simulate(study, key, rewards, raters, noise, seed=0):
    """responses.jsonl's lines from `raters` synthetic raters: each sees its own plan (rater_plan) and
    ranks a screen's clips by reward + N(0, noise^2), a fresh draw per rater, screen and clip (so a
    noisy rater can fail the repeated item). Draws are indexed by (seed, rater, item, method), not by
    the study's random clip names, so the answers' methods are the same for every make of a study."""
    lines = []
    for r in range(raters):
        code = f"sim-{r:03d}"
        for screen in rater_plan(study, code):
            item = key["items"][screen["item"]]
            eps = np.random.default_rng([seed, r, item["index"]]).normal(0, noise, len(item["clips"]))
            by_method = dict(zip(sorted(item["clips"].values()), eps))
            utility = [rewards[c] + by_method[item["clips"][c]] for c in screen["shown"]]
            ranking = [LETTERS[j] for j in np.argsort(utility, kind="stable")[::-1]]
            lines.append(answer_record(study, code, screen["item"], screen["shown"], ranking, simulated=f"{noise}"))
    return lines


# ---------------------------------------------------------------------------------------------
# score: the table and the figure
# ---------------------------------------------------------------------------------------------

def fmt_ci(x, lo, hi):
    return f"{x:.3f} [{lo:.3f}, {hi:.3f}]"


def score_markdown(result, counts):
    """score.md: Fig. 4's numbers beside the paper's, win rates, agreement, who was dropped, what was read."""
    methods, K = result["methods"], len(result["methods"])
    lo, hi = result["score_ci"]
    out = [f"Ranking score = sum over answers of (K - rank) / (answers x K (K - 1) / 2), K = {K} methods: "
           f"the scores sum to 1 and raters who cannot tell the videos apart give each 1/K = {1 / K:.3f}. "
           f"95% intervals: a crossed bootstrap over raters and prompts ({result['bootstrap']['draws']} draws)."
           + ("" if K == 3 else f" The paper's scores beside them rank 3 methods, where no preference gives 1/3 = 0.333; "
              f"this study ranks {K}, where it gives {1 / K:.3f}: read each score against its own chance level."),
           "",
           "| Method | Ranking score [95%] | Mean rank | Ranked first | Paper: AnimateDiff | Paper: VideoCrafter2 |",
           "|---|---|---|---|---|---|"]
    for k, m in enumerate(methods):
        paper = [f"{PAPER[model][m]:.3f}" if m in PAPER[model] else "-" for model in PAPER]
        out.append(f"| {m} | {fmt_ci(result['score'][k], lo[k], hi[k])} | {result['mean_rank'][k]:.2f} | "
                   f"{result['first'][k]:.2f} | {paper[0]} | {paper[1]} |")
    out += ["", "Pairwise: the share of answers that rank the first method above the second.", "",
            "| | win rate [95%] |", "|---|---|"]
    wlo, whi = result["wins_ci"]
    for a in range(K):
        for b in range(a + 1, K):
            out.append(f"| {methods[a]} over {methods[b]} | {fmt_ci(result['wins'][a][b], wlo[a][b], whi[a][b])} |")
    w = result["kendall_w"]
    dropped = ", ".join(f"{n} {why}" for why, n in result["dropped"].items() if n) or "none"
    out += ["", f"Kendall's W: {w['per_item']:.3f} across raters per prompt (mean over {w['items']} prompts); "
            f"{w['all']:.3f} across all {w['answers']} answers as judges of the methods (Friedman chi^2 = "
            f"{w['chi2']:.2f}, df {w['df']}, p = {w['p']:.3g}).", "",
            f"Raters: {result['raters_total']} answered, {result['raters']} kept; dropped by the degraded clip: "
            f"{dropped}. Flagged by the repeated item (more than one pair swapped; kept): {result['flagged']} of "
            f"{result['raters']} (random rankings: {random_flag_rate(K):.2f}). Scored: {result['answers']} answers "
            f"on {result['items']} prompts.",
            f"{counts['file']}: {counts['lines']} lines; {counts['damaged']} damaged, {counts['foreign']} foreign "
            f"(not an answer of this study), {counts['duplicate']} repeated answers (the first kept).", ""]
    return "\n".join(out)


def plot_ranking(result, path, title):
    """Fig. 4's bars: this study's ranking score per method with its 95% interval, the paper's beside it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    methods, K = result["methods"], len(result["methods"])
    score, (lo, hi) = np.array(result["score"]), np.array(result["score_ci"])
    series = [("this study", score, np.stack([score - lo, hi - score]))]
    series += [(f"paper: {model}", np.array([PAPER[model].get(m, np.nan) for m in methods]), None) for model in PAPER]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    width = 0.8 / len(series)
    for j, (label, values, err) in enumerate(series):
        x = np.arange(K) + (j - (len(series) - 1) / 2) * width
        bars = ax.bar(x, values, width, yerr=err, capsize=3, label=label, alpha=1.0 if j == 0 else 0.45)
        ax.bar_label(bars, labels=[f"{v:.3f}" if np.isfinite(v) else "" for v in values], fontsize=7, label_type="center")
    ax.axhline(1 / K, color="grey", linestyle="--", linewidth=0.8, label=f"no preference (1/{K})")
    ax.set_xticks(np.arange(K), methods)
    ax.set_ylabel("ranking score")
    ax.set_ylim(0, max(0.5, float(np.nanmax(hi)) + 0.03))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=4)
    fig.tight_layout()
    with disk.atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m analysis.user_study", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make", help="a study folder from run folders (the full model's, and each run's, kept videos)")
    m.add_argument("--runs", nargs="+", required=True, help="run folders of vip_loop.py, one per method; the full model comes from the first")
    m.add_argument("--stage", type=int, default=None, help="the stage whose trained students are compared (default: the last stage every run finished)")
    m.add_argument("--out", required=True, help="the study folder to write (must not exist or be empty)")
    m.add_argument("--seed", type=int, default=0, help="picks the repeated item and the degraded clip (default: 0)")
    m.add_argument("--raters", type=int, default=20, help="how many rater codes to write to raters.txt (default: 20)")
    m.add_argument("--fps", type=float, default=None, help="frames per second on the page (default: the runs' own fps)")
    s = sub.add_parser("serve", help="serve the page and append each answer to responses.jsonl")
    s.add_argument("--study", required=True, help="the study folder (from make)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 opens it to the network (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    r = sub.add_parser("simulate", help="synthetic raters who rank by a reward plus Gaussian noise")
    r.add_argument("--study", required=True, help="the study folder (from make)")
    r.add_argument("--by", default="shapes", choices=["shapes"], help="the reward the raters rank by: the toy world's exact reward (default: shapes)")
    r.add_argument("--raters", type=int, default=30, help="how many raters (default: 30)")
    r.add_argument("--noise", type=float, default=0.05, help="std of the Gaussian noise added to each clip's reward (default: 0.05)")
    r.add_argument("--seed", type=int, default=0, help="seed of the noise (default: 0)")
    r.add_argument("--out", default=None, help="the responses file to write (default: STUDY/responses.jsonl; must not exist)")
    c = sub.add_parser("score", help="Fig. 4 from responses.jsonl and the key: score.md, score.json, ranking.png")
    c.add_argument("--study", required=True, help="the study folder (from make)")
    c.add_argument("--responses", default=None, help="the answers (default: STUDY/responses.jsonl)")
    c.add_argument("--out", default=None, help="where score.md, score.json and ranking.png go (default: the study folder)")
    c.add_argument("--draws", type=int, default=2000, help="bootstrap draws (default: 2000)")
    c.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.command == "make":
        key = make_study(args.runs, args.stage, args.out, args.seed, args.raters, fps=args.fps)
        print(f"{args.out}: {len(key['main_items'])} prompts x {len(key['methods'])} methods ({', '.join(key['methods'])}, "
              f"stage {key['stage']}) + 2 attention checks; rater codes in {args.out}/raters.txt")
    elif args.command == "serve":
        server = StudyServer(args.study, (args.host, args.port))
        print(f"serving {args.study} on http://{args.host}:{server.server_address[1]}/?rater=CODE (codes: raters.txt); Ctrl-C stops")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            server.server_close()
    elif args.command == "simulate":
        study, key = read_study(args.study)
        out = args.out or os.path.join(args.study, "responses.jsonl")
        if os.path.exists(out):
            raise UserError(f"{out} already exists: simulated answers go to a new file; delete it or pass --out")
        lines = simulate(study, key, clip_rewards(args.study, key, args.by), args.raters, args.noise, args.seed)
        with disk.atomic_file(out) as tmp, open(tmp, "w") as f:
            f.write("".join(json.dumps(line) + "\n" for line in lines))
        print(f"{out}: {len(lines)} answers from {args.raters} simulated raters (reward {args.by}, noise {args.noise})")
    else:
        study, key = read_study(args.study)
        path = args.responses or os.path.join(args.study, "responses.jsonl")
        answers, counts = read_responses(path, key)
        if not answers:
            raise UserError(no_answers(path, counts, args.study))
        result = score_study(answers, key, args.draws, args.seed)
        out = args.out or args.study
        os.makedirs(out, exist_ok=True)
        disk.write_json(os.path.join(out, "score.json"), disk.json_safe({**result, "lines": counts}))
        text = score_markdown(result, counts)
        with disk.atomic_file(os.path.join(out, "score.md")) as tmp, open(tmp, "w") as f:
            f.write(text)
        plot_ranking(result, os.path.join(out, "ranking.png"), f"Ranking score, {result['raters']} raters x "
                     f"{result['items']} prompts, stage {key['stage']}\n95% intervals: raters and prompts resampled"
                     + ("" if len(result["methods"]) == 3 else f"; no preference: 1/{len(result['methods'])} here, "
                        "1/3 in the paper"))
        print(text)
        print(f"wrote {os.path.join(out, 'score.md')}, score.json and ranking.png")


if __name__ == "__main__":
    cli.run_cli(main)
