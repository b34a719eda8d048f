"""analysis/stats.py: Student's t for real df, the crossed prompt x seed ANOVA against a hand
computation and an independent least-squares fit, a row shared by every seed counted once, and the
coverage of the interval over many simulated experiments (the pooled per-video interval's too)."""
import math

import numpy as np
import pytest

from analysis import stats


# --- Student's t ------------------------------------------------------------------------------

def test_t_quantile_takes_real_df_and_numpy_scalars():
    assert stats.t_quantile(math.inf) == pytest.approx(1.959963985)
    assert stats.t_quantile(np.float64(2.0)) == pytest.approx(4.30265273)
    assert 3.182 < stats.t_quantile(2.5) < 4.303    # between the tables' df 3 and df 2


# --- per-video differences ----------------------------------------------------------------------

def video(prompt, seed, **scores):
    return {"prompt": prompt, "seed": seed, "scores": scores}


def test_differences_pair_by_prompt_and_eval_seed():
    before = [video("a", 0, x=0.5, y=0.1), video("a", 1, x=0.6, y=0.2), video("b", 2, x=0.7, y=None)]
    after = [video("b", 2, x=0.9, y=0.3), video("a", 1, x=0.7, y=0.4), video("c", 3, x=1.0, y=1.0)]
    d = stats.differences(after, before, ["x"])
    assert d == pytest.approx({("a", 1): 0.1, ("b", 2): 0.2})              # a/0 and c/3 unmatched
    d = stats.differences(after, before, ["x", "y"])                        # the mean of x and y
    assert d == pytest.approx({("a", 1): (0.7 + 0.4 - 0.6 - 0.2) / 2})     # b/2: y is null before


# --- the crossed ANOVA --------------------------------------------------------------------------

def test_crossed_variance_by_hand():
    import scipy.stats as scipy_stats
    y = np.array([[1.0, 2.0], [3.0, 5.0], [2.0, 6.0]])      # 3 prompts x 2 seeds
    # grand 19/6; prompt means 1.5, 4, 4; seed means 2, 13/3.
    # SS_P = 2 (25/9 + 25/36 + 25/36) = 25/3 -> MS_P = 25/6; SS_S = 3 (49/36 + 49/36) = 49/6 -> MS_S = 49/6;
    # SS_total = 113/6, SS_E = 113/6 - 25/3 - 49/6 = 7/3 -> MS_E = 7/6.
    # Var = (25/6 + 49/6 - 7/6) / 6 = 67/36; df = (67/6)^2 / ((25/6)^2 / 2 + (49/6)^2 / 1 + (7/6)^2 / 2) = 4489/2738.
    var, df = stats.crossed_variance(y)
    assert var == pytest.approx(67 / 36) and df == pytest.approx(4489 / 2738)
    d = stats.interval([{("p0", 0): 1.0, ("p1", 0): 3.0, ("p2", 0): 2.0}, {("p0", 0): 2.0, ("p1", 0): 5.0, ("p2", 0): 6.0}])
    se = math.sqrt(67 / 36)
    assert d["mean"] == pytest.approx(19 / 6) and d["se"] == pytest.approx(se)
    assert d["ci95"] == pytest.approx(scipy_stats.t.ppf(0.975, 4489 / 2738) * se, rel=1e-9)
    assert d["mde"] == pytest.approx((scipy_stats.t.ppf(0.975, 4489 / 2738) + scipy_stats.t.ppf(0.8, 4489 / 2738)) * se)
    assert (d["n_prompts"], d["n_seeds"], d["analysis"]) == (3, 2, "prompts x seeds")


def test_crossed_variance_matches_a_least_squares_fit():
    """Sums of squares from nested additive models fitted by least squares (prompt and seed dummies)."""
    rng = np.random.default_rng(0)
    P, S = 7, 4
    y = rng.normal(size=(P, 1)) + rng.normal(size=(1, S)) + 0.5 * rng.normal(size=(P, S))
    prompt = np.repeat(np.eye(P), S, axis=0)                  # (P S, P), rows in y.ravel() order
    seed = np.tile(np.eye(S), (P, 1))                         # (P S, S)

    def rss(*blocks):
        x = np.hstack([np.ones((P * S, 1)), *blocks])
        fit = np.linalg.lstsq(x, y.ravel(), rcond=None)[0]
        return float(((y.ravel() - x @ fit) ** 2).sum())

    ss_e = rss(prompt, seed)
    ms_p, ms_s = (rss(seed) - ss_e) / (P - 1), (rss(prompt) - ss_e) / (S - 1)
    ms_e = ss_e / ((P - 1) * (S - 1))
    assert ms_p > ms_e and ms_s > ms_e
    var, df = stats.crossed_variance(y)
    assert var == pytest.approx((ms_p + ms_s - ms_e) / (P * S))
    assert df == pytest.approx((ms_p + ms_s - ms_e) ** 2 / (ms_p ** 2 / (P - 1) + ms_s ** 2 / (S - 1) + ms_e ** 2 / ((P - 1) * (S - 1))))


