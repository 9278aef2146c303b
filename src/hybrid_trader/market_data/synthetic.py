"""The embedded default market: seeded, synthetic, NQ-like 1-minute bars.

SYNTHETIC DATA. Nothing here is a real market. It exists so the pipeline runs
end to end with no data of the user's, and so that market regimes are known
(hidden from the agent) for evaluation.

Model, per trading day of the CME equity calendar:

* a hidden regime from a persistent Markov chain over :data:`REGIMES`
  (stay with probability ``regime_persistence``, else move to another regime
  uniformly);
* 1-minute log returns ``r_t = mu + phi (r_{t-1} - mu) - kappa x_{t-1} + s_t e_t``
  where ``x`` is the log move since the session's first bar, ``mu`` the regime's
  drift, ``phi`` its short-term autocorrelation, ``kappa`` its pull back to the
  open (ranging days), ``e_t`` Student-t(5) noise with unit variance and ``s_t``
  the regime's volatility times a U-shaped intraday profile;
* each session opens at the starting price plus an overnight gap (stationary,
  below); highs/lows extend beyond open/close by a half-normal excursion; all
  prices on the tick grid;
* volume proportional to the intraday volatility profile and to the size of
  the bar's shock, with log-normal noise.

Planted markets (``planted`` set, a :class:`PlantedEdge`): the regimes keep
their labels' places but lose every edge of their own (no drift, no
autocorrelation, no pull to the open, one volatility level), and one known
edge of chosen strength is added, whose optimal direction is
:func:`oracle_directions`:

* ``time_of_day``: a drift of ``+points_per_minute`` on every regular-session
  bar (09:30-16:00 New York) that starts before ``turn``, and of
  ``-points_per_minute`` from ``turn`` to 16:00; nothing outside those hours.
* ``regime``: each day is ``planted_up`` or ``planted_down`` (independent,
  equally likely) and drifts by ``+/-points_per_minute`` on every bar of the
  session, so the move since the session's first open reveals the day's
  direction.
* ``none``: the no-edge control, the same market with no drift at all.

Drifts are log returns of ``points_per_minute / start_price`` a minute, i.e.
points at the starting price level.

Every market is stationary: each session opens at the starting price plus its
overnight gap instead of at the previous close, so the point scale, and with
it the stop sizes and the reach of the dollar drawdown limit, is the same on
the first session and the last. Chained sessions wander: the default market's
320 sessions went from 20,000 to 78,000 (the regimes' drifts compound), the
test days' point volatility was about four times the first days', and even
buy-and-hold breached the drawdown limit on 52 of 64 test sessions. No
feature looks back across sessions, so the chaining carried nothing to learn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hybrid_trader.market_data.calendar import expected_bar_times, trading_sessions

__all__ = ["REGIMES", "PLANTED_KINDS", "PLANTED_LABELS", "PlantedEdge", "RegimeDynamics", "SyntheticMarketConfig",
           "check_planted_labels", "generate_synthetic_bars", "oracle_directions"]

REGIMES = ("trending_up", "trending_down", "ranging", "volatile")
PLANTED_KINDS = ("none", "time_of_day", "regime")
# The day labels each planted kind writes.
PLANTED_LABELS = {"time_of_day": ("planted_time_of_day",), "regime": ("planted_up", "planted_down"),
                  "none": ("no_edge",)}
# Minutes from the session window's start (08:30 New York) to the 09:30 cash open and to 16:00.
_RTH_START, _RTH_END = 60, 450


@dataclass(frozen=True)
class RegimeDynamics:
    """How one regime shapes a day.

    Attributes:
        drift_sigmas: Expected open-to-close move, in units of the daily volatility.
        autocorrelation: AR(1) coefficient ``phi`` of 1-minute returns.
        vol_scale: Multiplier on the base daily volatility.
        mean_reversion: Per-minute fraction ``kappa`` of the move since the open pulled back.
    """

    drift_sigmas: float
    autocorrelation: float
    vol_scale: float
    mean_reversion: float


def _default_dynamics() -> dict[str, RegimeDynamics]:
    return {
        "trending_up": RegimeDynamics(1.2, 0.08, 1.0, 0.0),
        "trending_down": RegimeDynamics(-1.2, 0.08, 1.1, 0.0),
        "ranging": RegimeDynamics(0.0, -0.15, 0.75, 0.01),
        "volatile": RegimeDynamics(0.0, 0.0, 1.7, 0.0),
    }


@dataclass(frozen=True)
class PlantedEdge:
    """A known edge planted in the synthetic market (see the module docstring).

    Attributes:
        kind: ``time_of_day``, ``regime`` or ``none`` (the no-edge control).
        points_per_minute: Drift per 1-minute bar, in points at the starting price.
        turn: ``time_of_day`` only: New York clock time at which the drift turns from up to down.
    """

    kind: str = "time_of_day"
    points_per_minute: float = 1.0
    turn: str = "12:45"

    def __post_init__(self) -> None:
        if self.kind not in PLANTED_KINDS:
            raise ValueError(f"planted.kind must be one of {PLANTED_KINDS}, got {self.kind!r}")
        if not self.points_per_minute >= 0:
            raise ValueError(f"planted.points_per_minute must be >= 0, got {self.points_per_minute}")
        if not _RTH_START < self.turn_minute < _RTH_END:
            raise ValueError(f"planted.turn must lie strictly between 09:30 and 16:00, got {self.turn!r}")

    @property
    def turn_minute(self) -> int:
        """``turn`` in minutes from the session window's start (08:30 New York)."""
        hours, minutes = str(self.turn).split(":")
        return int(hours) * 60 + int(minutes) - (8 * 60 + 30)

    @classmethod
    def from_params(cls, params: "PlantedEdge | dict[str, Any] | None") -> "PlantedEdge | None":
        """A planted edge from its parameters; ``None`` for the default (unplanted) market."""
        if params is None or isinstance(params, PlantedEdge):
            return params
        return cls(**params)


