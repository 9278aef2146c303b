"""The observation layout: the ordered names of all 261 observation columns.

This registry is the one place the layout is defined. The environment
assembles observations from it, the LLM prompt builder reads features by these
names, and ``docs/observations.md`` is generated from it
(``python -m hybrid_trader.features.registry > docs/observations.md``).

Layout (Phase 2 view = the first 228 columns):

====================  =====  ==========================================
group                 count  columns
====================  =====  ==========================================
window                  220  11 bar features x the last 20 closed bars,
                             named ``<feature>_t-19 ... <feature>_t0``
position                  5  the open position
state                     3  stop flags and the drawdown buffer
context                  26  market and session context at the last
                             closed bar, and the time to the flat deadline
account                   7  account and risk state
====================  =====  ==========================================

No column is a raw price level, an absolute time or a row index, and no two
columns carry the same number (a New York clock time would repeat
``minutes_since_open`` up to a constant). Whether new entries are allowed is
not a column: the action mask gives it to the policy, and
``minutes_since_open`` to the value function.
"""

from __future__ import annotations

from dataclasses import dataclass

from hybrid_trader.env.actions import Action

__all__ = [
    "ObservationColumn",
    "WINDOW_LENGTH",
    "RTH_MINUTES",
    "WINDOW_FEATURES",
    "CONTEXT_FEATURES",
    "POSITION_FEATURES",
    "STATE_FEATURES",
    "PROFILE_FEATURES",
    "ACCOUNT_FEATURES",
    "BAR_FEATURES",
    "OBSERVATION_COLUMNS",
    "OBSERVATION_NAMES",
    "PHASE2_DIM",
    "PHASE3_DIM",
    "ADVICE_COLUMNS",
    "HYBRID_DIM",
    "render_markdown",
]

WINDOW_LENGTH = 20
# Minutes of the regular session (09:30-16:00): the scale of every time-like column.
RTH_MINUTES = 390.0


@dataclass(frozen=True)
class Feature:
    """A named quantity with its one-line meaning.

    ``scaled``: whether the train-fitted robust scaler applies (binary flags
    and already-bounded engine quantities are left as they are).
    ``train_profile``: computed by the fitted scaler from a profile fitted on
    train days (:mod:`hybrid_trader.features.scaling`), not by
    :func:`~hybrid_trader.features.bar_features.compute_bar_features`.
    """

    name: str
    meaning: str
    scaled: bool = True
    train_profile: bool = False


@dataclass(frozen=True)
class ObservationColumn:
    """One column of the observation vector."""

    index: int
    name: str
    group: str
    meaning: str
    source: str  # the bar feature or engine quantity it is read from
    lag: int | None = None  # bars back from the last closed bar (window columns)


# 8 market features + 3 session features per bar, repeated over the window.
WINDOW_FEATURES: tuple[Feature, ...] = (
    Feature("log_return", "1-bar log return of the close (first bar of a session: undefined)"),
    Feature("rel_volume", "volume over its mean of the last 20 bars of the session"),
    Feature("close_vs_sma5", "close / SMA-5 of the close - 1"),
    Feature("close_vs_sma20", "close / SMA-20 of the close - 1"),
    Feature("rsi14", "RSI-14 (Wilder), 0-100"),
    Feature("macd_atr", "MACD line (EMA-12 - EMA-26 of the close) / ATR-14"),
    Feature("momentum10", "log(close / close 10 bars earlier)"),
    Feature("atr14_rel", "ATR-14 (Wilder) / close"),
    Feature("minutes_since_open", "minutes since the 09:30 cash open / 390 (negative before it)"),
    Feature("session_move_atr", "(close - the session's first open) / ATR-14"),
    Feature("session_vol_ratio",
            "sqrt(sum of squared 1-bar log returns since the session's first bar / the same sum of the "
            "train profile), the profile being the mean squared 1-bar log return at each minute since the "
            "session's first bar over the train days' bars: the session's volatility so far relative to "
            "its usual level by that time of day (first bar of a session: undefined)", train_profile=True),
)

POSITION_FEATURES: tuple[Feature, ...] = (
    Feature("position_side", "+1 long, -1 short, 0 flat", scaled=False),
    Feature("bars_in_position", "bars since entry / 390 (0 when flat)", scaled=False),
    Feature("unrealized_atr", "(close - entry) x side / ATR-14 (0 when flat)", scaled=False),
    Feature("stop_distance_atr", "(close - stop) x side / ATR-14 (0 when flat)", scaled=False),
    Feature("target_distance_atr", "(target - close) x side / ATR-14 (0 when flat)", scaled=False),
)