def test_a_variance_component_below_zero_is_zero():
    # Seed means equal (MS_S = 0 < MS_E): the seed term drops out, Var = MS_P / (P S), df = P - 1.
    y = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]])
    rows = y.mean(axis=1)
    ms_p = 2 * ((rows - y.mean()) ** 2).sum() / 2
    var, df = stats.crossed_variance(y)
    assert var == pytest.approx(ms_p / 6) and df == pytest.approx(2)
    var, df = stats.crossed_variance(np.zeros((3, 2)))          # no spread at all: a zero-width interval
    assert var == 0 and df == math.inf


def test_a_row_shared_by_every_seed_is_one_seed():
    rng = np.random.default_rng(1)
    one = {(f"p{i}", e): float(rng.normal()) for i in range(6) for e in range(4)}
    shared = stats.interval([one, dict(one), dict(one)])
    single = stats.interval([one])
    cells = [np.mean([one[(f"p{i}", e)] for e in range(4)]) for i in range(6)]
    mean, half = stats.mean_ci(cells)                           # prompts only: t_5 over the 6 prompt means
    for d in (shared, single):
        assert d["mean"] == pytest.approx(mean) and d["ci95"] == pytest.approx(half)
        assert (d["n_prompts"], d["n_seeds"], d["df"]) == (6, 1, 5)
    assert shared["analysis"] == "prompts, the row shared by every seed" and single["analysis"] == "prompts (one seed)"
    # As three identical crossed columns it is the same interval (MS_S = MS_E = 0); pooled as 72
    # independent videos it is less than half as wide.
    var, df = stats.crossed_variance(np.tile(np.array(cells)[:, None], (1, 3)))
    assert math.sqrt(var) * stats.t_quantile(df) == pytest.approx(half) and df == pytest.approx(5)
    assert stats.mean_ci(list(one.values()) * 3)[1] < half / 2


def test_cell_means_average_eval_seeds_and_keep_prompts_every_seed_has():
    by_seed = [{("a", 0): 1.0, ("a", 1): 3.0, ("b", 2): 5.0, ("c", 3): 7.0}, {("a", 0): 0.0, ("b", 2): 4.0}]
    prompts, y, shared = stats.cell_means(by_seed)
    assert prompts == ["a", "b"] and not shared
    assert y.tolist() == [[2.0, 0.0], [5.0, 4.0]]
    assert stats.interval([{("a", 0): 1.0}])["analysis"] == "too few prompts"


# --- the bootstrap ------------------------------------------------------------------------------

def test_bootstrap_is_reproducible_and_resamples_prompts_and_seeds():
    y = np.array([[1.0, 2.0], [3.0, 5.0], [2.0, 6.0]])
    low, high = stats.bootstrap_interval(y)
    assert (low, high) == stats.bootstrap_interval(y) and low < y.mean() < high
    assert low >= y.min() and high <= y.max()
    assert stats.bootstrap_interval(np.full((5, 3), 0.25)) == (0.25, 0.25)
    # Prompts only (one column): about the t-interval when there are many prompts.
    col = np.random.default_rng(2).normal(size=(200, 1))
    low, high = stats.bootstrap_interval(col)
    assert (high - low) / 2 == pytest.approx(stats.mean_ci(col[:, 0])[1], rel=0.1)
    d = stats.interval([{(f"p{i:03d}", 0): float(col[i, 0]) for i in range(200)}], n_boot=4000)   # same order
    assert d["bootstrap"] == (low, high)


# --- coverage over simulated experiments --------------------------------------------------------

def simulate(rng, n, prompts, eval_seeds, seeds, sd_prompt, sd_seed, sd_cell, sd_video):
    """Per-video differences (n, prompts, eval seeds, seeds) with true mean 0: prompt, training seed,
    prompt x seed and per-video effects."""
    return (rng.normal(0, sd_prompt, (n, prompts, 1, 1)) + rng.normal(0, sd_seed, (n, 1, 1, seeds))
            + rng.normal(0, sd_cell, (n, prompts, 1, seeds)) + rng.normal(0, sd_video, (n, prompts, eval_seeds, seeds)))


