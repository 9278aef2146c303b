"""Performance metrics of a backtest, each defined once here (and in ``docs/evaluation.md``).

Inputs are money, never rewards: a session's net P&L in dollars after all costs,
closed trades' net P&L, and the account's equity path. Daily returns are a
session's net P&L divided by the starting balance: every backtest session is
played as a fresh account at the starting balance. An Apex evaluation account
does not reset: it carries its balance and trailing threshold from day to day
until it passes or breaches; :mod:`hybrid_trader.evaluation.apex` simulates it.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from scipy import stats

__all__ = ["sharpe_ratio", "sortino_ratio", "max_drawdown", "profit_factor", "trade_statistics",
           "probabilistic_sharpe_ratio", "psr_from_moments", "expected_max_sharpe", "expected_max_sharpe_of",
           "deflated_sharpe_ratio", "EULER_GAMMA"]

EULER_GAMMA = 0.5772156649015329


def sharpe_ratio(daily_returns: Sequence[float]) -> float:
    """Daily Sharpe ratio: ``mean(r) / std(r)`` with the sample standard deviation
    (``ddof=1``), not annualised (multiply by ``sqrt(252)`` for a yearly figure).
    NaN with fewer than 2 days or no variation."""
    r = np.asarray(daily_returns, dtype=float)
    if len(r) < 2:
        return float("nan")
    sd = r.std(ddof=1)
    return float(r.mean() / sd) if sd > 0 else float("nan")


def sortino_ratio(daily_returns: Sequence[float]) -> float:
    """Daily Sortino ratio: ``mean(r) / sqrt(mean(min(r, 0)^2))`` (downside deviation about
    0 over all days). NaN without a losing day."""
    r = np.asarray(daily_returns, dtype=float)
    if len(r) == 0:
        return float("nan")
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    return float(r.mean() / downside) if downside > 0 else float("nan")


def max_drawdown(equity: Sequence[float]) -> tuple[float, float]:
    """Maximum drawdown of the equity path, ``(dollars, fraction)``, both >= 0: the largest fall
    from the running peak in dollars, and the largest fall as a fraction of its running peak,
    ``max((peak - e) / peak)``. Each is its own maximum: the two may come from different falls
    (a smaller dollar fall from a lower peak is a larger fraction). The fraction is NaN when the
    running peak is ever <= 0."""
    e = np.asarray(equity, dtype=float)
    if len(e) == 0:
        return 0.0, 0.0
    peak = np.maximum.accumulate(e)
    falls = peak - e
    if not (peak > 0).all():
        return float(falls.max()), float("nan")
    return float(falls.max()), float((falls / peak).max())


def profit_factor(trade_pnl: Sequence[float]) -> float:
    """Gross profit / gross loss of closed trades (inf with no losing trade, NaN with no trade)."""
    t = np.asarray(trade_pnl, dtype=float)
    if len(t) == 0:
        return float("nan")
    loss = -t[t < 0].sum()
    return float(t[t > 0].sum() / loss) if loss > 0 else float("inf")


def trade_statistics(trade_pnl: Sequence[float]) -> dict[str, float]:
    """``trades``, ``win_rate`` (share of closed trades with net P&L > 0), ``average_win`` and
    ``average_loss`` ($, the loss as a negative number; NaN without such trades) and
    ``profit_factor``."""
    t = np.asarray(trade_pnl, dtype=float)
    wins, losses = t[t > 0], t[t <= 0]
    return {"trades": int(len(t)), "win_rate": float(len(wins) / len(t)) if len(t) else float("nan"),
            "average_win": float(wins.mean()) if len(wins) else float("nan"),
            "average_loss": float(losses.mean()) if len(losses) else float("nan"),
            "profit_factor": profit_factor(t)}


def psr_from_moments(sharpe: float, observations: int, skewness: float, kurtosis: float,
                     benchmark_sharpe: float = 0.0) -> float:
    """The probabilistic Sharpe ratio of a Sharpe ratio measured on ``observations`` returns with
    the given skewness ``g3`` and (non-excess) kurtosis ``g4`` (Bailey & Lopez de Prado, 2012):

        PSR(SR*) = Phi( (SR - SR*) * sqrt(n - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR^2) )

    NaN when the denominator is not positive or an input is not finite."""
    denominator = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe ** 2
    if not all(math.isfinite(v) for v in (sharpe, skewness, kurtosis, benchmark_sharpe)) or denominator <= 0:
        return float("nan")
    return float(stats.norm.cdf((sharpe - benchmark_sharpe) * math.sqrt(observations - 1) / math.sqrt(denominator)))


def probabilistic_sharpe_ratio(daily_returns: Sequence[float], benchmark_sharpe: float = 0.0) -> float:
    """Probabilistic Sharpe ratio (Bailey & Lopez de Prado, 2012): the probability that the true
    Sharpe ratio exceeds ``benchmark_sharpe``, :func:`psr_from_moments` of the daily (non-annualised)
    Sharpe ratio and the ``n`` daily returns' skewness and kurtosis (moment ratios ``m3 / m2^1.5``
    and ``m4 / m2^2``, as in the paper). NaN with fewer than 3 days."""
    r = np.asarray(daily_returns, dtype=float)
    sr = sharpe_ratio(r)
    if len(r) < 3 or not math.isfinite(sr):
        return float("nan")
    return psr_from_moments(sr, len(r), float(stats.skew(r)), float(stats.kurtosis(r, fisher=False)),
                            benchmark_sharpe)


def expected_max_sharpe_of(n_trials: int, variance: float) -> float:
    """The Sharpe ratio the best of ``n_trials`` unskilled trials would reach by luck (Bailey & Lopez
    de Prado, 2014), given the variance ``V`` of the trials' Sharpe ratios:

        SR0 = sqrt(V) * ((1 - gamma) * Phi^-1(1 - 1/N) + gamma * Phi^-1(1 - 1/(N e)))

    with ``gamma`` Euler's constant. NaN with fewer than 2 trials."""
    if n_trials < 2 or not math.isfinite(variance) or variance < 0:
        return float("nan")
    return float(math.sqrt(variance) * ((1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / n_trials)
                                        + EULER_GAMMA * stats.norm.ppf(1 - 1 / (n_trials * math.e))))


def expected_max_sharpe(trial_sharpes: Iterable[float]) -> float:
    """:func:`expected_max_sharpe_of` the finite ``trial_sharpes``: ``N`` of them and the sample
    variance (ddof 1) of their values. NaN with fewer than 2 trials."""
    s = np.asarray([x for x in trial_sharpes if math.isfinite(x)], dtype=float)
    return expected_max_sharpe_of(len(s), float(s.var(ddof=1))) if len(s) >= 2 else float("nan")


def deflated_sharpe_ratio(daily_returns: Sequence[float], trial_sharpes: Iterable[float]) -> float:
    """Deflated Sharpe ratio (Bailey & Lopez de Prado, 2014): the PSR against the expected
    maximum Sharpe ratio of the trials, ``DSR = PSR(SR0)`` with ``SR0 = expected_max_sharpe``.
    The trials are every strategy configuration tried (their daily Sharpe ratios, on the same days);
    which ones those are here: :func:`hybrid_trader.evaluation.backtests.add_deflated_sharpe`."""
    return probabilistic_sharpe_ratio(daily_returns, expected_max_sharpe(trial_sharpes))