@dataclass(frozen=True)
class SyntheticMarketConfig:
    """Parameters of the synthetic market (see the module docstring for the model).

    Attributes:
        n_days: Number of trading sessions to generate.
        seed: Seed of the random generator; equal seeds give equal bars.
        start_date: First calendar date considered (the first session is on or after it).
        start_price: Open of the first bar, in index points.
        tick_size: Price grid, in index points.
        daily_vol: Base standard deviation of a session's log return.
        overnight_vol: Standard deviation of the overnight gap, as a log return.
        regime_persistence: Probability that tomorrow's regime equals today's.
        base_volume: Mean contracts per bar at a volatility-profile value of 1.
        symbol: Symbol written on every bar.
        dynamics: Per-regime :class:`RegimeDynamics` (ignored by planted markets).
        planted: A :class:`PlantedEdge` (or its parameters as a mapping); ``None``: the default market.
    """

    n_days: int = 60
    seed: int = 7
    start_date: str = "2024-01-02"
    start_price: float = 20_000.0
    tick_size: float = 0.25
    daily_vol: float = 0.011
    overnight_vol: float = 0.004
    regime_persistence: float = 0.8
    base_volume: float = 1_500.0
    symbol: str = "NQ-SYNTH"
    dynamics: dict[str, RegimeDynamics] = field(default_factory=_default_dynamics)
    planted: PlantedEdge | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "planted", PlantedEdge.from_params(self.planted))
        if self.n_days < 1:
            raise ValueError(f"n_days must be >= 1, got {self.n_days}")
        if not 0.0 <= self.regime_persistence <= 1.0:
            raise ValueError("regime_persistence must be in [0, 1]")
        if set(self.dynamics) != set(REGIMES):
            raise ValueError(f"dynamics must define exactly {REGIMES}")
        if self.start_price <= 0 or self.tick_size <= 0 or self.daily_vol <= 0:
            raise ValueError("start_price, tick_size and daily_vol must be > 0")


def intraday_vol_profile(minutes_from_window_start: np.ndarray) -> np.ndarray:
    """U-shaped volatility multiplier by minute since 08:30 ET.

    Quiet pre-open hour, a spike at the 09:30 cash open decaying to a midday
    low, a rise into the 16:00 cash close, then a quiet last hour.
    """
    m = np.asarray(minutes_from_window_start, dtype=float)
    rth_fraction = (m - 60.0) / 390.0  # 0 at 09:30, 1 at 16:00
    in_rth = (rth_fraction >= 0) & (rth_fraction < 1)
    x = np.clip(rth_fraction, 0.0, 1.0)
    rth = 0.6 + 1.0 * np.exp(-x / 0.08) + 0.6 * np.exp(-(1.0 - x) / 0.1)
    return np.where(in_rth, rth, np.where(m < 60, 0.45, 0.4))


def _regime_path(rng: np.random.Generator, n_days: int, persistence: float) -> np.ndarray:
    k = len(REGIMES)
    regimes = np.empty(n_days, dtype=np.int64)
    regimes[0] = rng.integers(k)
    stays = rng.random(n_days) < persistence
    jumps = rng.integers(1, k, size=n_days)  # offset to a *different* regime
    for d in range(1, n_days):
        regimes[d] = regimes[d - 1] if stays[d] else (regimes[d - 1] + jumps[d]) % k
    return regimes


