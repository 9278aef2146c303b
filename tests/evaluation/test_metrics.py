"""Each metric on a small hand-made series with a hand-computed value."""

import math

import numpy as np
import pytest

from hybrid_trader.evaluation.metrics import (
    deflated_sharpe_ratio, expected_max_sharpe, expected_max_sharpe_of, max_drawdown, probabilistic_sharpe_ratio,
    profit_factor, psr_from_moments, sharpe_ratio, sortino_ratio, trade_statistics,
)

# Mean 0.005; deviations 0.005, -0.015, 0.015, -0.005; sample variance 5e-4 / 3.
RETURNS = [0.01, -0.01, 0.02, 0.0]


def test_sharpe_is_mean_over_sample_deviation():
    assert sharpe_ratio(RETURNS) == pytest.approx(0.005 / math.sqrt(5e-4 / 3))  # 0.3873
    assert math.isnan(sharpe_ratio([0.01])) and math.isnan(sharpe_ratio([0.01, 0.01]))


def test_sortino_divides_by_the_downside_deviation():
    # Downside squares: 0, 1e-4, 0, 0 -> mean 2.5e-5 -> deviation 0.005.
    assert sortino_ratio(RETURNS) == pytest.approx(0.005 / 0.005)
    assert math.isnan(sortino_ratio([0.01, 0.02]))


def test_max_drawdown_in_dollars_and_from_the_peak():
    assert max_drawdown([100, 120, 90, 130, 110]) == (30.0, 0.25)  # 120 -> 90; 130 -> 110 is smaller
    assert max_drawdown([100, 110, 120]) == (0.0, 0.0)


def test_max_drawdown_pct_is_the_largest_percentage_fall_not_that_of_the_largest_dollar_fall():
    # Falls: 100 -> 50 is $50 = 50% of its peak; 200 -> 120 is $80 = 40%. Each is its own maximum.
    assert max_drawdown([100, 50, 200, 120]) == (80.0, 0.5)
    assert max_drawdown([200, 120, 100, 50]) == (150.0, 0.75)


def test_profit_factor_and_trade_statistics():
    trades = [100.0, -50.0, 30.0, -20.0]
    assert profit_factor(trades) == pytest.approx(130 / 70)
    stats = trade_statistics(trades)
    assert stats == {"trades": 4, "win_rate": 0.5, "average_win": 65.0, "average_loss": -35.0,
                     "profit_factor": pytest.approx(130 / 70)}
    assert profit_factor([10.0]) == math.inf and math.isnan(profit_factor([]))


# Symmetric about its mean 0.01: skewness 0; m2 = 2e-4, m4 = 6.8e-8, kurtosis 1.7;
# Sharpe = 0.01 / sqrt(2.5e-4) = 0.632456.
PSR_RETURNS = [-0.01, 0.0, 0.01, 0.02, 0.03]


def test_probabilistic_sharpe_ratio_on_a_known_example():
    # Phi(0.632456 * sqrt(4) / sqrt(1 - 0 + (1.7 - 1) / 4 * 0.632456^2)) = Phi(1.222847)
    assert probabilistic_sharpe_ratio(PSR_RETURNS) == pytest.approx(0.8893041, abs=1e-6)
    assert probabilistic_sharpe_ratio(PSR_RETURNS, benchmark_sharpe=0.632456) == pytest.approx(0.5, abs=1e-5)


