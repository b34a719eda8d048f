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