def generate_synthetic_bars(config: SyntheticMarketConfig | None = None) -> pd.DataFrame:
    """Generate the synthetic market.

    Args:
        config: Market parameters; defaults to :class:`SyntheticMarketConfig()`.

    Returns:
        One row per bar: ``timestamp`` (bar start, tz-aware UTC), ``open``,
        ``high``, ``low``, ``close`` (float, on the tick grid), ``volume``
        (int), ``symbol``, and ``regime`` (the day's hidden regime name, for
        evaluation only; never a feature). Planted markets label every day
        ``planted_time_of_day``, ``planted_up``/``planted_down`` or ``no_edge``.
    """
    cfg = config or SyntheticMarketConfig()
    rng = np.random.default_rng(cfg.seed)
    sessions = trading_sessions(cfg.start_date, cfg.n_days)
    n_days = len(sessions)
    bar_times = [expected_bar_times(s) for s in sessions.itertuples()]
    width = max(len(t) for t in bar_times)
    minutes = np.array(
        [((t - s.window_start).total_seconds() / 60.0) for s, t in zip(sessions.itertuples(), bar_times)],
        dtype=object,
    )

    regime_idx = _regime_path(rng, n_days, cfg.regime_persistence)
    planted = cfg.planted
    dynamics = cfg.dynamics if planted is None else {r: RegimeDynamics(0.0, 0.0, 1.0, 0.0) for r in REGIMES}
    dyn = [dynamics[REGIMES[i]] for i in regime_idx]
    drift_sig = np.array([d.drift_sigmas for d in dyn])
    phi = np.array([d.autocorrelation for d in dyn])
    vol_scale = np.array([d.vol_scale for d in dyn]) * rng.lognormal(0.0, 0.15, n_days)
    kappa = np.array([d.mean_reversion for d in dyn])

    minute_grid = np.full((n_days, width), np.nan)
    for d, m in enumerate(minutes):
        minute_grid[d, : len(m)] = m
    valid = ~np.isnan(minute_grid)
    profile = np.where(valid, intraday_vol_profile(np.nan_to_num(minute_grid)), 0.0)

    # Normalise so a full regular session has variance daily_vol**2 at vol_scale 1.
    full_day_profile = intraday_vol_profile(np.arange(510.0))
    per_minute = cfg.daily_vol / np.sqrt(np.sum(full_day_profile**2))
    sigma = per_minute * vol_scale[:, None] * profile
    shocks = rng.standard_t(5, size=(n_days, width)) / np.sqrt(5.0 / 3.0)
    drift = (drift_sig * cfg.daily_vol * vol_scale / 510.0)[:, None] * valid
    labels = np.array(REGIMES, dtype=object)[regime_idx]
    if planted is not None:
        drift, labels = _planted_drift(planted, rng, minute_grid, valid, cfg.start_price)

    log_move = np.zeros((n_days, width))
    prev_r = np.zeros(n_days)
    x = np.zeros(n_days)
    for t in range(width):  # recursion over minutes, vectorised across days
        r = drift[:, t] + phi * (prev_r - drift[:, t]) - kappa * x + sigma[:, t] * shocks[:, t]
        r = np.where(valid[:, t], r, 0.0)
        x = x + r
        log_move[:, t] = x
        prev_r = r

    gaps = rng.normal(0.0, cfg.overnight_vol, n_days)
    gaps[0] = 0.0
    # Stationary: every session opens at the starting price plus its overnight gap (module docstring).
    day_open_log = np.log(cfg.start_price) + gaps

    close_log = day_open_log[:, None] + log_move
    open_log = np.concatenate([day_open_log[:, None], close_log[:, :-1]], axis=1)
    up_wick = np.abs(rng.normal(0.0, 0.6, (n_days, width))) * sigma
    down_wick = np.abs(rng.normal(0.0, 0.6, (n_days, width))) * sigma
    high_log = np.maximum(open_log, close_log) + up_wick
    low_log = np.minimum(open_log, close_log) - down_wick

    def on_tick(log_price: np.ndarray) -> np.ndarray:
        return np.round(np.exp(log_price) / cfg.tick_size) * cfg.tick_size

    o, c = on_tick(open_log), on_tick(close_log)
    h = np.maximum(on_tick(high_log), np.maximum(o, c))
    lo = np.minimum(on_tick(low_log), np.minimum(o, c))

    shock_size = 0.5 + 0.5 * np.abs(shocks)
    vol_noise = rng.lognormal(0.0, 0.25, (n_days, width))
    volume = np.maximum(1, np.round(cfg.base_volume * profile * vol_scale[:, None] * shock_size * vol_noise))

    flat = valid.ravel()
    timestamps = pd.DatetimeIndex(np.concatenate([t.tz_convert("UTC") for t in bar_times]))
    day_regime = np.repeat(labels, valid.sum(axis=1))
    return pd.DataFrame(
        {
            "timestamp": timestamps,
            "open": o.ravel()[flat],
            "high": h.ravel()[flat],
            "low": lo.ravel()[flat],
            "close": c.ravel()[flat],
            "volume": volume.ravel()[flat].astype(np.int64),
            "symbol": cfg.symbol,
            "regime": day_regime,
        }
    )


