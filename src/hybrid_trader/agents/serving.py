"""What a client holds (recent 1-minute bars and an account state) -> the policy's observation.

A registered policy (:mod:`hybrid_trader.agents.registry`) accepts a client's
*bars input*: one DataFrame whose rows are the 1-minute bars of the current
session, from its first bar (08:30 New York) through the *decision bar* (the
last closed bar; the last row), and whose ``account_*`` columns give the
account at that bar's close (read from the last row; other rows may repeat
them or be empty). :func:`client_observation` turns it into the observation
and the action masks with training's own code:

* :func:`~hybrid_trader.features.bar_features.compute_bar_features` on the
  session's bars (every feature restarts at the session's first bar, so those
  bars are exactly what training saw of that day up to the decision bar);
* the train-fitted :class:`~hybrid_trader.features.scaling.FeatureScaler`
  shipped with the model;
* :meth:`~hybrid_trader.env.market.MarketData.from_frames` with the trained
  entry window, and a :class:`~hybrid_trader.env.engine.TradingEngine` set to
  the client's account state, read by the
  :class:`~hybrid_trader.env.observation.ObservationBuilder` and
  :meth:`~hybrid_trader.env.engine.TradingEngine.action_masks`.

The session is completed after the decision bar with flat placeholder bars up
to its last bar, so that the session's end (the flat deadline and the last
bar that may open a position) is where training has it; every feature is
causal, so the placeholders never reach the decision bar's values.

For the Phase 3 hybrid (271 columns) the advisor's opinion is optional: a
client without the advisor sends no ``advice_*`` columns and the opinion is
"no advice present" (all ten columns 0, what training observes when no
opinion is held); a client with one sends all ten.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hybrid_trader.env.engine import EngineConfig, TradingEngine
from hybrid_trader.env.factory import engine_config
from hybrid_trader.env.market import MarketData
from hybrid_trader.env.observation import ObservationBuilder
from hybrid_trader.features.bar_features import compute_bar_features
from hybrid_trader.features.registry import ADVICE_COLUMNS, HYBRID_DIM, PHASE2_DIM, PHASE3_DIM
from hybrid_trader.features.scaling import FeatureScaler
from hybrid_trader.market_data.calendar import EXCHANGE_TZ, expected_bar_times, sessions_between
from hybrid_trader.market_data.clean import widen_range_to_open_close
from hybrid_trader.markets import ContractSpec

__all__ = ["AccountField", "BAR_INPUT_COLUMNS", "POSITION_FIELDS", "DRAWDOWN_FIELDS", "ACCOUNT_FIELDS",
           "ClientInputError",
           "TradingRules", "account_fields", "client_observation", "client_input_example", "phase_of"]

BAR_INPUT_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
ADVICE_NAMES = tuple(c.name for c in ADVICE_COLUMNS)
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")


@dataclass(frozen=True)
class AccountField:
    """One ``account_*`` input column: its name, meaning and the engine state it sets."""

    name: str
    meaning: str


# Phase 2 and 3: the open position.
POSITION_FIELDS: tuple[AccountField, ...] = (
    AccountField("account_position", "+1 long, -1 short, 0 flat (one position of the trained size)"),
    AccountField("account_entry_price", "fill price of the open position (ignored when flat)"),
    AccountField("account_stop_price", "its stop price now (ignored when flat)"),
    AccountField("account_target_price", "its target price (ignored when flat)"),
    AccountField("account_bars_held", "bars from the entry's bar through the decision bar: 1 on the bar the entry "
                                      "filled in (ignored when flat)"),
    AccountField("account_stop_at_breakeven", "1 if the stop was moved to the entry price, else 0"),
    AccountField("account_trailing_stop", "1 if the trailing stop is on, else 0"),
)
# Phase 2 and 3: the distance to the trailing drawdown threshold (the state column drawdown_buffer).
DRAWDOWN_FIELDS: tuple[AccountField, ...] = (
    AccountField("account_balance", "realized balance now: the start balance plus closed trades' P&L, minus every "
                                    "commission paid, including the open position's entry ($)"),
    AccountField("account_drawdown_floor", "the trailing drawdown threshold now (Apex's liquidation threshold): "
                                           "the equity at which the account is liquidated ($)"),
)
# Phase 3 only: the account and the session so far.
ACCOUNT_FIELDS: tuple[AccountField, ...] = (
    AccountField("account_session_start_balance", "the balance at the session's start ($)"),
    AccountField("account_realized_pnl_today", "P&L of the session's closed trades, net of costs ($)"),
    AccountField("account_consecutive_losses", "losing trades in a row up to the last closed trade (0 after a win)"),
    AccountField("account_closed_trades_today", "trades closed this session"),
    AccountField("account_wins_last_10", "winning trades among the last min(10, closed trades today) closed trades"),
    AccountField("account_entries_today", "positions opened this session"),
    AccountField("account_trade_mae_points", "the open trade's maximum adverse excursion, index points "
                                             "(0 when flat)"),
    AccountField("account_trade_mfe_points", "the open trade's maximum favourable excursion, index points "
                                             "(0 when flat)"),
)


class ClientInputError(ValueError):
    """The model input cannot be turned into an observation; the message says why and what to send."""


def phase_of(observation_dim: int) -> int:
    """2 for the 228-column Phase 2 policy, 3 for the 261- or 271-column Phase 3 policies."""
    if observation_dim == PHASE2_DIM:
        return 2
    if observation_dim in (PHASE3_DIM, HYBRID_DIM):
        return 3
    raise ValueError(f"no policy observes {observation_dim} columns")


def account_fields(observation_dim: int) -> tuple[AccountField, ...]:
    """The ``account_*`` columns a policy of ``observation_dim`` columns needs."""
    return POSITION_FIELDS + DRAWDOWN_FIELDS + (ACCOUNT_FIELDS if phase_of(observation_dim) == 3 else ())


@dataclass(frozen=True)
class TradingRules:
    """The trained account's rules: the contract, the engine's configuration, the entry window."""

    contract: ContractSpec
    engine: EngineConfig
    entry_start: str
    entry_end: str

    @classmethod
    def from_environment(cls, contract: ContractSpec, environment_params: dict[str, Any]) -> "TradingRules":
        """From the ``environment`` parameters (``entry_window``, ``engine``) and the traded contract."""
        window = environment_params["entry_window"]
        return cls(contract, engine_config(environment_params), str(window["start"]), str(window["end"]))

    def to_dict(self) -> dict[str, Any]:
        return {"contract": dataclasses.asdict(self.contract), "engine": dataclasses.asdict(self.engine),
                "entry_window": {"start": self.entry_start, "end": self.entry_end}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TradingRules":
        """Read :meth:`to_dict`'s output; fields this code does not know are left out (a version
        registered by other code still loads; none of them reaches the observation)."""
        def known(kind: type, values: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(kind)}}

        window = data["entry_window"]
        return cls(ContractSpec(**known(ContractSpec, data["contract"])),
                   EngineConfig(**known(EngineConfig, data["engine"])), window["start"], window["end"])


def client_observation(frame: pd.DataFrame, *, observation_dim: int, scaler: FeatureScaler,
                       rules: TradingRules) -> tuple[np.ndarray, np.ndarray]:
    """The observation and action masks at the decision bar of a bars input.

    Args:
        frame: The bars input (module docstring; docs/serving.md).
        observation_dim: 228 (Phase 2), 261 or 271 (Phase 3; 271 appends the advisor's opinion).
        scaler: The model's train-fitted feature scaler.
        rules: The model's trading rules.

    Returns:
        ``(observation_dim,)`` float32 observation and ``(N_ACTIONS,)`` boolean masks, as the training
        environment builds them at the same bar and account state.

    Raises:
        ClientInputError: missing columns, too few bars, a missing minute, bars of more than one
            session, an invalid account state.
    """
    phase = phase_of(observation_dim)
    fields = account_fields(observation_dim)
    if frame.empty:
        raise ClientInputError("the bars input has no rows")
    missing = [c for c in (*BAR_INPUT_COLUMNS, *(f.name for f in fields)) if c not in frame.columns]
    if missing:
        raise ClientInputError(f"the bars input lacks the column(s) {missing}; see docs/serving.md")
    account = _account_state(frame.iloc[-1], fields)
    bars, sessions = _session_bars(frame)
    decision = len(bars) - 1
    padded = _complete_session(bars, sessions.iloc[0])
    features = compute_bar_features(padded, sessions)
    market = MarketData.from_frames(padded, scaler.transform(features), rules.contract,
                                    entry_start=rules.entry_start, entry_end=rules.entry_end)
    if not market.episode_start[decision]:
        first = np.flatnonzero(market.episode_start)
        clock = bars["timestamp"].iloc[-1].strftime("%H:%M")
        if len(first) and first[0] > decision:
            raise ClientInputError(
                f"too few bars: {len(bars)} bar(s) through {clock}, but the indicators and the "
                f"{observation_dim}-column observation are defined only from the "
                f"{padded['timestamp'].iloc[first[0]].strftime('%H:%M')} bar on (bar {first[0] + 1} of the "
                "session); send bars through that bar or later")
        raise ClientInputError(f"the observation is undefined at {clock}: an indicator of these bars is undefined "
                               "there (e.g. prices unchanged for many bars: a zero ATR)")
    # Phase 3 reads the equity change since the session's start against the engine's starting balance.
    start = {"starting_balance": account["account_session_start_balance"]} if phase == 3 else {}
    engine = TradingEngine(market, dataclasses.replace(rules.engine, episode_mode="full_session", **start), n_envs=1)
    engine.reset(starts=np.array([decision]))
    _set_account(engine, account, phase)
    builder = ObservationBuilder(phase)
    observation = np.zeros(observation_dim, dtype=np.float32)
    observation[: builder.dim] = builder.build(engine)[0]
    if observation_dim == HYBRID_DIM:
        observation[PHASE3_DIM:] = _advice(frame)
    return observation, engine.action_masks()[0].copy()


def _session_bars(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The client's bars in New York time with their session, checked against the session grid."""
    text = frame["timestamp"].astype(str)
    no_offset = ~text.str.strip().str.contains(_OFFSET)
    if no_offset.any():
        raise ClientInputError(
            f"timestamp {text[no_offset].iloc[0]!r} has no UTC offset: send ISO 8601 times with their offset, "
            "e.g. 2024-11-27T10:00:00-05:00 (the bar's start)")
    try:
        timestamps = pd.to_datetime(text, format="ISO8601", utc=True).dt.tz_convert(EXCHANGE_TZ)
    except (ValueError, TypeError) as error:
        raise ClientInputError(f"unreadable timestamp: {error}") from None
    prices = frame[["open", "high", "low", "close", "volume"]].apply(pd.to_numeric, errors="coerce")
    ohlc = prices[["open", "high", "low", "close"]]
    bad = (~np.isfinite(prices.to_numpy(dtype=float)).all(axis=1) | (ohlc <= 0).any(axis=1).to_numpy()
           | (prices["volume"] < 0).to_numpy() | (prices["high"] < prices["low"]).to_numpy())
    if bad.any():
        raise ClientInputError(f"bar {timestamps.iloc[int(np.argmax(bad))].isoformat()} has a missing, non-positive "
                               "or inconsistent price or volume")
    # Training's cleaning widens such a bar's high/low to take in its open and close; so does serving.
    prices = widen_range_to_open_close(prices)
    days = timestamps.dt.date.unique()
    if len(days) != 1:
        raise ClientInputError(f"the bars span {len(days)} dates; send the current session's bars only")
    sessions = sessions_between(days[0], days[0])
    if sessions.empty:
        raise ClientInputError(f"{days[0]} has no CME equity-futures session")
    grid = expected_bar_times(sessions.iloc[0])
    n, k = len(timestamps), min(len(timestamps), len(grid))
    sent = timestamps.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[ns]")
    wanted = grid.tz_convert("UTC").tz_localize(None).to_numpy().astype("datetime64[ns]")
    off_grid = np.flatnonzero(sent[:k] != wanted[:k])
    if len(off_grid) or n > len(grid):
        where = int(off_grid[0]) if len(off_grid) else k
        got = timestamps.iloc[where].strftime("%H:%M") if where < n else "nothing"
        due = grid[where].strftime("%H:%M") if where < len(grid) else "no bar (the session has ended)"
        raise ClientInputError(
            f"bar {where + 1} should start at {due} but is {got}: send every minute from the session's first "
            f"bar ({grid[0].strftime('%H:%M')} New York) through the decision bar, in order, one row each (a "
            "minute without trades is a bar at the previous close with volume 0)")
    if n == len(grid):
        raise ClientInputError(f"the decision bar {grid[-1].strftime('%H:%M')} is the session's last bar: an open "
                               "position is closed at its open and no decision is taken")
    sessions = sessions.assign(session_date=pd.to_datetime(sessions["session_date"]))
    bars = pd.DataFrame({"timestamp": timestamps.reset_index(drop=True),
                         "session_date": sessions["session_date"].iloc[0]})
    for column in ("open", "high", "low", "close", "volume"):
        bars[column] = prices[column].to_numpy(dtype=np.float64)
    return bars, sessions


def _complete_session(bars: pd.DataFrame, session: Any) -> pd.DataFrame:
    """The bars followed by flat placeholders (the last close, no volume) up to the session's last bar."""
    rest = expected_bar_times(session)[len(bars):]
    close = bars["close"].iloc[-1]
    tail = pd.DataFrame({"timestamp": rest, "session_date": bars["session_date"].iloc[0], "open": close,
                         "high": close, "low": close, "close": close, "volume": 0.0})
    return pd.concat([bars, tail], ignore_index=True)


def _account_state(row: pd.Series, fields: tuple[AccountField, ...]) -> dict[str, float]:
    values = {f.name: pd.to_numeric(row[f.name], errors="coerce") for f in fields}
    side = values["account_position"]
    if side not in (-1, 0, 1):
        raise ClientInputError(f"account_position must be -1, 0 or 1, got {row['account_position']!r}")
    flat = side == 0
    position_only = ("account_entry_price", "account_stop_price", "account_target_price", "account_bars_held")
    for name, value in values.items():
        if flat and name in position_only:
            values[name] = 0.0
        elif not np.isfinite(value):
            raise ClientInputError(f"{name} is missing or not a number on the decision bar's row")
    if "account_session_start_balance" in values and values["account_session_start_balance"] <= 0:
        raise ClientInputError("account_session_start_balance must be > 0")
    if not flat and min(values[p] for p in position_only[:3]) <= 0:
        raise ClientInputError("an open position needs positive entry, stop and target prices")
    for flag in ("account_stop_at_breakeven", "account_trailing_stop"):
        if values[flag] not in (0, 1):
            raise ClientInputError(f"{flag} must be 0 or 1")
    counts = [f.name for f in fields if f.name in ("account_bars_held", "account_consecutive_losses",
                                                       "account_closed_trades_today", "account_wins_last_10",
                                                       "account_entries_today")]
    for name in counts:
        if values[name] < 0 or values[name] != int(values[name]):
            raise ClientInputError(f"{name} must be a whole number >= 0")
    if not flat and values["account_bars_held"] < 1:
        raise ClientInputError("account_bars_held is at least 1 for an open position (the entry's bar)")
    if "account_wins_last_10" in values and values["account_wins_last_10"] > min(
            values["account_closed_trades_today"], 10):
        raise ClientInputError("account_wins_last_10 exceeds min(10, account_closed_trades_today)")
    return values


def _set_account(engine: TradingEngine, account: dict[str, float], phase: int) -> None:
    """Put the client's account into a one-environment engine (just reset at the decision bar)."""
    engine.side[0] = int(account["account_position"])
    engine.entry[0] = account["account_entry_price"]
    engine.stop[0] = account["account_stop_price"]
    engine.target[0] = account["account_target_price"]
    engine.bars_in_position[0] = int(account["account_bars_held"])
    engine.at_breakeven[0] = bool(account["account_stop_at_breakeven"])
    engine.trailing[0] = bool(account["account_trailing_stop"])
    engine.cash[0] = account["account_balance"]
    engine.floor[0] = account["account_drawdown_floor"]
    if phase == 3:
        engine.realized_today[0] = account["account_realized_pnl_today"]
        engine.consecutive_losses[0] = int(account["account_consecutive_losses"])
        engine.closed_trades[0] = int(account["account_closed_trades_today"])
        engine.recent_wins[0] = int(account["account_wins_last_10"])
        engine.trades_today[0] = int(account["account_entries_today"])
        engine.mae[0] = account["account_trade_mae_points"] if engine.side[0] else 0.0
        engine.mfe[0] = account["account_trade_mfe_points"] if engine.side[0] else 0.0
    engine.equity[0] = engine.cash[0] + engine.unrealized()[0]


def _advice(frame: pd.DataFrame) -> np.ndarray:
    """The advisor's opinion on the decision bar's row; ten zeros ("no advice present") without one."""
    given = [c for c in ADVICE_NAMES if c in frame.columns]
    if not given:
        return np.zeros(len(ADVICE_NAMES), dtype=np.float32)
    values = pd.to_numeric(frame[list(given)].iloc[-1], errors="coerce")
    if len(given) != len(ADVICE_NAMES) or not np.isfinite(values.to_numpy(dtype=float)).all():
        raise ClientInputError(f"advice needs all of {list(ADVICE_NAMES)} on the decision bar's row, or none of "
                               "them (no advice present)")
    return values.to_numpy(dtype=np.float32)


def client_input_example(bars: pd.DataFrame, rules: TradingRules, observation_dim: int,
                         decision_time: str = "10:00") -> pd.DataFrame:
    """A bars input from the last session of clean ``bars``: its bars through ``decision_time``
    (New York) and a flat account at the start of the session (the model's input example)."""
    day = bars["session_date"].max()
    session = bars.loc[bars["session_date"] == day]
    clock = session["timestamp"].dt.strftime("%H:%M")
    rows = session.loc[clock <= decision_time]
    balance = rules.engine.starting_balance
    flat = {f.name: 0.0 for f in account_fields(observation_dim)}
    flat.update(account_balance=balance, account_drawdown_floor=balance - rules.engine.drawdown_limit)
    if phase_of(observation_dim) == 3:
        flat.update(account_session_start_balance=balance)
    example = pd.DataFrame({"timestamp": rows["timestamp"].map(lambda t: t.isoformat()).astype(object)})
    for column in BAR_INPUT_COLUMNS[1:]:
        example[column] = rows[column].to_numpy(dtype=np.float64)
    return example.assign(**flat).reset_index(drop=True)
