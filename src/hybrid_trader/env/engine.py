"""The account and market engine: N independent accounts stepped at once with numpy.

It knows nothing of observations (see :mod:`hybrid_trader.env.observation`).
Every quantity below is per environment; one :meth:`TradingEngine.step`
advances every environment by one bar.

Timing. The agent decides at the close of bar ``t``; the engine then plays
bar ``t + 1``:

1. Decision effects at the close of ``t``: a break-even move sets the stop to
   the entry price; enabling the trailing stop fixes its distance
   (``trailing_atr_multiple x ATR_t``) and ratchets the stop with ``close_t``.
2. An entry fills at ``open_{t+1} +/- slippage`` (adverse), with one
   commission. Its stop and target are placed at ``stop_atr_multiple x ATR_t``
   and ``target_stop_ratio x`` that distance from the fill (rounded to ticks).
3. An open beyond the target or the stop fills there at the open (a target
   at the better open price; a stop at the open minus slippage), on any bar,
   the session's last included.
4. Otherwise a position is closed at ``open_{t+1} -/+ slippage`` (a market
   order, adverse for its side) when the agent chose EXIT at the close of
   ``t`` (counted as an ``exit``, even on the session's last bar), or when
   ``t+1`` is the session's last bar (16:59, or the early-close bar): the flat
   deadline. On the other bars the stop and target are checked against bar
   ``t+1``'s low/high; when both are touched the stop is assumed (the worse).
   A stop fills at the stop minus slippage; a target at the target without
   slippage (a resting limit).
5. Apex trailing drawdown, judged on the most adverse path the bar allows
   while the position is open: open, then the favourable extreme (raising the
   equity peak), then the adverse extreme, compared with the floor
   ``min(peak - drawdown_limit, starting_balance + threshold_lock_offset)``:
   the trailing threshold stops trailing at the starting balance plus the
   offset ($50,100 on an Apex 50K account). An exit at the open sees
   only its fill; a bar that ends at the target saw its adverse extreme first
   and no favourable excursion beyond the open; a stop assumed over a touched
   target likewise. Touching the floor is a breach: the position is liquidated
   at the adverse extreme (minus slippage unless that is already a stop fill)
   and the episode ends.
6. With the trailing stop on, the stop ratchets (never loosens) with
   ``close_{t+1}`` for the following bar.

Money. ``equity = cash + side x (close - entry) x multiplier x contracts``;
commission is paid from cash once per fill (entry and exit).
``reward = (equity_{t+1} - equity_t) x reward_scale - breach_penalty x breach``
(``reward_unit`` ``dollars``, the default). With ``reward_unit`` ``risk`` the same
dollars are counted in the position's risk at entry, ``R = stop distance x
multiplier x contracts`` ($, the stop placed at the fill, before any break-even
or trailing move): ``reward = ((equity_{t+1} - equity_t) - breach x
breach_penalty / reward_scale) / R``. The breach penalty is the same dollar
amount (``breach_penalty / reward_scale``, $1,000 by default) in R of the
breaching position. Only steps that hold a position change equity, and a step
holds at most one, so a trade's summed reward is its R-multiple, net of costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybrid_trader.env.actions import N_ACTIONS, Action
from hybrid_trader.env.market import MarketData

__all__ = ["EngineConfig", "TradingEngine", "END_REASONS", "EXIT_KINDS", "StepResult"]

END_REASONS = ("none", "drawdown_breach", "session_end", "max_steps", "data_end")
# How a position was closed: liquidated on a breach, at the flat deadline, by its stop, by its target,
# by the agent's EXIT at the next open. New kinds go at the end: indexes are kept.
EXIT_KINDS = ("breach", "deadline", "stop", "target", "exit")
_BREACH, _SESSION_END, _MAX_STEPS, _DATA_END = 1, 2, 3, 4
_WIN_HISTORY = 10
_HOLD, _BUY, _SELL = int(Action.HOLD), int(Action.BUY), int(Action.SELL)
_BREAKEVEN, _TRAIL_ON, _TRAIL_OFF = (int(Action.MOVE_SL_TO_BREAKEVEN), int(Action.ENABLE_TRAILING_STOP),
                                     int(Action.DISABLE_TRAILING_STOP))
_EXIT = int(Action.EXIT)
EPISODE_MODES = ("random_start", "full_session")
REWARD_UNITS = ("dollars", "risk")


@dataclass(frozen=True)
class EngineConfig:
    """Rules and costs of the simulated account (``environment`` parameters).

    Attributes:
        contracts: Contracts per position.
        starting_balance: Account balance at the start of every episode ($).
        drawdown_limit: Apex trailing drawdown ($).
        threshold_lock_offset: The trailing threshold stops trailing at the
            starting balance plus this ($; Apex: 100).
        stop_atr_multiple: Stop distance from the entry, in ATR-14 at the decision.
        target_stop_ratio: Target distance as a multiple of the stop distance.
        trailing_atr_multiple: Trailing-stop distance, in ATR-14 when enabled.
        reward_scale: Reward per dollar of equity change (``reward_unit`` ``dollars``);
            with ``risk`` it only converts ``breach_penalty`` to dollars.
        breach_penalty: Subtracted from the reward of the step that breaches
            (``breach_penalty / reward_scale`` dollars; in R with ``risk``).
        reward_unit: ``dollars`` (equity change x ``reward_scale``) or ``risk``
            (equity change in R, the position's dollar risk at entry; module docstring).
        max_episode_steps: Steps before truncation in ``random_start`` mode.
        episode_mode: ``random_start`` (a random bar inside a session, up to
            ``max_episode_steps``) or ``full_session`` (sessions in date order,
            from the first valid bar to the session end).
        exit_action: Whether EXIT may be chosen in a position. Off, it is always
            masked; the action space keeps its size, so runs with and without
            it compare on the same policy shapes.
    """

    contracts: int = 1
    starting_balance: float = 50_000.0
    drawdown_limit: float = 2_500.0
    threshold_lock_offset: float = 100.0
    stop_atr_multiple: float = 2.0
    target_stop_ratio: float = 2.0
    trailing_atr_multiple: float = 2.0
    reward_scale: float = 0.001
    breach_penalty: float = 1.0
    max_episode_steps: int = 300
    episode_mode: str = "random_start"
    exit_action: bool = False
    reward_unit: str = "dollars"

    def __post_init__(self) -> None:
        if self.contracts < 1:
            raise ValueError("environment.contracts must be >= 1")
        for name in ("starting_balance", "drawdown_limit", "stop_atr_multiple", "target_stop_ratio",
                     "trailing_atr_multiple", "reward_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"environment.{name} must be > 0")
        if self.threshold_lock_offset < 0:
            raise ValueError("environment.threshold_lock_offset must be >= 0")
        if self.breach_penalty < 0:
            raise ValueError("environment.breach_penalty must be >= 0")
        if self.max_episode_steps < 1:
            raise ValueError("environment.max_episode_steps must be >= 1")
        if self.episode_mode not in EPISODE_MODES:
            raise ValueError(f"environment.episode_mode must be one of {EPISODE_MODES}")
        if not isinstance(self.exit_action, bool):  # a quoted "false" would otherwise switch it on
            raise ValueError("environment.exit_action must be true or false")
        if self.reward_unit not in REWARD_UNITS:
            raise ValueError(f"environment.reward_unit must be one of {REWARD_UNITS}, got {self.reward_unit!r}")


@dataclass
class StepResult:
    """What one step returns for every environment."""

    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    end_reason: np.ndarray  # index into END_REASONS (0 while running)
    invalid_action: np.ndarray


class TradingEngine:
    """Vectorised account/market simulator for ``n_envs`` independent episodes."""

    def __init__(self, market: MarketData, config: EngineConfig, n_envs: int = 1, seed: int | None = None) -> None:
        if n_envs < 1:
            raise ValueError("n_envs must be >= 1")
        self.market, self.config, self.n_envs = market, config, n_envs
        self.rng = np.random.default_rng(seed)
        spec = market.contract
        self._slip = spec.slippage_ticks * spec.tick_size
        self._commission = spec.commission_per_side * config.contracts
        self._point_value = spec.multiplier * config.contracts
        self._tick = spec.tick_size
        self._random_starts = np.flatnonzero(market.episode_start & market.entry_allowed)
        self._session_starts = self._first_rows(market)
        if config.episode_mode == "random_start" and len(self._random_starts) == 0:
            raise ValueError("no bar allows an episode to start (check the entry window and the data)")
        self._next_session = 0
        # Full-session episodes end at the session's last bar, never on a step budget.
        self._step_budget = config.max_episode_steps if config.episode_mode == "random_start" else np.iinfo(np.int64).max
        n = n_envs
        self.t = np.zeros(n, dtype=np.int64)
        self.steps = np.zeros(n, dtype=np.int64)
        self.side = np.zeros(n, dtype=np.int64)
        self.entry = np.zeros(n)
        self.stop = np.zeros(n)
        self.target = np.zeros(n)
        self.trail_distance = np.zeros(n)
        self.trailing = np.zeros(n, dtype=bool)
        self.at_breakeven = np.zeros(n, dtype=bool)
        self.bars_in_position = np.zeros(n, dtype=np.int64)
        self.mae = np.zeros(n)
        self.mfe = np.zeros(n)
        self.cash = np.zeros(n)
        self.equity = np.zeros(n)
        self.peak = np.zeros(n)
        self.floor = np.zeros(n)
        self.realized_today = np.zeros(n)
        self.trades_today = np.zeros(n, dtype=np.int64)
        self.consecutive_losses = np.zeros(n, dtype=np.int64)
        self.win_history = np.zeros((n, _WIN_HISTORY), dtype=np.int8)
        self.closed_trades = np.zeros(n, dtype=np.int64)
        self.fills = np.zeros(n, dtype=np.int64)
        self.commission_paid = np.zeros(n)
        self.invalid_actions = np.zeros(n, dtype=np.int64)
        self.exit_counts = np.zeros((n, len(EXIT_KINDS)), dtype=np.int64)  # per episode, by EXIT_KINDS
        self.recent_wins = np.zeros(n, dtype=np.int64)  # wins among the last 10 closed trades
        # Net P&L ($, both commissions) of a trade closed by the last step, NaN if none; kept
        # across an episode reset so that a trade closed by an episode's last step can be read.
        self.step_trade_net = np.full(n, np.nan)
        # R of the open (or last closed) position, $; 1 before any entry, where it divides no change.
        self.risk = np.ones(n)
        self._all = np.arange(n)
        self._masks: np.ndarray | None = None  # valid until the state changes

    # ----------------------------------------------------------------- episodes
    @staticmethod
    def _first_rows(market: MarketData) -> np.ndarray:
        starts = np.full(market.n_sessions, -1, dtype=np.int64)
        rows = np.flatnonzero(market.episode_start)
        sessions = market.session_id[rows]
        first = np.unique(sessions, return_index=True)
        starts[first[0]] = rows[first[1]]
        return starts[starts >= 0]

    def sample_starts(self, k: int) -> np.ndarray:
        """Start rows for ``k`` new episodes, by the configured episode mode."""
        if self.config.episode_mode == "random_start":
            return self.rng.choice(self._random_starts, size=k)
        picks = (self._next_session + np.arange(k)) % len(self._session_starts)
        self._next_session = int((self._next_session + k) % len(self._session_starts))
        return self._session_starts[picks]

    def reset(self, envs: np.ndarray | None = None, starts: np.ndarray | None = None) -> None:
        """Start fresh episodes (a fresh account each) for ``envs`` at ``starts``.

        Resetting every environment in ``full_session`` mode starts again from
        the first session, so repeated evaluations see the same sessions.
        """
        if envs is None:
            self._next_session = 0
        envs = self._all if envs is None else np.asarray(envs)
        if len(envs) == 0:
            return
        starts = self.sample_starts(len(envs)) if starts is None else np.asarray(starts, dtype=np.int64)
        if not self.market.episode_start[starts].all():
            raise ValueError("an episode may only start where the observation window is valid")
        balance = self.config.starting_balance
        self.t[envs] = starts
        for name in ("steps", "side", "bars_in_position", "trades_today", "consecutive_losses",
                     "closed_trades", "fills", "invalid_actions"):
            getattr(self, name)[envs] = 0
        for name in ("entry", "stop", "target", "trail_distance", "mae", "mfe", "realized_today",
                     "commission_paid"):
            getattr(self, name)[envs] = 0.0
        self.trailing[envs] = False
        self.at_breakeven[envs] = False
        self.win_history[envs] = 0
        self.recent_wins[envs] = 0
        self.exit_counts[envs] = 0
        self._masks = None
        self.cash[envs] = balance
        self.equity[envs] = balance
        self.peak[envs] = balance
        self.floor[envs] = self._floor_of(self.peak[envs])

    # -------------------------------------------------------------------- masks
    def action_masks(self) -> np.ndarray:
        """``(n_envs, N_ACTIONS)`` booleans: which actions are valid at the current close."""
        if self._masks is None:
            self._masks = self._compute_masks()
        return self._masks

    def _compute_masks(self) -> np.ndarray:
        flat = self.side == 0
        in_position = ~flat
        masks = np.empty((self.n_envs, N_ACTIONS), dtype=bool)
        masks[:, _HOLD] = True
        can_enter = flat & self.market.entry_allowed[self.t]
        masks[:, _BUY] = can_enter
        masks[:, _SELL] = can_enter
        in_profit = self.side * (self.market.close[self.t] - self.entry) > 0
        stop_worse_than_entry = self.side * (self.entry - self.stop) > 0
        masks[:, _BREAKEVEN] = in_position & in_profit & stop_worse_than_entry
        masks[:, _TRAIL_ON] = in_position & ~self.trailing
        masks[:, _TRAIL_OFF] = in_position & self.trailing
        masks[:, _EXIT] = in_position & self.config.exit_action
        return masks

    # --------------------------------------------------------------------- step
    def _floor_of(self, peak: np.ndarray) -> np.ndarray:
        """The Apex trailing threshold: ``drawdown_limit`` under the equity peak, locked once it
        reaches the starting balance plus ``threshold_lock_offset``."""
        cfg = self.config
        return np.minimum(peak - cfg.drawdown_limit, cfg.starting_balance + cfg.threshold_lock_offset)

    def _ticks(self, points: np.ndarray) -> np.ndarray:
        """Round a distance to whole ticks, at least one tick."""
        return np.maximum(np.round(points / self._tick), 1.0) * self._tick

    def _ratchet(self, candidate: np.ndarray, where: np.ndarray) -> None:
        tighter = np.where(self.side > 0, np.maximum(self.stop, candidate), np.minimum(self.stop, candidate))
        self.stop = np.where(where, tighter, self.stop)

    def step(self, actions: np.ndarray) -> StepResult:
        """Apply each environment's action at the close of its bar and play the next bar."""
        market, cfg = self.market, self.config
        actions = np.asarray(actions, dtype=np.int64).reshape(self.n_envs)
        valid = self.action_masks()[self._all, actions]
        self._masks = None
        self.step_trade_net = np.full(self.n_envs, np.nan)
        invalid = ~valid
        if not valid.all():
            self.invalid_actions += invalid
            actions = np.where(valid, actions, _HOLD)
        t = self.t
        atr_t = market.atr[t]
        # Which actions occur at all: one call instead of one test per action.
        present = np.bincount(actions, minlength=N_ACTIONS)

        # 1. Decision effects at the close of t.
        if present[_BREAKEVEN]:
            to_breakeven = actions == _BREAKEVEN
            self.stop = np.where(to_breakeven, self.entry, self.stop)
            self.at_breakeven |= to_breakeven
        if present[_TRAIL_ON]:
            enable = actions == _TRAIL_ON
            self.trail_distance = np.where(enable, self._ticks(cfg.trailing_atr_multiple * atr_t),
                                           self.trail_distance)
            self.trailing |= enable
            self._ratchet(market.close[t] - self.side * self.trail_distance, enable)
        if present[_TRAIL_OFF]:
            self.trailing &= actions != _TRAIL_OFF

        # 2. Entries fill at the next open.
        j = t + 1
        bar_open, high, low, close = market.open[j], market.high[j], market.low[j], market.close[j]
        held_before = self.side != 0
        if present[_BUY] or present[_SELL]:
            enter_side = (actions == _BUY).astype(np.int64) - (actions == _SELL)
            entering = enter_side != 0
            fill = bar_open + enter_side * self._slip
            stop_distance = self._ticks(cfg.stop_atr_multiple * atr_t)
            target_distance = self._ticks(cfg.target_stop_ratio * stop_distance)
            self.side = np.where(entering, enter_side, self.side)
            self.entry = np.where(entering, fill, self.entry)
            self.stop = np.where(entering, fill - enter_side * stop_distance, self.stop)
            self.target = np.where(entering, fill + enter_side * target_distance, self.target)
            self.risk = np.where(entering, stop_distance * self._point_value, self.risk)
            self.cash = self.cash - entering * self._commission
            self.commission_paid += entering * self._commission
            self.fills += entering
            self.trades_today += entering
            self.mae = np.where(entering, 0.0, self.mae)
            self.mfe = np.where(entering, 0.0, self.mfe)
            self.bars_in_position = np.where(entering, 0, self.bars_in_position)
            self.at_breakeven &= ~entering
            self.trailing &= ~entering

        side = self.side
        in_position = side != 0
        last_bar = j == market.session_last[j]
        breach = np.zeros(self.n_envs, dtype=bool)
        if in_position.any():
            exit_chosen = actions == _EXIT if present[_EXIT] else np.zeros(self.n_envs, dtype=bool)
            breach = self._play_position_bar(side, in_position, held_before, last_bar, exit_chosen, bar_open,
                                             high, low)

        # 6. Close of bar j: mark to market, trail, count.
        still_in = self.side != 0
        equity_prev = self.equity
        self.equity = self.cash + self.side * self._point_value * (close - self.entry)
        self.peak = np.maximum(self.peak, self.equity)
        self.floor = self._floor_of(self.peak)
        breach |= self.equity <= self.floor
        if self.trailing.any():
            self._ratchet(close - self.side * self.trail_distance, still_in & self.trailing)
        self.bars_in_position = (self.bars_in_position + 1) * still_in
        self.t = j
        self.steps += 1

        if cfg.reward_unit == "risk":
            reward = ((self.equity - equity_prev) - breach * (cfg.breach_penalty / cfg.reward_scale)) / self.risk
        else:
            reward = (self.equity - equity_prev) * cfg.reward_scale - breach * cfg.breach_penalty
        terminated = breach | last_bar
        # Truncations: the episode's step budget, or (never with complete sessions) the data's end.
        truncated = ~terminated & (market.final_row[j] | (self.steps >= self._step_budget))
        end_reason = np.zeros(self.n_envs, dtype=np.int64)
        if terminated.any() or truncated.any():
            end_reason = np.where(breach, _BREACH, np.where(last_bar, _SESSION_END, np.where(
                truncated & market.final_row[j], _DATA_END, np.where(truncated, _MAX_STEPS, 0))))
        return StepResult(reward, terminated, truncated, end_reason, invalid)

    def _play_position_bar(self, side, in_position, held_before, last_bar, exit_chosen, bar_open, high,
                           low) -> np.ndarray:
        """Steps 3-5 for the bar just opened: EXIT or deadline, stop/target, drawdown. Returns breaches."""
        long = side > 0
        # The bar's extremes as seen by the position: best and worst price for its side.
        best_price = np.where(long, high, low)
        worst_price = np.where(long, low, high)
        # 3-4. An open beyond the target or stop fills there first, on every bar (the last
        # too); else a chosen EXIT or the flat deadline closes at the open; else stop and
        # target against the bar's range (the stop when both are touched).
        open_held = in_position & held_before
        gapped_target = open_held & (side * (bar_open - self.target) >= 0)
        gapped_stop = open_held & ~gapped_target & (side * (bar_open - self.stop) <= 0)
        closing_at_open = last_bar | exit_chosen
        forced = in_position & closing_at_open & ~gapped_target & ~gapped_stop
        live = in_position & ~closing_at_open  # the bar's range plays only if nothing closed it at the open
        touched_target = side * (best_price - self.target) >= 0
        stop_hit = gapped_stop | (live & ~gapped_target & (side * (worst_price - self.stop) <= 0))
        target_hit = gapped_target | (live & ~stop_hit & touched_target)
        slip = side * self._slip
        stop_fill = np.where(gapped_stop, bar_open, self.stop) - slip
        target_fill = np.where(gapped_target, bar_open, self.target)
        forced_fill = bar_open - slip

        # 5. Drawdown along the most adverse path the bar allows while the position is open:
        # open -> favourable extreme -> adverse extreme. An exit at the open sees only the
        # fill; a target exit (its adverse extreme came first) and a stop assumed over a
        # touched target see no favourable excursion beyond the open.
        exit_at_open = forced | gapped_stop | gapped_target
        open_fill = np.where(forced, forced_fill, np.where(gapped_stop, stop_fill, target_fill))
        no_excursion = target_hit | (stop_hit & touched_target)
        favourable = np.where(exit_at_open, open_fill, np.where(no_excursion, bar_open, best_price))
        adverse = np.where(exit_at_open, open_fill, np.where(stop_hit, stop_fill, worst_price))
        position_value = side * self._point_value
        equity_favourable = self.cash + position_value * (favourable - self.entry)
        equity_adverse = self.cash + position_value * (adverse - self.entry)
        self.peak = np.where(in_position, np.maximum(self.peak, equity_favourable), self.peak)
        self.floor = self._floor_of(self.peak)
        breach = in_position & (equity_adverse <= self.floor)
        best = np.where(target_hit & ~breach, target_fill, favourable)
        self.mfe = np.where(in_position, np.maximum(self.mfe, side * (best - self.entry)), self.mfe)
        self.mae = np.where(in_position, np.maximum(self.mae, side * (self.entry - adverse)), self.mae)

        exiting = forced | stop_hit | target_hit | breach
        if exiting.any():
            liquidation_fill = np.where(stop_hit | exit_at_open, adverse, adverse - slip)
            exit_price = np.where(breach, liquidation_fill,
                                  np.where(forced, forced_fill, np.where(stop_hit, stop_fill, target_fill)))
            gross = position_value * (exit_price - self.entry)
            self.cash = self.cash + np.where(exiting, gross - self._commission, 0.0)
            self.commission_paid += exiting * self._commission
            self.fills += exiting
            trade_net = gross - 2.0 * self._commission
            self.realized_today += np.where(exiting, trade_net, 0.0)
            self.step_trade_net = np.where(exiting, trade_net, np.nan)
            self._record_closed_trades(exiting, trade_net > 0)
            counts = self.exit_counts
            counts[:, 0] += breach
            counts[:, 1] += forced & ~exit_chosen & ~breach
            counts[:, 2] += stop_hit & ~breach
            counts[:, 3] += target_hit & ~breach
            counts[:, 4] += forced & exit_chosen & ~breach
            self.side = np.where(exiting, 0, side)
            self.trailing &= ~exiting
            self.at_breakeven &= ~exiting
        return breach

    def _record_closed_trades(self, closed: np.ndarray, won: np.ndarray) -> None:
        slot = self.closed_trades % _WIN_HISTORY
        previous = self.win_history[self._all, slot]
        outcome = np.where(closed, won, previous)
        self.win_history[self._all, slot] = outcome
        self.recent_wins += outcome - previous
        self.closed_trades += closed
        self.consecutive_losses = np.where(closed, (self.consecutive_losses + 1) * ~won, self.consecutive_losses)

    # ----------------------------------------------------------------- readouts
    def unrealized(self) -> np.ndarray:
        """Open P&L at the current close ($)."""
        return np.where(self.side != 0,
                        self.side * self._point_value * (self.market.close[self.t] - self.entry), 0.0)

    def recent_win_rate(self) -> np.ndarray:
        """Winning share of the last 10 closed trades; 0.5 before the first."""
        counted = np.minimum(self.closed_trades, _WIN_HISTORY)
        return np.where(counted > 0, self.recent_wins / np.maximum(counted, 1), 0.5)
