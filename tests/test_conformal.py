"""Split-conformal intervals against independent computations: the finite-sample rank by hand, coverage on synthetic
data with known noise, the adaptive width, the stored form and the refusals."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from seqreg_hf.conformal import (
    MAX_STORED,
    calibration_of,
    check_level,
    interval_bounds,
    quantile_rank,
    quantiles,
    require_calibration,
    round_up,
)

NAMES = ["V", "A"]


def config(calibration, ensemble_size=3, names=NAMES):
    return SimpleNamespace(calibration=calibration, ensemble_size=ensemble_size, label_names=names)


@pytest.mark.parametrize("n, level, k", [
    (9, 0.9, 9),  # (n + 1)·L = 9 exactly
    (10, 0.9, 10),  # 9.9 -> 10
    (19, 0.95, 19),
    (99, 0.07, 7),  # 100 * 0.07 is 7.000000000000001 in floats: still rank 7
    (1000, 0.8, 801),  # 800.8 -> 801
])
def test_the_quantile_rank_is_ceil_of_n_plus_one_times_the_level(n, level, k):
    assert quantile_rank(n, level) == k
    # The stored scores are 1..n, so the quantile is the rank itself.
    calibration = calibration_of(np.zeros((n, 1)), np.arange(1, n + 1, dtype=float)[:, None], ["V"])
    assert quantiles(calibration, level) == {"V": float(k)}


def test_a_level_beyond_n_over_n_plus_one_is_refused_in_one_line():
    calibration = calibration_of(np.zeros((19, 1)), np.arange(1, 20, dtype=float)[:, None], ["V"])
    assert quantiles(calibration, 19 / 20)["V"] == 19.0  # the highest level n/(n+1) still has a finite quantile
    with pytest.raises(ValueError, match=r"n=19 the highest level is 0\.9500") as error:
        quantiles(calibration, 0.96)
    assert "\n" not in str(error.value) and "seqreg-hf calibrate" in str(error.value)


@pytest.mark.parametrize("value", [0, 1, 1.0, -0.1, 1.5, float("nan"), True, "0.9"])
def test_a_level_outside_zero_one_is_refused(value):
    with pytest.raises(ValueError, match="between 0 and 1"):
        check_level(value)


def test_marginal_coverage_is_k_over_n_plus_one_over_many_calibrations():
    """Averaged over calibration draws, split conformal covers exactly k/(n+1) of fresh points (continuous scores):
    0.9 for n=9 at level 0.85, where a plain 85 % quantile of the calibration rows would cover 0.85 only."""
    rng = np.random.default_rng(0)
    n, level, trials = 9, 0.85, 4000
    covered = []
    for _ in range(trials):
        calibration = calibration_of(np.zeros((n, 1)), rng.standard_normal((n, 1)), ["V"])
        lo, hi = interval_bounds(calibration, ["V"], np.zeros((50, 1)), None, level)
        covered.append(np.mean(np.abs(rng.standard_normal(50)) <= hi[:, 0]))
    expected = quantile_rank(n, level) / (n + 1)
    assert expected == 0.9
    assert abs(np.mean(covered) - expected) < 0.01  # standard error ~0.003


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95])
def test_constant_intervals_cover_fresh_data_at_the_nominal_level(level):
    rng = np.random.default_rng(1)
    signal = rng.normal(size=(1000, 2))
    noise = np.array([0.3, 1.5])  # per target, in its own units
    calibration = calibration_of(signal, signal + noise * rng.standard_normal((1000, 2)), NAMES)
    assert calibration["kind"] == "constant" and calibration["n"] == 1000 and "floor" not in calibration
    fresh = rng.normal(size=(20000, 2))
    true = fresh + noise * rng.standard_normal((20000, 2))
    lo, hi = interval_bounds(calibration, NAMES, fresh, None, level)
    coverage = ((true >= lo) & (true <= hi)).mean(axis=0)
    assert np.all(np.abs(coverage - level) < 0.02), coverage
    # The width is the Gaussian one: 2 * z_{(1+L)/2} * sigma, within the calibration's sampling error.
    from scipy.stats import norm

    np.testing.assert_allclose((hi - lo).mean(axis=0), 2 * norm.ppf((1 + level) / 2) * noise, rtol=0.08)


def test_adaptive_intervals_follow_the_spread_and_cover_each_kind_of_text():
    """Noise proportional to the members' spread: the adaptive interval covers the nominal share of the quiet texts
    and of the noisy ones alike, where one constant width over-covers the first and under-covers the second."""
    rng = np.random.default_rng(2)

    def draw(rows):
        spread = np.where(rng.random((rows, 2)) < 0.5, 0.1, 1.0)
        predicted = rng.normal(size=(rows, 2))
        return predicted, predicted + spread * rng.standard_normal((rows, 2)), spread

    predicted, true, spread = draw(2000)
    adaptive = calibration_of(predicted, true, NAMES, spread=spread)
    constant = calibration_of(predicted, true, NAMES)
    assert adaptive["kind"] == "adaptive" and adaptive["floor"]["V"] > 0
    predicted, true, spread = draw(20000)
    for calibration, quiet_ok in ((adaptive, True), (constant, False)):
        lo, hi = interval_bounds(calibration, NAMES, predicted, spread, 0.9)
        inside = (true >= lo) & (true <= hi)
        quiet, noisy = inside[spread == 0.1].mean(), inside[spread == 1.0].mean()
        if quiet_ok:
            assert abs(quiet - 0.9) < 0.02 and abs(noisy - 0.9) < 0.02, (quiet, noisy)
        else:
            assert quiet > 0.97 and noisy < 0.85, (quiet, noisy)
    lo, hi = interval_bounds(adaptive, NAMES, predicted, spread, 0.9)
    assert (hi - lo)[spread == 0.1].mean() < 0.2 * (hi - lo)[spread == 1.0].mean()


def test_a_zero_spread_still_gets_a_width_above_zero():
    rng = np.random.default_rng(3)
    spread = rng.uniform(0.05, 0.2, size=(300, 1))
    calibration = calibration_of(np.zeros((300, 1)), spread * rng.standard_normal((300, 1)), ["V"], spread=spread)
    lo, hi = interval_bounds(calibration, ["V"], np.zeros((1, 1)), np.zeros((1, 1)), 0.9)
    assert calibration["floor"]["V"] == pytest.approx(0.1 * np.median(spread), rel=1e-3)
    assert hi[0, 0] - lo[0, 0] == pytest.approx(2 * quantiles(calibration, 0.9)["V"] * calibration["floor"]["V"],
                                                rel=1e-5)
    assert hi[0, 0] > lo[0, 0]


def test_stored_scores_are_sorted_and_rounded_up_to_four_digits():
    rng = np.random.default_rng(4)
    true = rng.exponential(size=(500, 1)) * 10.0 ** rng.integers(-4, 3, size=(500, 1))
    calibration = calibration_of(np.zeros((500, 1)), true, ["V"])
    stored, exact = np.array(calibration["scores"]["V"]), np.sort(true[:, 0])
    assert np.all(np.diff(stored) >= 0) and np.all(stored >= exact)
    assert np.all(stored <= exact * (1 + 1e-3))  # 4 significant digits: at most one unit in the 4th digit
    assert all(float(f"{v:.4g}") == v for v in stored)
    assert round_up(0.12341) == 0.1235 and round_up(0.1234) == 0.1234 and round_up(0) == 0.0


def test_a_large_calibration_keeps_a_subset_of_ranks_that_can_only_widen():
    rng = np.random.default_rng(5)
    n = 7 * MAX_STORED + 3
    true = rng.standard_normal((n, 1))
    calibration = calibration_of(np.zeros((n, 1)), true, ["V"])
    assert len(calibration["scores"]["V"]) <= MAX_STORED and calibration["ranks"][-1] == n
    exact = np.sort(np.abs(true[:, 0]))
    for level in (0.5, 0.8, 0.9, 0.95, 0.999):
        k = math.ceil((n + 1) * level)
        q = quantiles(calibration, level)["V"]
        assert exact[k - 1] <= q <= round_up(exact[min(k - 1 + math.ceil(n / MAX_STORED), n - 1)])


def test_a_model_without_a_matching_calibration_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"DIR has no calibration.*seqreg-hf calibrate --model_name_or_path DIR"):
        require_calibration(config(None), "DIR")
    other = calibration_of(np.zeros((5, 1)), np.ones((5, 1)), ["D"])
    with pytest.raises(ValueError, match=r"does not match its targets \['V', 'A'\]"):
        require_calibration(config(other), "DIR")
    adaptive = calibration_of(np.zeros((5, 2)), np.ones((5, 2)), NAMES, spread=np.ones((5, 2)))
    with pytest.raises(ValueError, match="needs an ensemble"):
        require_calibration(config(adaptive, ensemble_size=1), "DIR")
    assert require_calibration(config(adaptive), "DIR") is adaptive


def test_calibration_refuses_too_few_or_non_finite_rows():
    with pytest.raises(ValueError, match="1 given"):
        calibration_of(np.zeros((1, 1)), np.ones((1, 1)), ["V"])
    with pytest.raises(ValueError, match="finite"):
        calibration_of(np.zeros((3, 1)), np.array([[1.0], [np.nan], [2.0]]), ["V"])
