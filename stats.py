"""Statistics of the report (Sec. 4.1): means with 95% Student-t intervals, and paired differences.

Two rows of the report (two models, or two runs) generate the same eval prompts with the same
seeds, so video i of one row and video i of the other start from the same x_T: their difference
is measured per video, and its interval is the paired one, much narrower than the two rows'
own intervals (the prompt-to-prompt spread cancels).

    python -c "import stats; print(stats.mean_ci([1, 2, 3, 4, 5]))"     # (3.0, 1.963...)
"""
import math
import statistics

import numpy as np

# ---------------------------------------------------------------------------------------------
# The mean and a 95% Student-t confidence interval
# ---------------------------------------------------------------------------------------------

def t_two_sided_cdf(t, df):
    """P(|T| < t) for Student's t with integer df, in closed form (Abramowitz & Stegun 26.7.3-4):
    theta = atan(t / sqrt(df)); odd df: (2/pi)(theta + sin(theta) sum_j a_j cos^(2j+1) theta),
    a_0 = 1, a_j = a_(j-1) 2j / (2j+1); even df: sin(theta) sum_j b_j cos^(2j) theta, b_0 = 1,
    b_j = b_(j-1) (2j-1) / (2j); the powers of cos(theta) run up to df - 2."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        a, power, total = 1.0, c, 0.0
        for j in range((df - 1) // 2):          # cos^1 ... cos^(df-2)
            if j > 0:
                a *= 2 * j / (2 * j + 1)
                power *= c * c
            total += a * power
        return 2 / math.pi * (theta + s * total)
    b, power, total = 1.0, 1.0, 0.0
    for j in range(df // 2):                    # cos^0 ... cos^(df-2)
        if j > 0:
            b *= (2 * j - 1) / (2 * j)
            power *= c * c
        total += b * power
    return s * total


def t_quantile(df, level=0.95):
    """The t with P(|T| < t) = level (df = 4, level 0.95: 2.776). Bisection on the exact CDF;
    above df = 200 the Cornish-Fisher expansion around the normal quantile (error < 1e-6)."""
    if df > 200:
        z = statistics.NormalDist().inv_cdf((1 + level) / 2)
        return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
    lo, hi = 0.0, 1.0
    while t_two_sided_cdf(hi, df) < level:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_two_sided_cdf(mid, df) < level else (lo, mid)
    return (lo + hi) / 2


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
# Paired differences: row A minus row B, video by video (same prompt and seed)
# ---------------------------------------------------------------------------------------------

def video_key(video):
    """A video's identity across rows and runs: its prompt and seed (the same x_T)."""
    return video["prompt"], int(video["seed"])


def paired_differences(after, before, keys):
    """Per key, the list of after - before over the videos the two rows share. `after`, `before`:
    eval.json "per_video" lists, or lists of such lists (several runs, e.g. training seeds: run i
    of `after` pairs with run i of `before`, and their differences are pooled). A video missing
    from `before`, or a null score, contributes nothing."""
    if after and isinstance(after[0], dict):
        after, before = [after], [before]
    diffs = {k: [] for k in keys}
    for rows_a, rows_b in zip(after, before):
        by_key = {video_key(v): v["scores"] for v in rows_b}
        for v in rows_a:
            other = by_key.get(video_key(v))
            for k in keys:
                x, y = v["scores"].get(k), None if other is None else other.get(k)
                if x is not None and y is not None:
                    diffs[k].append(x - y)
    return diffs


def paired_ci(after, before, keys):
    """{key: {"mean", "ci95", "n"}}: the mean paired difference after - before and the half width of
    its 95% t-interval (mean_ci of the per-video differences)."""
    out = {}
    for k, d in paired_differences(after, before, keys).items():
        mean, half = mean_ci(d)
        out[k] = {"mean": mean, "ci95": half, "n": len(d)}
    return out


def verdict(diff, sign=1):
    """One word for a claim that after - before has sign `sign` (+1: after is higher): "holds" when
    the paired 95% interval lies wholly on that side of zero, "does not hold" when it lies wholly on
    the other side, else "cannot tell"."""
    lo, hi = diff["mean"] - diff["ci95"], diff["mean"] + diff["ci95"]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "cannot tell"
    lo, hi = (lo, hi) if sign > 0 else (-hi, -lo)
    return "holds" if lo > 0 else "does not hold" if hi < 0 else "cannot tell"
