"""The metrics at their edges: the fewest days that give a value, empty inputs, zero and small trades,
peaks at or under zero. Expected values are computed by hand in the comments. Edge cases must not
warn (a warning here is a division by zero or an empty mean that the code meant to avoid)."""

import math
import warnings

import pytest

from hybrid_trader.evaluation.metrics import (
    expected_max_sharpe, max_drawdown, probabilistic_sharpe_ratio, profit_factor, sharpe_ratio, sortino_ratio,
    trade_statistics,
)


@pytest.fixture(autouse=True)
def warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_sharpe_needs_two_days():
    # Mean 0.02, deviations -0.01 and 0.01: sample deviation sqrt(2e-4 / 1) = 0.0141421.
    assert sharpe_ratio([0.01, 0.03]) == pytest.approx(1.4142136)
    assert math.isnan(sharpe_ratio([])) and math.isnan(sharpe_ratio([0.05]))


def test_sortino_of_a_single_losing_day_and_of_none():
    assert sortino_ratio([-0.01]) == pytest.approx(-1.0)  # -0.01 / sqrt(0.01^2)
    assert math.isnan(sortino_ratio([]))


def test_max_drawdown_of_no_equity_and_of_one_point():
    assert max_drawdown([]) == (0.0, 0.0)
    assert max_drawdown([50_000.0]) == (0.0, 0.0)


def test_max_drawdown_fraction_under_a_peak_below_one_dollar():
    assert max_drawdown([0.5, 0.25, 0.4]) == (0.25, 0.5)  # 0.5 -> 0.25


@pytest.mark.parametrize("equity, dollars", [
    ([0.0, -10.0, -5.0], 10.0),  # the peak is 0: a fraction of nothing
    ([-10.0, -30.0], 20.0),
])
def test_max_drawdown_fraction_is_nan_when_the_peak_is_not_positive(equity, dollars):
    falls, fraction = max_drawdown(equity)
    assert falls == dollars and math.isnan(fraction)


def test_profit_factor_counts_small_trades_and_ignores_flat_ones():
    assert profit_factor([0.5, -1.0]) == 0.5
    assert profit_factor([0.5, -0.5, 0.0]) == 1.0
    assert profit_factor([0.0]) == math.inf  # no losing trade


def test_trade_statistics_count_a_flat_trade_as_not_won():
    stats = trade_statistics([0.0, 0.5, -5.0, 10.0])
    # Wins 0.5 and 10 (mean 5.25); the others 0 and -5 (mean -2.5); profit factor 10.5 / 5.
    assert stats == {"trades": 4, "win_rate": 0.5, "average_win": 5.25, "average_loss": -2.5,
                     "profit_factor": pytest.approx(2.1)}


def test_trade_statistics_without_trades_wins_or_losses():
    empty = trade_statistics([])
    assert empty["trades"] == 0
    assert all(math.isnan(empty[key]) for key in ("win_rate", "average_win", "average_loss", "profit_factor"))
    only_wins = trade_statistics([20.0, 40.0])
    assert only_wins["win_rate"] == 1.0 and only_wins["average_win"] == 30.0
    assert math.isnan(only_wins["average_loss"]) and only_wins["profit_factor"] == math.inf
    only_losses = trade_statistics([-20.0, -40.0])
    assert only_losses["win_rate"] == 0.0 and only_losses["average_loss"] == -30.0
    assert math.isnan(only_losses["average_win"]) and only_losses["profit_factor"] == 0.0


def test_psr_needs_three_days():
    # Days 0.01, 0.02, 0.06: mean 0.03; m2 = 14e-4 / 3, m3 = 6e-6, m4 = 98e-8 / 3; sample variance 7e-4.
    # SR = 0.03 / sqrt(7e-4) = 1.133893; g3 = m3 / m2^1.5 = 0.595170; g4 = m4 / m2^2 = 1.5.
    # Denominator 1 - 0.674860 + 0.125 * 1.285714 = 0.485855; PSR = Phi(1.133893 * sqrt(2) / 0.697032)
    # = Phi(2.300562).
    assert probabilistic_sharpe_ratio([0.01, 0.02, 0.06]) == pytest.approx(0.9892918, abs=1e-6)
    assert math.isnan(probabilistic_sharpe_ratio([0.01, 0.03]))  # a finite Sharpe ratio, but 2 days
    assert math.isnan(probabilistic_sharpe_ratio([0.25, 0.25, 0.25]))  # 3 days, no variation


def test_expected_max_sharpe_needs_two_finite_trials():
    # Trials 0.1, 0.3: V = 0.02; N = 2: Phi^-1(1/2) = 0, Phi^-1(1 - 1/(2e)) = 0.900453;
    # SR0 = sqrt(0.02) * 0.577216 * 0.900453 = 0.0735045.
    assert expected_max_sharpe([0.1, 0.3]) == pytest.approx(0.0735045, abs=1e-7)
    assert expected_max_sharpe([0.1, float("nan"), 0.3, float("inf")]) == pytest.approx(0.0735045, abs=1e-7)
    assert math.isnan(expected_max_sharpe([0.1, float("nan")]))
