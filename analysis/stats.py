"""Statistics of the report (Sec. 4.1): means with 95% Student-t intervals, paired differences
whose intervals treat both the prompts and the training seeds as random, and the verdicts read from
them (margins, non-inferiority, Holm's correction).

Two rows of the report (two models, or two runs) generate the same eval prompts with the same eval
seeds, so video (prompt, eval seed) of one row and of the other start from the same x_T: their
difference is measured per video (the prompt-to-prompt spread of the scores cancels). A comparison
over several training runs gives one such difference per (prompt, eval seed, training seed).
These are not independent draws: the videos of one prompt share it, the videos of one training
seed share its model, and a row that does not depend on the training seed (the stage-1 pruned
row: the same blocks removed from the same full model) is the same videos in every seed. So:

1. Per (prompt, training seed) cell, the mean difference over the eval seeds: y_ps (P x S).
2. Crossed random effects, y_ps = mu + a_p + b_s + e_ps (two-way ANOVA without replication):
   MS_P = S sum_p (y_p. - y..)^2 / (P - 1), MS_S = P sum_s (y_.s - y..)^2 / (S - 1),
   MS_E = sum_ps (y_ps - y_p. - y_.s + y..)^2 / ((P - 1)(S - 1));
   E[MS_P] = s_e^2 + S s_a^2, E[MS_S] = s_e^2 + P s_b^2, E[MS_E] = s_e^2, so
   Var(y..) = s_a^2 / P + s_b^2 / S + s_e^2 / (PS) = (MS_P + MS_S - MS_E) / (PS).
   A variance component estimated below zero is set to zero (MS_P or MS_S below MS_E: that term
   and MS_E's matching share drop out), which keeps the variance positive. When both are
   (MS_P and MS_S both below MS_E), only MS_E is left: Var = MS_E / (PS) with df (P - 1)(S - 1),
   the interval of P S independent cells (df 68 at 18 x 5). That interval rests on two components
   estimated at zero from few seeds, and is narrower than one that kept them; a reader sees the
   case by its df and should read its verdict with that in mind. The interval is
   y.. +- t_(0.975, df) sqrt(Var) with Satterthwaite's df for the sum of mean squares,
   df = (sum c_i MS_i)^2 / sum (c_i MS_i)^2 / df_i.
3. A difference that is the same in every seed (both rows shared by every seed) is one seed:
   prompts only, y_p +- t_(0.975, P - 1) s_p / sqrt(P).
4. A check: the two-way bootstrap, prompts and seeds resampled independently, percentile interval.

Each interval also gives the smallest effect it could detect: (t_(0.975, df) + t_(0.8, df)) SE,
the true difference that a 95% interval excludes from 0 in 80% of experiments like this one.

5. A verdict reads the interval against 0 and a margin (the smallest effect of interest): a sign
   claim is "negligible" inside (-margin, +margin); a ">= 0" claim is non-inferiority (lower end
   above -margin). Each verdict has the p of the test it rests on, and Holm's step-down procedure
   adjusts a family's p-values (docs/shapes/PLAN.md's amendment).

    python -c "import stats; print(stats.mean_ci([1, 2, 3, 4, 5]))"     # (3.0, 1.963...)
    python -c "import stats; print(stats.t_quantile(2.5))"             # 3.575...: real df too
"""
import math

import numpy as np
import scipy.stats

# ---------------------------------------------------------------------------------------------
# Student's t for any real df > 0, and the mean with its 95% interval
# ---------------------------------------------------------------------------------------------

def t_two_sided_cdf(t, df):
    """P(|T| < t) for Student's t with df degrees of freedom (any real df > 0; inf: the normal)."""
    return 1.0 - 2.0 * float(scipy.stats.t.sf(t, df))


def t_quantile(df, level=0.95):
    """The t with P(|T| < t) = level (df = 4, level 0.95: 2.776; level 0.6: the one-sided 0.8
    quantile); real df too (Satterthwaite's)."""
    return float(scipy.stats.t.ppf((1 + level) / 2, float(df)))


def mean_ci(values, level=0.95):
    """(mean, half width of the level t-interval) over the finite values: mean +- t_(n-1) s / sqrt(n).
    NaN (a dimension a reward does not measure) is left out; fewer than two values: half width NaN."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) == 1:
        return float(v[0]), float("nan")
    return float(v.mean()), float(t_quantile(len(v) - 1, level) * v.std(ddof=1) / math.sqrt(len(v)))


# ---------------------------------------------------------------------------------------------
# Per-video differences: row A minus row B, video by video (same prompt and eval seed)
# ---------------------------------------------------------------------------------------------

def video_key(video):
    """A video's identity across rows and runs: its prompt and eval seed (the same x_T)."""
    return video["prompt"], int(video["seed"])