@pytest.mark.parametrize("sd_prompt, sd_seed", [(0.03, 0.02), (0.01, 0.05)], ids=["prompts-dominate", "seeds-dominate"])
def test_the_interval_covers_95_percent_and_the_pooled_one_does_not(sd_prompt, sd_seed):
    """The shapes world's design: 18 prompts x 4 eval seeds x 3 training seeds."""
    rng = np.random.default_rng(3)
    n, P, E, S = 4000, 18, 4, 3
    x = simulate(rng, n, P, E, S, sd_prompt, sd_seed, 0.01, 0.05)
    y = x.mean(axis=2)                                        # cell means over the eval seeds
    var, df = stats.crossed_variance(y)
    half = np.array([stats.t_quantile(d) for d in df]) * np.sqrt(var)
    coverage = np.mean(np.abs(y.mean(axis=(1, 2))) <= half)
    assert 0.93 <= coverage <= 0.97, coverage
    # The pooled interval: every video of every seed as one of 216 independent pairs.
    flat = x.reshape(n, -1)
    pooled = stats.t_quantile(P * E * S - 1) * flat.std(axis=1, ddof=1) / math.sqrt(P * E * S)
    pooled_coverage = np.mean(np.abs(flat.mean(axis=1)) <= pooled)
    assert pooled_coverage < 0.8, pooled_coverage
    # interval() on the per-video dicts gives the same half widths.
    for i in range(3):
        by_seed = [{(f"p{p}", e): x[i, p, e, s] for p in range(P) for e in range(E)} for s in range(S)]
        assert stats.interval(by_seed)["ci95"] == pytest.approx(half[i])


# --- the verdict --------------------------------------------------------------------------------

def test_verdict_words():
    assert stats.verdict({"mean": 0.05, "ci95": 0.02}, +1) == "holds"
    assert stats.verdict({"mean": 0.05, "ci95": 0.02}, -1) == "does not hold"
    assert stats.verdict({"mean": -0.05, "ci95": 0.02}, -1) == "holds"
    assert stats.verdict({"mean": 0.01, "ci95": 0.02}, +1) == "cannot tell"
    assert stats.verdict({"mean": 0.0, "ci95": 0.0}, +1) == "cannot tell"          # >= 0 shown only as > 0
    assert stats.verdict({"mean": 0.01, "ci95": float("nan")}, +1) == "cannot tell"


def test_the_bootstrap_runs_narrow_with_three_seeds():
    """Why the bootstrap is a check and not the verdict: three seeds resampled cannot show the
    seed-to-seed spread's tail (the percentile interval has no t_2), so it covers far less than 95%."""
    rng = np.random.default_rng(4)
    y = simulate(rng, 300, 18, 4, 3, 0.01, 0.05, 0.01, 0.05).mean(axis=2)
    covered = [low <= 0 <= high for low, high in (stats.bootstrap_interval(cells, n_boot=1000) for cells in y)]
    assert np.mean(covered) < 0.88, np.mean(covered)


# --- margins, non-inferiority, p-values and Holm (docs/shapes/PLAN.md's amendment) ------------------

def d(mean, ci95, se=None, df=float("inf")):
    return {"mean": mean, "ci95": ci95, "se": ci95 / 1.959963984540054 if se is None else se, "df": df}


def test_verdict_with_a_margin_reads_negligible_inside_it():
    m = 0.01
    assert stats.verdict(d(0.005, 0.004), +1, m) == "negligible"        # [0.001, 0.009]: significant, but small
    assert stats.verdict(d(-0.005, 0.004), +1, m) == "negligible"       # [-0.009, -0.001]: the other way, small
    assert stats.verdict(d(0.0, 0.009), -1, m) == "negligible"          # not significant, shown small
    assert stats.verdict(d(0.02, 0.015), +1, m) == "holds"              # [0.005, 0.035] reaches past the margin
    assert stats.verdict(d(-0.02, 0.015), +1, m) == "does not hold"
    assert stats.verdict(d(0.0, 0.02), +1, m) == "cannot tell"
    assert stats.verdict(d(0.005, 0.004), +1) == "holds"                # no margin: the sign alone