STATE_FEATURES: tuple[Feature, ...] = (
    Feature("stop_at_breakeven", "1 if the stop has been moved to the entry price", scaled=False),
    Feature("trailing_stop_active", "1 if the trailing stop is on", scaled=False),
    Feature("drawdown_buffer", "(equity - trailing drawdown floor) / drawdown limit", scaled=False),
)

CONTEXT_FEATURES: tuple[Feature, ...] = (
    Feature("adx14", "ADX-14 (Wilder), 0-100: trend strength"),
    Feature("adx14_slope", "ADX-14 now minus ADX-14 5 bars earlier"),
    Feature("efficiency_ratio20", "|close - close 20 bars earlier| / sum of |1-bar changes| over 20 bars, 0-1"),
    Feature("volatility_percentile", "percentile rank of atr14_rel among the session's last <=390 bars, 0-1"),
    Feature("sma50_slope", "(SMA-50 now - SMA-50 10 bars earlier) / ATR-14"),
    Feature("sma200_slope", "(SMA-200 now - SMA-200 10 bars earlier) / ATR-14; SMA over the session's last <=200 bars (>=60)"),
    Feature("close_vs_sma50", "(close - SMA-50) / ATR-14"),
    Feature("momentum30", "log(close / close 30 bars earlier)"),
    Feature("momentum60", "log(close / close 60 bars earlier)"),
    Feature("rsi28", "RSI-28 (Wilder), 0-100"),
    Feature("rsi56", "RSI-56 (Wilder), 0-100"),
    Feature("vwap_distance", "(close - session VWAP since 08:30) / ATR-14"),
    Feature("volume_regime", "mean volume of the last 30 bars / mean of the session's last <=120 bars (>=60)"),
    Feature("dist_resistance20", "(highest high of the last 20 bars - close) / ATR-14"),
    Feature("dist_support20", "(close - lowest low of the last 20 bars) / ATR-14"),
    Feature("higher_high", "1 if the high of the last 5 bars exceeds the high of the 5 before", scaled=False),
    Feature("lower_low", "1 if the low of the last 5 bars is below the low of the 5 before", scaled=False),
    Feature("higher_low", "1 if the low of the last 5 bars is above the low of the 5 before", scaled=False),
    Feature("lower_high", "1 if the high of the last 5 bars is below the high of the 5 before", scaled=False),
    Feature("double_top", "1 if the highs of bars t-19..t-10 and t-9..t are within 0.25 ATR and close is >= 0.5 ATR below them", scaled=False),
    Feature("double_bottom", "1 if the lows of bars t-19..t-10 and t-9..t are within 0.25 ATR and close is >= 0.5 ATR above them", scaled=False),
    Feature("breakout", "1 if close exceeds the highest high of the previous 20 bars", scaled=False),
    Feature("breakdown", "1 if close is below the lowest low of the previous 20 bars", scaled=False),
    Feature("bar_range_atr", "(high - low) / ATR-14 of the last bar"),
    Feature("session_efficiency",
            "|close - the session's first open| / the path length since it (|first close - first open| + "
            "sum of |1-bar close changes| since the session's first bar), 0-1: 1 for a one-way session, near 0 "
            "for one that went nowhere (undefined while the path is 0)"),
    Feature("minutes_to_flat", "minutes until the session's flat deadline (last bar) / 390"),
)

ACCOUNT_FEATURES: tuple[Feature, ...] = (
    Feature("equity_change_today", "equity now minus at the session start, incl. unrealized, / drawdown limit", scaled=False),
    Feature("realized_pnl_today", "realized P&L of the session net of costs / drawdown limit", scaled=False),
    Feature("consecutive_losses", "losing trades in a row / 5, capped at 1", scaled=False),
    Feature("recent_win_rate", "winning share of the last 10 closed trades (0.5 before any)", scaled=False),
    Feature("trade_mae_atr", "open trade's maximum adverse excursion / ATR-14 (0 when flat)", scaled=False),
    Feature("trade_mfe_atr", "open trade's maximum favourable excursion / ATR-14 (0 when flat)", scaled=False),
    Feature("trades_today", "trades entered this session / 10", scaled=False),
)

# Bar-level features: computed by the feature_engineering pipeline, except the train-profile ones,
# which the scaler fitted on train days computes (they need statistics across sessions).
BAR_FEATURES: tuple[Feature, ...] = WINDOW_FEATURES + CONTEXT_FEATURES
PROFILE_FEATURES: tuple[str, ...] = tuple(f.name for f in BAR_FEATURES if f.train_profile)