def test_probabilistic_sharpe_ratio_with_skew_and_kurtosis():
    # Left-skewed: mean 0.01; m2 = 7/30000, m3 = -3e-6, m4 = 49/3e8; sample variance 2.8e-4.
    # SR = 0.01 / sqrt(2.8e-4) = 0.597614; g3 = m3 / m2^1.5 = -0.841698; g4 = m4 / m2^2 = 3.
    # Denominator 1 - g3 SR + (g4 - 1)/4 SR^2 = 1 + 0.503011 + 0.178571 = 1.681582;
    # PSR = Phi(0.597614 * sqrt(5) / sqrt(1.681582)) = Phi(1.030498). Negative skew lowers it:
    # with the skew term's sign flipped it would be Phi(1.625825) = 0.948007.
    assert probabilistic_sharpe_ratio([-0.02, 0.01, 0.01, 0.01, 0.02, 0.03]) == pytest.approx(0.8486118, abs=1e-6)
    # Right-skewed: mean 0.01; m2 = 2.4e-4, m3 = 4.8e-6, m4 = 1.68e-7; sample variance 3e-4.
    # SR = 0.577350; g3 = 1.290994; g4 = 2.916667; denominator 1 - 0.745356 + 0.159722 = 0.414366;
    # PSR = Phi(0.577350 * 2 / sqrt(0.414366)) = Phi(1.793813). Positive skew raises it.
    assert probabilistic_sharpe_ratio([0.0, 0.0, 0.0, 0.01, 0.04]) == pytest.approx(0.9635785, abs=1e-6)


def test_deflated_sharpe_ratio_on_a_known_example():
    # Trials 0.1, 0.3, 0.5: V = 0.04; N = 3: Phi^-1(2/3) = 0.430727, Phi^-1(1 - 1/(3e)) = 1.161957;
    # SR0 = 0.2 * (0.422784 * 0.430727 + 0.577216 * 1.161957) = 0.170561.
    assert expected_max_sharpe([0.1, 0.3, 0.5]) == pytest.approx(0.1705609, abs=1e-6)
    # DSR = Phi((0.632456 - 0.170561) * 2 / sqrt(1.07)) = Phi(0.893063)
    assert deflated_sharpe_ratio(PSR_RETURNS, [0.1, 0.3, 0.5]) == pytest.approx(0.8140877, abs=1e-6)
    assert math.isnan(deflated_sharpe_ratio(PSR_RETURNS, [0.3]))  # one trial: nothing to deflate by
    assert deflated_sharpe_ratio(PSR_RETURNS, [0.1, 0.3, 0.5]) < probabilistic_sharpe_ratio(PSR_RETURNS)


def test_deflated_sharpe_ratio_on_the_papers_worked_example():
    # Bailey & Lopez de Prado (2014), the numerical example: N = 100 trials whose annualised Sharpe
    # ratios have variance 1/2; the selected one has an annualised Sharpe ratio of 2.5 over T = 1,250
    # daily returns (5 years of 250 days), skewness -3 and kurtosis 10. Daily: V = 0.5 / 250 = 0.002
    # and SR = 2.5 / sqrt(250) = 0.158114.
    # SR0 = sqrt(0.002) x ((1 - gamma) Phi^-1(0.99) + gamma Phi^-1(1 - 1/(100 e)))
    #     = 0.0447214 x (0.422784 x 2.326348 + 0.577216 x 2.680210) = 0.0447214 x 2.530603 = 0.113172
    # (1.7894 annualised), which the paper rounds to 0.1132.
    sr0 = expected_max_sharpe_of(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.113172, abs=1e-6)
    # DSR = Phi((0.158114 - 0.113172) x sqrt(1249) / sqrt(1 + 3 x 0.158114 + 9/4 x 0.158114^2))
    #     = Phi(0.0449419 x 35.341194 / sqrt(1.530592)) = Phi(1.283816) = 0.9004, the paper's figure.
    assert psr_from_moments(2.5 / math.sqrt(250), 1_250, -3.0, 10.0, sr0) == pytest.approx(0.9004, abs=5e-5)
    # The same from trial Sharpe ratios: two trials +-a have sample variance 2 a^2.
    a = math.sqrt(0.001)
    assert expected_max_sharpe([a, -a]) == pytest.approx(expected_max_sharpe_of(2, 0.002))


def test_metrics_read_money_not_rewards():
    big = np.array(RETURNS) * 10  # a ratio is scale-free; a drawdown in dollars is not
    assert sharpe_ratio(big) == pytest.approx(sharpe_ratio(RETURNS))
    assert max_drawdown([1000, 1200, 900])[0] == 10 * max_drawdown([100, 120, 90])[0]