def test_non_inferiority_verdicts():
    m, ni = 0.01, stats.NON_INFERIOR
    assert stats.verdict(d(-0.005, 0.004), +1, m, ni) == "holds"        # lower end -0.009 > -0.01
    assert stats.verdict(d(0.0, 0.0), +1, m, ni) == "holds"             # equal: affirmed, not "cannot tell"
    assert stats.verdict(d(-0.03, 0.01), +1, m, ni) == "does not hold"  # upper end -0.02 < -0.01
    assert stats.verdict(d(-0.01, 0.005), +1, m, ni) == "cannot tell"   # [-0.015, -0.005] straddles -0.01
    assert stats.verdict(d(0.005, 0.004), -1, m, ni) == "holds"         # sign -1: [-0.009, -0.001] oriented
    assert stats.verdict(d(0.0, 0.0), +1, 0.0, ni) == "cannot tell"     # margin 0: equality cannot be shown
    with pytest.raises(ValueError, match="non-inferior"):
        stats.verdict(d(0.0, 0.01), +1, m, "equal")


def test_p_values_by_hand():
    # The normal (df inf): 2 (1 - Phi(1.96)) = 0.0499958, 2 (1 - Phi(2)) = 0.0455003, 2 (1 - Phi(4)) = 6.334e-5.
    assert stats.p_value(d(0.0196, 0, se=0.01), +1) == pytest.approx(0.0499958, abs=1e-6)        # holds vs 0
    assert stats.p_value(d(-0.0196, 0, se=0.01), -1) == pytest.approx(0.0499958, abs=1e-6)
    ni = d(-0.005, 0.0025 * 1.959963984540054)
    assert stats.p_value(ni, +1, 0.01, stats.NON_INFERIOR) == pytest.approx(0.0455003, abs=1e-6)  # t = 0.005 / 0.0025
    inside = d(0.0, 0.0025 * 1.959963984540054)
    assert stats.verdict(inside, +1, 0.01) == "negligible"
    assert stats.p_value(inside, +1, 0.01) == pytest.approx(6.334e-5, rel=1e-3)                   # both sides t = 4
    off = d(0.005, 0.0025 * 1.959963984540054)                      # t = 6 above -m, t = 2 below +m: the larger p
    assert stats.p_value(off, +1, 0.01) == pytest.approx(0.0455003, abs=1e-6)
    assert stats.p_value(d(-0.1, 0.0, se=0.0), -1) == 0.0          # no spread: certain


@pytest.mark.parametrize("kind, margin", [(stats.SIGN, 0.0), (stats.SIGN, 0.02), (stats.NON_INFERIOR, 0.02)])
def test_p_below_005_exactly_when_the_interval_decides(kind, margin):
    rng = np.random.default_rng(3)
    for _ in range(400):
        df = float(rng.uniform(2, 40))
        se = float(rng.uniform(0.001, 0.03))
        diff = {"mean": float(rng.normal(0, 0.04)), "se": se, "df": df, "ci95": stats.t_quantile(df) * se}
        sign = int(rng.choice([-1, 1]))
        word = stats.verdict(diff, sign, margin, kind)
        assert (stats.p_value(diff, sign, margin, kind) < 0.05) == (word != "cannot tell"), (diff, sign, word)


def test_holm_by_hand():
    # sorted 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> 0.06 (non-decreasing)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])                      # capped at 1
    out = stats.holm([0.01, float("nan"), 0.02])                                     # NaN does not count in m
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert stats.adjusted_verdict("holds", 0.049) == "holds"
    assert stats.adjusted_verdict("negligible", 0.06) == "cannot tell"
    assert stats.adjusted_verdict("holds", float("nan")) == "cannot tell"


def test_weighted_scores_and_spreads():
    v = [{"prompt": "a", "seed": 0, "scores": {"vq": 0.9, "dd": 0.5}},
         {"prompt": "b", "seed": 0, "scores": {"vq": 0.7, "dd": 0.0}}]
    assert stats.video_scores(v, ["vq", "dd"], {"vq": 10.0, "dd": 2.0})[("a", 0)] == pytest.approx((9 + 1) / 2)
    sd = stats.spreads(v, ["vq", "dd"])
    assert sd["vq"] == pytest.approx(0.2 / math.sqrt(2)) and sd["dd"] == pytest.approx(0.5 / math.sqrt(2))
    assert stats.spreads(v[:1], ["vq"]) == {}                                         # one video: no spread