def _build_columns() -> tuple[ObservationColumn, ...]:
    columns: list[ObservationColumn] = []

    def add(name: str, group: str, meaning: str, source: str, lag: int | None = None) -> None:
        columns.append(ObservationColumn(len(columns), name, group, meaning, source, lag))

    for feature in WINDOW_FEATURES:
        for lag in range(WINDOW_LENGTH - 1, -1, -1):
            add(f"{feature.name}_t-{lag}" if lag else f"{feature.name}_t0", "window",
                f"{feature.meaning}, {lag} bar(s) before the last closed bar" if lag else
                f"{feature.meaning}, last closed bar", feature.name, lag)
    for group, features in (("position", POSITION_FEATURES), ("state", STATE_FEATURES),
                            ("context", CONTEXT_FEATURES), ("account", ACCOUNT_FEATURES)):
        for feature in features:
            add(feature.name, group, feature.meaning, feature.name, 0 if group == "context" else None)
    return tuple(columns)


OBSERVATION_COLUMNS: tuple[ObservationColumn, ...] = _build_columns()
OBSERVATION_NAMES: tuple[str, ...] = tuple(c.name for c in OBSERVATION_COLUMNS)
PHASE3_DIM = len(OBSERVATION_COLUMNS)
PHASE2_DIM = sum(1 for c in OBSERVATION_COLUMNS if c.group in ("window", "position", "state"))

assert PHASE3_DIM == 261 and PHASE2_DIM == 228, (PHASE3_DIM, PHASE2_DIM)
assert len(set(OBSERVATION_NAMES)) == PHASE3_DIM, "observation names must be unique"
assert [c.group for c in OBSERVATION_COLUMNS] == (
    ["window"] * len(WINDOW_FEATURES) * WINDOW_LENGTH + ["position"] * len(POSITION_FEATURES)
    + ["state"] * len(STATE_FEATURES) + ["context"] * len(CONTEXT_FEATURES) + ["account"] * len(ACCOUNT_FEATURES)
), "Phase 2 is window, position, state; Phase 3 appends context and account"
assert all(c.group in ("window", "position", "state") for c in OBSERVATION_COLUMNS[:PHASE2_DIM])


# The advisor's latest opinion, appended after the 261 columns in Phase 3's hybrid policy.
# Only the fusion reads these (the adapter maps the 261 columns); all zero when there is none.
ADVICE_COLUMNS: tuple[ObservationColumn, ...] = tuple(
    ObservationColumn(PHASE3_DIM + i, name, "advice", meaning, "advisor", None)
    for i, (name, meaning) in enumerate(
        [(f"advice_p_{action.name.lower()}", f"advisor's probability of {action.name} (0 if masked or no advice)")
         for action in Action]  # one per action, in the action space's order
        + [("advice_confidence", "advisor's top probability (0 without advice)"),
           ("advice_age", "bars since the advice was asked for / max_advice_age (0 without advice)"),
           ("advice_present", "1 if there is advice no older than max_advice_age, else 0")]
    )
)
HYBRID_DIM = PHASE3_DIM + len(ADVICE_COLUMNS)


def render_markdown() -> str:
    """The observation-layout reference page (``docs/observations.md``)."""
    lines = [
        "# Observation layout",
        "",
        "Generated from `src/hybrid_trader/features/registry.py` by",
        "`python -m hybrid_trader.features.registry > docs/observations.md`; do not edit by hand.",
        "",
        f"Phase 2 observes columns 0-{PHASE2_DIM - 1} ({PHASE2_DIM}); Phase 3 observes all {PHASE3_DIM}.",
        f"Window columns repeat each bar feature for the last {WINDOW_LENGTH} closed bars, oldest first.",
        "",
        "| index | name | group | meaning |",
        "|---|---|---|---|",
    ]
    lines += [f"| {c.index} | `{c.name}` | {c.group} | {c.meaning} |" for c in OBSERVATION_COLUMNS]
    lines += [
        "",
        "## The advisor's opinion (Phase 3 hybrid policy only)",
        "",
        f"The hybrid policy observes {HYBRID_DIM} columns: the {PHASE3_DIM} above, then the advisor's latest",
        "opinion. The adapter reads only the first 261; the fusion reads these (docs/phase3.md).",
        "",
        "| index | name | group | meaning |",
        "|---|---|---|---|",
    ]
    lines += [f"| {c.index} | `{c.name}` | {c.group} | {c.meaning} |" for c in ADVICE_COLUMNS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
