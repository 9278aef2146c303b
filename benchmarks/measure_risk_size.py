"""Measure Apex breach rates by position size, to choose the default contracts.

On the default synthetic market (``raw_bars`` of conf/base/catalog.yml: 320
sessions, seed 7; cleaned and featured as the pipeline does), for 1 NQ, 5 MNQ,
3 MNQ, 2 MNQ and 1 MNQ ($20, $10, $6, $4 and $2 a point). The breach rate is
the share of sessions whose equity touches the Apex trailing floor
($2,500 under the equity peak, locked at the starting balance + $100), each
session a fresh $50,000 account.

1. Path-based: one position per session, no stop or target, judged bar by bar
   on its highs and lows with one round trip's costs
   (:func:`hybrid_trader.evaluation.risk.apex_path`):

   * ``oracle``: knows the day's hidden regime; enters at the open of the 09:30
     bar, long on ``trending_up`` days, short on ``trending_down`` days (no trade
     otherwise), and holds to the close of the session's last bar. Breach rate
     over the traded sessions; ``P&L/day`` (mean net P&L, $) and ``Sharpe``
     (mean / sample standard deviation of the daily net P&L) over all sessions,
     0 on days without a trade;
   * ``rand60``, ``randEOD``: ``--draws`` entries per session, each at the open
     of a uniformly random bar starting 09:30-16:00 (not the session's last),
     long or short at even odds (seeded, ``--seed`` + 1); held 60 bars (to the
     close of the 60th bar, or of the session's last bar if that comes first),
     or to the close of the session's last bar. Breach rate over all
     session-draws.

2. Through the engine (stop 2 x ATR-14, target 2 x the stop, entry window,
   masks, costs, flat deadline, breach on the bar's adverse extreme; the
   ``environment`` parameters of conf/base/parameters.yml with only the
   contracts changed), one full-session episode per session:

   * ``random``: :func:`hybrid_trader.agents.backtest.random_policy`
     (uniform over the valid actions, seeded ``--policy-seed``);
   * ``oracle``: whenever an entry is allowed and it is flat, enters on the
     day's regime side (BUY on ``trending_up``, SELL on ``trending_down``
     days); HOLD otherwise, so no trade on ``ranging`` and ``volatile`` days.

   Breach rate (random: over all sessions; oracle: over the trending sessions),
   ``P&L/day`` and ``Sharpe`` (as above, over all sessions). The sessions are
   played side by side in one engine (one environment per session) instead of
   one after another as in :func:`hybrid_trader.agents.backtest.run_backtest`:
   the same rules, but the random agent's draws differ from a sequential run's.

Context: the median session range (highest high minus lowest low of the whole
08:30-17:00 session, points) and the median ATR-14 of the 12:00 bar (points).

    .venv/bin/python -m benchmarks.measure_risk_size [--n-days 320] [--seed 7] [--draws 10] [--policy-seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import pandas as pd

from hybrid_trader.agents.backtest import random_policy
from hybrid_trader.env.actions import Action
from hybrid_trader.env.engine import END_REASONS, EngineConfig, TradingEngine
from hybrid_trader.env.market import MarketData, parse_clock
from hybrid_trader.evaluation.metrics import sharpe_ratio
from hybrid_trader.evaluation.risk import apex_path
from hybrid_trader.markets import CONTRACTS

from benchmarks.default_market import base_conf, default_frames

SIZES = (("1 NQ", "NQ", 1), ("5 MNQ", "MNQ", 5), ("3 MNQ", "MNQ", 3), ("2 MNQ", "MNQ", 2), ("1 MNQ", "MNQ", 1))
HOLD_BARS = 60
_SIDE_OF_REGIME = {"trending_up": 1, "trending_down": -1}
_BREACH = END_REASONS.index("drawdown_breach")


@dataclasses.dataclass(frozen=True)
class Sessions:
    """Row bounds of each session in the bars, its regime side and its 09:30-16:00 entry rows."""

    first: np.ndarray
    last: np.ndarray
    side: np.ndarray
    open_0930: np.ndarray
    entry_rows: list[np.ndarray]


def sessions_of(bars: pd.DataFrame, regimes: pd.Series, entry_window: dict[str, str]) -> Sessions:
    rows = np.arange(len(bars))
    groups = pd.Series(rows).groupby(bars["session_date"].to_numpy())
    first, last = groups.min().to_numpy(), groups.max().to_numpy()
    side = groups.min().index.map(regimes).map(lambda r: _SIDE_OF_REGIME.get(r, 0)).to_numpy(dtype=int)
    clock = (bars["timestamp"].dt.hour * 60 + bars["timestamp"].dt.minute).to_numpy()
    start, end = parse_clock(entry_window["start"]), parse_clock(entry_window["end"])
    entry_rows = [r[(clock[r] >= start) & (clock[r] <= end) & (r < b)]
                  for r, b in ((np.arange(a, b + 1), b) for a, b in zip(first, last))]
    return Sessions(first, last, side, np.array([r[0] for r in entry_rows]), entry_rows)


def path_measures(bars: pd.DataFrame, sessions: Sessions, contract_symbol: str, config: EngineConfig,
                  entries: np.ndarray, entry_sides: np.ndarray) -> dict[str, float]:
    """Section 1 of the module docstring for one size."""
    contract = CONTRACTS[contract_symbol]
    o, h, lo, c = (bars[col].to_numpy() for col in ("open", "high", "low", "close"))

    def held(side: int, entry: int, end: int):
        return apex_path(side, o[entry], h[entry:end + 1], lo[entry:end + 1], c[end], contract, config)

    oracle_pnl = np.zeros(len(sessions.last))
    oracle_breaches = []
    for s, (side, entry, last) in enumerate(zip(sessions.side, sessions.open_0930, sessions.last)):
        if side != 0:
            outcome = held(int(side), int(entry), int(last))
            oracle_pnl[s] = outcome.net_pnl
            oracle_breaches.append(outcome.breached)
    rand60, rand_eod = [], []
    for s, last in enumerate(sessions.last):
        for entry, side in zip(entries[s], entry_sides[s]):
            rand60.append(held(int(side), int(entry), int(min(entry + HOLD_BARS - 1, last))).breached)
            rand_eod.append(held(int(side), int(entry), int(last)).breached)
    return {"oracle_breach": float(np.mean(oracle_breaches)), "oracle_pnl": float(oracle_pnl.mean()),
            "oracle_sharpe": sharpe_ratio(oracle_pnl / config.starting_balance),
            "rand60_breach": float(np.mean(rand60)), "randEOD_breach": float(np.mean(rand_eod))}


def engine_sessions(market: MarketData, config: EngineConfig, policy) -> pd.DataFrame:
    """One full-session episode per session, all sessions side by side: net P&L and breach."""
    n = market.n_sessions
    engine = TradingEngine(market, config, n_envs=n)
    starts = engine.sample_starts(n)
    engine.reset(starts=starts)
    done = np.zeros(n, dtype=bool)
    net_pnl, breached = np.zeros(n), np.zeros(n, dtype=bool)
    while not done.all():
        actions = np.where(done, int(Action.HOLD), policy(engine, engine.action_masks()))
        result = engine.step(actions)
        finished = (result.terminated | result.truncated) & ~done
        if finished.any():
            net_pnl[finished] = engine.equity[finished] - config.starting_balance
            breached[finished] = result.end_reason[finished] == _BREACH
            done |= finished
            # A finished account replays its own session, holding, so that no row runs past the data.
            envs = np.flatnonzero(finished)
            engine.reset(envs=envs, starts=starts[envs])
    return pd.DataFrame({"net_pnl": net_pnl, "breached": breached})


def random_agent(seed: int):
    act = random_policy(seed)
    return lambda engine, masks: act(masks, masks)


def oracle_agent(session_side: np.ndarray):
    def act(engine: TradingEngine, masks: np.ndarray) -> np.ndarray:
        side = session_side[engine.market.session_id[engine.t]]
        enter = masks[:, Action.BUY] & (side != 0)
        return np.where(enter, np.where(side > 0, int(Action.BUY), int(Action.SELL)), int(Action.HOLD))

    return act


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-days", type=int, default=320)
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic market")
    parser.add_argument("--draws", type=int, default=10, help="random path entries per session")
    parser.add_argument("--policy-seed", type=int, default=0, help="seed of the engine's random agent")
    args = parser.parse_args()
    began = time.perf_counter()
    conf = base_conf()
    environment = conf["environment"]
    bars, features, regimes = default_frames({**conf, "raw": {**conf["raw"], "n_days": args.n_days, "seed": args.seed}})
    sessions = sessions_of(bars, regimes, environment["entry_window"])
    n = len(sessions.last)
    rng = np.random.default_rng(args.seed + 1)
    entries = np.array([rng.choice(rows, size=args.draws) for rows in sessions.entry_rows])
    entry_sides = rng.choice([-1, 1], size=(n, args.draws))

    session_range = (bars.groupby("session_date")["high"].max() - bars.groupby("session_date")["low"].min())
    noon = bars["timestamp"].dt.hour.eq(12).to_numpy() & bars["timestamp"].dt.minute.eq(0).to_numpy()
    counts = regimes.value_counts()
    print(f"{n} sessions (seed {args.seed}): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"median session range {session_range.median():.1f} points; "
          f"median ATR-14 at 12:00 {np.median(features['atr14'].to_numpy()[noon]):.1f} points")

    markets = {symbol: MarketData.from_frames(bars, features, CONTRACTS[symbol],
                                              entry_start=environment["entry_window"]["start"],
                                              entry_end=environment["entry_window"]["end"])
               for symbol in ("NQ", "MNQ")}
    path_rows, engine_rows = [], []
    for label, symbol, contracts in SIZES:
        config = EngineConfig(**{**environment["engine"], "contracts": contracts, "episode_mode": "full_session"})
        dollars = CONTRACTS[symbol].multiplier * contracts
        path_rows.append({"size": label, "$/pt": dollars,
                          **path_measures(bars, sessions, symbol, config, entries, entry_sides)})
        market = markets[symbol]
        side = sessions.side  # sessions and the market's session ids are both in date order
        row = {"size": label, "$/pt": dollars}
        for name, agent in (("random", random_agent(args.policy_seed)), ("oracle", oracle_agent(side))):
            episodes = engine_sessions(market, config, agent)
            counted = episodes["breached"] if name == "random" else episodes["breached"][side != 0]
            row.update({f"{name}_breach": counted.mean(), f"{name}_pnl": episodes["net_pnl"].mean(),
                        f"{name}_sharpe": sharpe_ratio(episodes["net_pnl"] / config.starting_balance)})
        engine_rows.append(row)

    traded = int((sessions.side != 0).sum())
    print(f"\n1. Path-based, no bracket (oracle breach over its {traded} traded sessions; P&L/day and Sharpe "
          f"over all {n}; random: {args.draws} entries per session)")
    print(pd.DataFrame(path_rows).round(3).to_string(index=False))
    print(f"\n2. Engine, full-session episodes (random breach over all {n} sessions, oracle over its {traded}; "
          f"P&L/day and Sharpe over all {n})")
    print(pd.DataFrame(engine_rows).round(3).to_string(index=False))
    print(f"\n{time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