def _planted_drift(edge: PlantedEdge, rng: np.random.Generator, minute_grid: np.ndarray, valid: np.ndarray,
                   start_price: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-bar log drift ``(n_days, width)`` of a planted edge, and each day's label."""
    n_days = len(minute_grid)
    step = edge.points_per_minute / start_price
    minute = np.nan_to_num(minute_grid, nan=-1.0)
    if edge.kind == "time_of_day":
        in_rth = (minute >= _RTH_START) & (minute < _RTH_END)
        sign = np.where(minute < edge.turn_minute, 1.0, -1.0) * in_rth
        return step * sign * valid, np.full(n_days, PLANTED_LABELS["time_of_day"][0], dtype=object)
    if edge.kind == "regime":
        up = rng.random(n_days) < 0.5
        sign = np.where(up, 1.0, -1.0)[:, None]
        return step * sign * valid, np.where(up, *PLANTED_LABELS["regime"]).astype(object)
    return np.zeros_like(minute_grid), np.full(n_days, PLANTED_LABELS["none"][0], dtype=object)


def oracle_directions(bars: pd.DataFrame, edge: PlantedEdge) -> np.ndarray:
    """The known optimal side (+1 long, -1 short, 0 none) to hold over the bar after each bar.

    A decision at the close of bar ``t`` is filled at the next bar's open, so the
    direction at ``t`` is that of the planted drift over bar ``t + 1``:

    * ``time_of_day``: +1 when the next minute starts in [09:30, ``turn``), -1 in
      [``turn``, 16:00), else 0 (known from the clock alone);
    * ``regime``: the sign of the move since the session's first open,
      ``close_t - open_first``: the day's drift shows in that move, so its sign is the
      simple rule a trader would use (not the exact Bayes rule, which would weight each
      minute's return by its inverse variance under the intraday volatility profile);
    * ``none``: 0 everywhere (no edge to take).

    A session's last bar gets 0: nothing can be filled after it within the session.

    Args:
        bars: Clean bars in time order: ``timestamp`` (tz-aware), ``session_date``, ``open``, ``close``.
        edge: The planted edge.

    Returns:
        ``int64`` array of the bars' length.
    """
    if edge.kind == "none":
        return np.zeros(len(bars), dtype=np.int64)
    session = bars["session_date"].to_numpy()
    has_next_bar = np.append(session[1:] == session[:-1], False)
    if edge.kind == "time_of_day":
        local = pd.DatetimeIndex(bars["timestamp"]).tz_convert("America/New_York")
        next_minute = local.hour * 60 + local.minute + 1 - (8 * 60 + 30)
        in_rth = (next_minute >= _RTH_START) & (next_minute < _RTH_END)
        side = np.where(next_minute < edge.turn_minute, 1, -1) * in_rth
    else:
        first_open = bars.groupby("session_date", sort=False)["open"].transform("first").to_numpy(dtype=float)
        side = np.sign(bars["close"].to_numpy(dtype=float) - first_open)
    return (side * has_next_bar).astype(np.int64)


def check_planted_labels(edge: PlantedEdge | None, day_labels: pd.Series) -> None:
    """Refuse to judge data by an edge it was not generated with.

    Args:
        edge: The edge the evaluation assumes (``None``: not planted).
        day_labels: The hidden day labels of the data (empty for a user's file).

    Raises:
        ValueError: the labels are of another planted kind than ``edge``, or of none while
            ``edge`` is set, or planted while ``edge`` is ``None``.
    """
    labels = set(day_labels.astype(str))
    planted_kinds = {kind for kind, names in PLANTED_LABELS.items() if labels & set(names)}
    if edge is None:
        if planted_kinds:
            raise ValueError(f"the data has a planted {sorted(planted_kinds)[0]} edge but evaluation.planted_edge is "
                             "null: run it with --env planted (and the same planted_kind)")
        return
    if not labels <= set(PLANTED_LABELS[edge.kind]):
        found = sorted(planted_kinds) or ["no planted edge"]
        raise ValueError(f"evaluation.planted_edge.kind is {edge.kind!r} but the data holds {', '.join(found)}: "
                         "evaluate with the planted_kind the data was generated with")