def video_scores(per_video, dims, weights=None):
    """{(prompt, eval seed): the mean of the dims' scores, each times its weight (default 1)} over an
    eval json's "per_video" list; a video with a null score on any of the dims is left out."""
    w = [1.0] * len(dims) if weights is None else [weights[d] for d in dims]
    out = {}
    for v in per_video:
        values = [v["scores"].get(d) for d in dims]
        if values and all(x is not None for x in values):
            out[video_key(v)] = sum(x * wd for x, wd in zip(values, w)) / len(values)
    return out


def differences(after, before, dims, weights=None):
    """{(prompt, eval seed): after - before} on the (weighted) mean of the dims, over the videos both
    eval jsons hold ("per_video" lists)."""
    a, b = video_scores(after, dims, weights), video_scores(before, dims, weights)
    return {k: a[k] - b[k] for k in a if k in b}


def spreads(per_video, dims):
    """{dim: the per-video standard deviation (n - 1)} over an eval json's "per_video" list, the
    scale of the standardised Average (weights 1 / sd); a dimension with fewer than two scores or no
    spread is left out."""
    out = {}
    for d in dims:
        x = np.array([v["scores"][d] for v in per_video if v["scores"].get(d) is not None], dtype=np.float64)
        if len(x) > 1 and x.std(ddof=1) > 0:
            out[d] = float(x.std(ddof=1))
    return out


# ---------------------------------------------------------------------------------------------
# The interval of a mean difference, prompts and training seeds random
# ---------------------------------------------------------------------------------------------

def cell_means(by_seed):
    """by_seed: one {(prompt, eval seed): difference} per training seed. Returns (prompts, y, shared):
    y (P, S), the mean over eval seeds per prompt (the prompts every seed has) and seed; when every
    seed holds exactly the same differences (a row shared by all seeds), one column and shared True."""
    by_seed = [d for d in by_seed if d]
    shared = len(by_seed) > 1 and all(d == by_seed[0] for d in by_seed[1:])
    if shared:
        by_seed = by_seed[:1]
    cells = []
    for d in by_seed:
        sums = {}
        for (prompt, _), x in d.items():
            sums.setdefault(prompt, []).append(x)
        cells.append({p: sum(xs) / len(xs) for p, xs in sums.items()})
    prompts = sorted(set.intersection(*(set(c) for c in cells))) if cells else []
    y = np.array([[c[p] for c in cells] for p in prompts], dtype=np.float64).reshape(len(prompts), len(cells))
    return prompts, y, shared


def crossed_variance(y):
    """Var(grand mean) and its Satterthwaite df for y (..., P, S), prompts x seeds crossed (module
    docstring, step 2); vectorised over the leading axes. Returns (var, df) arrays; P >= 2, S >= 2."""
    y = np.asarray(y, dtype=np.float64)
    P, S = y.shape[-2:]
    grand = y.mean(axis=(-2, -1), keepdims=True)
    rows, cols = y.mean(axis=-1, keepdims=True), y.mean(axis=-2, keepdims=True)
    ms_p = S * ((rows - grand) ** 2).sum(axis=(-2, -1)) / (P - 1)
    ms_s = P * ((cols - grand) ** 2).sum(axis=(-2, -1)) / (S - 1)
    ms_e = ((y - rows - cols + grand) ** 2).sum(axis=(-2, -1)) / ((P - 1) * (S - 1))
    # Coefficients of the mean squares; a component below zero (MS_P < MS_E) takes its term out.
    c_p, c_s = (ms_p >= ms_e).astype(np.float64), (ms_s >= ms_e).astype(np.float64)
    terms = ((c_p * ms_p, P - 1), (c_s * ms_s, S - 1), ((1 - c_p - c_s) * ms_e, (P - 1) * (S - 1)))
    total = sum(t for t, _ in terms)                      # max(MS_P, MS_E) + max(MS_S, MS_E) - MS_E
    spread = sum(t ** 2 / df for t, df in terms)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(spread > 0, total ** 2 / np.where(spread > 0, spread, 1), np.inf)
    return total / (P * S), df


def bootstrap_interval(y, level=0.95, n_boot=4000, seed=0):
    """(low, high): the percentile interval of the grand mean of y (P, S) when the prompts (rows)
    and the seeds (columns) are resampled with replacement, independently."""
    rng = np.random.default_rng(seed)
    P, S = y.shape
    i, j = rng.integers(P, size=(n_boot, P, 1)), rng.integers(S, size=(n_boot, 1, S))
    means = y[i, j].mean(axis=(1, 2))
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def interval(by_seed, level=0.95, n_boot=0):
    """The mean difference and its interval, prompts and training seeds random. by_seed: one
    {(prompt, eval seed): difference} per training seed (differences()). Returns {"mean", "ci95"
    (half width), "se", "df", "mde" (the smallest effect detected with 80% power), "n_prompts",
    "n_seeds", "analysis", and with n_boot > 0 "bootstrap": (low, high)}."""
    _, y, shared = cell_means(by_seed)
    P, S = y.shape
    out = {"mean": float("nan"), "ci95": float("nan"), "se": float("nan"), "df": float("nan"),
           "mde": float("nan"), "n_prompts": P, "n_seeds": S}
    if P >= 2 and S >= 2:
        var, df = crossed_variance(y)
        out["analysis"] = "prompts x seeds"
    elif P >= 2:
        var, df = y[:, 0].var(ddof=1) / P, P - 1
        out["analysis"] = "prompts, the row shared by every seed" if shared else "prompts (one seed)"
    else:
        out["analysis"] = "too few prompts"
        if P:
            out["mean"] = float(y.mean())
        return out
    se, df = math.sqrt(float(var)), float(df)
    out.update(mean=float(y.mean()), se=se, df=df, ci95=t_quantile(df, level) * se,
               mde=(t_quantile(df, level) + t_quantile(df, 0.6)) * se)
    if n_boot:
        out["bootstrap"] = bootstrap_interval(y, level, n_boot)
    return out


