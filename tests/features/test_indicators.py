"""Each indicator against an independent, loop-by-loop computation on a small series."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hybrid_trader.features import indicators as ind

CLOSES = [44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42, 45.84, 46.08, 45.89, 46.03,
          45.61, 46.28, 46.28, 46.00, 46.03, 46.41, 46.22, 45.64, 46.21, 46.25, 45.71, 46.45]


def col(values) -> pd.DataFrame:
    return pd.DataFrame({0: np.asarray(values, dtype=float)})


def wilder_loop(values: list[float], n: int) -> list[float]:
    out = [math.nan] * len(values)
    first = next(i for i, v in enumerate(values) if not math.isnan(v))
    if first + n > len(values):
        return out
    avg = sum(values[first:first + n]) / n
    out[first + n - 1] = avg
    for i in range(first + n, len(values)):
        avg = avg + (values[i] - avg) / n
        out[i] = avg
    return out


def test_rsi_of_a_known_sequence():
    deltas = [math.nan] + [b - a for a, b in zip(CLOSES, CLOSES[1:])]
    gains = wilder_loop([max(d, 0.0) if not math.isnan(d) else math.nan for d in deltas], 14)
    losses = wilder_loop([max(-d, 0.0) if not math.isnan(d) else math.nan for d in deltas], 14)
    expected = [math.nan if math.isnan(g) else 100 - 100 / (1 + g / l) for g, l in zip(gains, losses)]
    got = ind.rsi(col(CLOSES), 14)[0].tolist()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert math.isnan(got[13]) and not math.isnan(got[14])  # 14 changes need 15 closes
    assert got[14] == pytest.approx(70.53, abs=0.1)  # StockCharts' worked example (it rounds intermediates)


def test_rsi_edge_cases():
    assert ind.rsi(col(range(1, 20)), 14)[0].iloc[-1] == 100.0
    assert ind.rsi(col([5.0] * 20), 14)[0].iloc[-1] == 50.0


def test_atr_is_wilder_smoothed_true_range_without_previous_session_close():
    high = [10, 11, 12, 11.5, 13, 12.5]
    low = [9, 10, 10.5, 10, 11, 11.5]
    close = [9.5, 10.5, 11.8, 10.2, 12.9, 12]
    tr = [high[0] - low[0]] + [
        max(h - l, abs(h - pc), abs(l - pc)) for h, l, pc in zip(high[1:], low[1:], close[:-1])
    ]
    np.testing.assert_allclose(ind.true_range(col(high), col(low), col(close))[0], tr)
    np.testing.assert_allclose(ind.atr(col(high), col(low), col(close), 3)[0], wilder_loop(tr, 3), rtol=1e-12)


def test_macd_against_a_loop_ema():
    def ema_loop(values, span):
        alpha, out, value = 2 / (span + 1), [], None
        for i, v in enumerate(values):
            value = v if value is None else value + alpha * (v - value)
            out.append(value if i >= span - 1 else math.nan)
        return out

    closes = CLOSES * 2
    expected = np.array(ema_loop(closes, 12)) - np.array(ema_loop(closes, 26))
    np.testing.assert_allclose(ind.macd(col(closes))[0], expected, rtol=1e-12)


def test_efficiency_ratio_and_sma_and_log_change():
    closes = [1, 2, 1, 2, 3, 4]
    er = ind.efficiency_ratio(col(closes), 3)[0].tolist()
    assert math.isnan(er[2])
    assert er[3] == pytest.approx(abs(2 - 1) / (1 + 1 + 1))
    assert er[5] == pytest.approx(1.0)
    assert ind.sma(col(closes), 3)[0].iloc[4] == pytest.approx(2.0)
    assert ind.log_change(col(closes), 2)[0].iloc[5] == pytest.approx(math.log(4 / 2))


def test_vwap_resets_at_each_session():
    # Two sessions as two columns of the panel.
    high = pd.DataFrame({0: [11.0, 12.0, 13.0], 1: [101.0, 102.0, 103.0]})
    low = high - 2
    close = high - 1
    volume = pd.DataFrame({0: [100.0, 300.0, 0.0], 1: [0.0, 50.0, 50.0]})
    vwap = ind.session_vwap(high, low, close, volume)
    typical = (high + low + close) / 3
    assert vwap[0].tolist() == pytest.approx([10.0, (10 * 100 + 11 * 300) / 400, (10 * 100 + 11 * 300) / 400])
    # Session 1 knows nothing of session 0; no volume yet means the typical price.
    assert vwap[1].tolist() == pytest.approx([typical[1][0], 101.0, (101 * 50 + 102 * 50) / 100])


def test_adx_against_a_loop_implementation():
    rng = np.random.default_rng(0)
    close = 100 + np.cumsum(rng.normal(0, 1, 80))
    high = close + rng.uniform(0.1, 1.0, 80)
    low = close - rng.uniform(0.1, 1.0, 80)
    n = 14
    plus_dm, minus_dm, tr = [math.nan], [math.nan], [math.nan]
    for i in range(1, 80):
        up, down = high[i] - high[i - 1], low[i - 1] - low[i]
        plus_dm.append(up if up > down and up > 0 else 0.0)
        minus_dm.append(down if down > up and down > 0 else 0.0)
        tr.append(max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1])))
    p, m, t = wilder_loop(plus_dm, n), wilder_loop(minus_dm, n), wilder_loop(tr, n)
    dx = [math.nan if math.isnan(a) else 100 * abs(100 * a / c - 100 * b / c) / (100 * a / c + 100 * b / c)
          for a, b, c in zip(p, m, t)]
    expected = wilder_loop(dx, n)
    got = ind.adx(col(high), col(low), col(close), n)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    assert got.first_valid_index() == 2 * n - 1