# ---------------------------------------------------------------------------------------------
# Verdicts: a sign, a margin, and Holm's correction within a family
# ---------------------------------------------------------------------------------------------

SIGN, NON_INFERIOR = "sign", "non-inferior"     # the two kinds of claim (docs/shapes/PLAN.md, amendment)
LEVEL = 0.95


def oriented(diff, sign):
    """(low, high) of the 95% interval of sign x difference: the claimed direction is up."""
    lo, hi = diff["mean"] - diff["ci95"], diff["mean"] + diff["ci95"]
    return (lo, hi) if sign > 0 else (-hi, -lo)


def verdict(diff, sign=1, margin=0.0, kind=SIGN):
    """One word for a claim about a difference; sign +1: after is higher. margin: the smallest effect
    of interest (>= 0).

    kind "sign" (the difference has the sign): **negligible** when the whole 95% interval lies inside
    (-margin, +margin), else **holds** when it lies above 0, **does not hold** when below 0, else
    **cannot tell**. With margin 0 nothing is negligible.
    kind "non-inferior" ("matches or exceeds", "keeps or raises": sign x difference >= -margin):
    **holds** when the interval's lower end is above -margin, **does not hold** when its upper end is
    below -margin, else **cannot tell**."""
    lo, hi = oriented(diff, sign)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "cannot tell"
    if kind == NON_INFERIOR:
        return "holds" if lo > -margin else "does not hold" if hi < -margin else "cannot tell"
    if kind != SIGN:
        raise ValueError(f"unknown kind of claim {kind!r}: choose {SIGN!r} or {NON_INFERIOR!r}")
    if -margin < lo and hi < margin:
        return "negligible"
    return "holds" if lo > 0 else "does not hold" if hi < 0 else "cannot tell"


def p_above(diff, sign, bound):
    """The two-sided-scale p of "sign x difference > bound": 2 P(T_df > (sign x mean - bound) / se),
    capped at 1, so that p < 0.05 exactly when the 95% interval's lower end is above bound."""
    if not (math.isfinite(diff["se"]) and math.isfinite(diff["mean"])) or diff["se"] < 0:
        return float("nan")
    if diff["se"] == 0:             # no spread at all: the bound is passed or not, for certain
        return 0.0 if sign * diff["mean"] > bound else 1.0
    t = (sign * diff["mean"] - bound) / diff["se"]
    return min(1.0, 2 * float(scipy.stats.t.sf(t, diff["df"])))


def p_value(diff, sign=1, margin=0.0, kind=SIGN):
    """The p of the test the claim's verdict rests on (two-sided scale: < 0.05 when the 95% interval
    decides): "holds" / "does not hold" against 0 (kind sign) or -margin (non-inferior); "negligible"
    the larger of the two one-sided tests against +-margin; "cannot tell" the smallest p of its
    possible tests (>= 0.05). NaN when the interval is not finite."""
    tests = {"up": p_above(diff, sign, -margin if kind == NON_INFERIOR else 0.0),
             "down": p_above(diff, -sign, margin if kind == NON_INFERIOR else 0.0)}
    if kind == SIGN and margin > 0:
        tests["inside"] = max(p_above(diff, sign, -margin), p_above(diff, -sign, -margin))
    word = verdict(diff, sign, margin, kind)
    chosen = {"holds": ["up"], "does not hold": ["down"], "negligible": ["inside"]}.get(word, list(tests))
    return min(tests[k] for k in chosen)


def holm(p_values):
    """Holm's step-down adjusted p-values, in the order given: sort ascending, p_(i) x (m - i) for
    i = 0..m-1, made non-decreasing, capped at 1. NaN stays NaN and does not count towards m."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = [i for i in np.argsort(p, kind="stable") if np.isfinite(p[i])]
    m, running = len(idx), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return [float(x) for x in out]


def adjusted_verdict(word, p_adjusted, alpha=1 - LEVEL):
    """A verdict after Holm's correction: kept when its adjusted p is below alpha, else "cannot tell"."""
    return word if math.isfinite(p_adjusted) and p_adjusted < alpha else "cannot tell"
