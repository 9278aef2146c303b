"""The chance to pass an Apex evaluation, estimated from an agent's held-out sessions.

An Apex evaluation account is not reset between days. Its balance and its
trailing threshold carry over: the threshold is the highest equity the account
has reached minus the trailing drawdown ($2,500 on the 50K account) and stops
trailing once it reaches the starting balance plus the lock offset ($50,100);
equity at or under the threshold is a breach (the attempt fails). The attempt
passes at the end of a session whose balance is at least the starting balance
plus the profit target ($3,000), and, with the optional consistency rule,
whose best day's profit is at most ``consistency_fraction`` of the total
profit (otherwise it keeps trading until the rule holds). It expires, neither
passed nor breached, after ``max_days`` sessions.

Replay. :func:`simulate_attempts` plays sequences of backtest sessions on such an
account. Each session is its bar-by-bar P&L path as the engine played it (a
fresh account each session, ``equity - starting balance`` after every step, the
session's net P&L last): the carried peak and threshold are checked at every
bar, not only at the day's end. The engine ended a session at *its* fresh
account's drawdown limit, so an account whose carried threshold is lower
(locked at $50,100 under a larger balance) still stops trading that day where
the engine stopped, and the engine raised its peak on intrabar highs that the
stored closes do not show: the replay checks closes only. Both are
approximations, documented in ``docs/evaluation.md``.

Exactness of the fast replay. For one session with path ``x_k`` on an account
with balance ``B``, peak ``P`` (>= ``B``), drawdown ``dd`` and lock level ``L``,
a bar breaches when ``B + x_k <= min(max(P, B + M_k) - dd, L)`` with ``M_k`` the
session's running high (0 at the open included). That holds for some bar iff
``min_k x_k <= min(P - B - dd, L - B)`` or ``min{x_k : M_k - x_k >= dd} <= L - B``:
four numbers per session (:class:`SessionPaths`) decide it and the balance and
peak carried to the next day, so attempts are simulated a day at a time, all
at once, with numpy.

Estimation (:func:`estimate_apex`): attempts start at a random session and walk
the held-out sessions in blocks (a stationary bootstrap, mean block length
``block_length`` sessions, or a circular one with fixed blocks), so runs of
good and bad days keep their length. The point estimates come from
``attempts`` attempts on the sessions as played. The interval shows how much
they could differ with another draw of as many held-out sessions: the session
sequence itself is resampled ``outer_resamples`` times with the same block
scheme, ``resample_attempts`` attempts are simulated on each resample, and the
interval is the central ``confidence`` share of those resamples' estimates (a
percentile bootstrap). Every agent of a split gets the same draws (the same
seed), so differences between agents are not draw noise.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from hybrid_trader.env.engine import EngineConfig

__all__ = ["ApexRules", "ApexEstimation", "SessionPaths", "AttemptOutcomes", "PASS", "BREACH", "EXPIRED",
           "BOOTSTRAPS", "apex_settings", "session_paths", "sessions_from_backtest", "simulate_attempts",
           "simulate_sequence", "block_bootstrap_indices", "estimate_apex", "apex_figures", "FIGURES"]

PASS, BREACH, EXPIRED = 1, 2, 3  # outcome codes of an attempt
BOOTSTRAPS = ("stationary", "circular")
# The figures of :func:`estimate_apex` that carry an interval (``<name>_low``, ``<name>_high``).
FIGURES = ("pass_probability", "breach_probability", "expiry_probability", "median_days_to_pass")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"apex_evaluation.{name} must be a finite number, got {value!r}")
    return float(value)


def _integer(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"apex_evaluation.{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_keys(params: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"unknown apex_evaluation settings {unknown}; known: {sorted(allowed)}")


@dataclass(frozen=True)
class ApexRules:
    """The evaluation account's rules.

    Attributes:
        starting_balance: The account's balance at the start ($; the engine's ``starting_balance``).
        trailing_drawdown: The threshold trails the highest equity reached by this much ($; the
            engine's ``drawdown_limit``).
        threshold_lock_offset: The threshold stops trailing at the starting balance plus this ($;
            the engine's ``threshold_lock_offset``).
        profit_target: Passed at the end of a session with balance >= start + this ($).
        consistency_fraction: With a value, a pass also needs the best session's profit to be at
            most this fraction of the total profit (``None``: no such rule).
        max_days: Sessions an attempt may trade; after the last it has expired.
    """

    starting_balance: float = 50_000.0
    trailing_drawdown: float = 2_500.0
    threshold_lock_offset: float = 100.0
    profit_target: float = 3_000.0
    consistency_fraction: float | None = None
    max_days: int = 30

    def __post_init__(self) -> None:
        for name in ("starting_balance", "trailing_drawdown", "profit_target"):
            if not _number(name, getattr(self, name)) > 0:
                raise ValueError(f"apex_evaluation.{name} must be > 0, got {getattr(self, name)!r}")
        if not _number("threshold_lock_offset", self.threshold_lock_offset) >= 0:
            raise ValueError("apex_evaluation.threshold_lock_offset must be >= 0")
        if self.threshold_lock_offset >= self.profit_target:
            raise ValueError("apex_evaluation.threshold_lock_offset must be below profit_target: a passing "
                             "balance would sit at or under the locked threshold")
        if self.consistency_fraction is not None and not 0 < _number(
                "consistency_fraction", self.consistency_fraction) <= 1:
            raise ValueError(f"apex_evaluation.consistency_fraction must be in (0, 1] or null, "
                             f"got {self.consistency_fraction!r}")
        _integer("max_days", self.max_days, 1)

    @property
    def lock_level(self) -> float:
        """The threshold's highest value, starting balance + lock offset ($)."""
        return self.starting_balance + self.threshold_lock_offset

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, engine_params: Mapping[str, Any]) -> ApexRules:
        """From ``evaluation.apex_evaluation`` (``profit_target``, ``consistency_fraction``,
        ``max_days``) and ``environment.engine`` (the account: ``starting_balance``,
        ``drawdown_limit``, ``threshold_lock_offset``; the engine's defaults when absent)."""
        params = dict(params or {})
        _check_keys(params, ("profit_target", "consistency_fraction", "max_days"))
        engine = EngineConfig()
        return cls(starting_balance=engine_params.get("starting_balance", engine.starting_balance),
                   trailing_drawdown=engine_params.get("drawdown_limit", engine.drawdown_limit),
                   threshold_lock_offset=engine_params.get("threshold_lock_offset", engine.threshold_lock_offset),
                   **params)


@dataclass(frozen=True)
class ApexEstimation:
    """How the chance to pass is estimated (module docstring).

    Attributes:
        attempts: Simulated attempts on the sessions as played (the point estimates).
        outer_resamples: Resamples of the held-out session sequence for the interval (0: no interval).
        resample_attempts: Simulated attempts on each resample.
        block_length: Mean block length of the stationary bootstrap, or the block length of the
            circular one (sessions; 1 resamples single sessions).
        bootstrap: ``stationary`` (geometric block lengths) or ``circular`` (fixed blocks).
        confidence: The interval's coverage, e.g. 0.95 for the 2.5th to 97.5th percentiles.
        seed: Seed of the draws.
    """

    attempts: int = 4_000
    outer_resamples: int = 200
    resample_attempts: int = 250
    block_length: float = 5.0
    bootstrap: str = "stationary"
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        _integer("attempts", self.attempts, 1)
        _integer("outer_resamples", self.outer_resamples, 0)
        _integer("resample_attempts", self.resample_attempts, 1)
        _integer("seed", self.seed, 0)
        if not _number("block_length", self.block_length) >= 1:
            raise ValueError(f"apex_evaluation.block_length must be >= 1, got {self.block_length!r}")
        if self.bootstrap not in BOOTSTRAPS:
            raise ValueError(f"apex_evaluation.bootstrap must be one of {BOOTSTRAPS}, got {self.bootstrap!r}")
        if self.bootstrap == "circular" and self.block_length != int(self.block_length):
            raise ValueError("apex_evaluation.block_length must be a whole number for the circular bootstrap")
        if not 0 < _number("confidence", self.confidence) < 1:
            raise ValueError(f"apex_evaluation.confidence must be in (0, 1), got {self.confidence!r}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> ApexEstimation:
        params = dict(params or {})
        _check_keys(params, [f.name for f in fields(cls)])
        return cls(**params)


def apex_settings(params: Mapping[str, Any] | None,
                  engine_params: Mapping[str, Any]) -> tuple[ApexRules, ApexEstimation]:
    """``(rules, estimation)`` from ``evaluation.apex_evaluation`` and ``environment.engine``;
    an unknown setting is an error."""
    params = dict(params or {})
    rule_keys = ("profit_target", "consistency_fraction", "max_days")
    estimation_keys = [f.name for f in fields(ApexEstimation)]
    _check_keys(params, [*rule_keys, *estimation_keys])
    return (ApexRules.from_params({k: v for k, v in params.items() if k in rule_keys}, engine_params),
            ApexEstimation.from_params({k: v for k, v in params.items() if k in estimation_keys}))


@dataclass(frozen=True)
class SessionPaths:
    """What the replay needs of each session's P&L path ``x_k`` (``equity - starting balance``
    after step ``k``, $), one entry per session in date order.

    Attributes:
        dates: The sessions' dates.
        low: ``min_k x_k``.
        deep_low: ``min x_k`` over the bars whose fall from the session's running high (the open's
            0 included) is at least the trailing drawdown; ``+inf`` if none.
        high: ``max(0, max_k x_k)``, the session's highest P&L.
        close: The session's net P&L (the path's last point).
    """

    dates: np.ndarray
    low: np.ndarray
    deep_low: np.ndarray
    high: np.ndarray
    close: np.ndarray

    def __len__(self) -> int:
        return len(self.close)


def _summaries(x: np.ndarray, session: np.ndarray, n: int, trailing_drawdown: float) -> tuple[np.ndarray, ...]:
    """``(low, deep_low, high)`` of ``n`` sessions from their concatenated paths ``x`` (each session's
    points contiguous and in order; ``session`` the session index of each point)."""
    keys = pd.Series(session)
    running_high = pd.Series(np.maximum(x, 0.0)).groupby(keys, sort=False).cummax().to_numpy()
    low = pd.Series(x).groupby(keys).min().reindex(range(n)).to_numpy()
    deep = pd.Series(np.where(running_high - x >= trailing_drawdown, x, np.inf)).groupby(keys).min()
    high = pd.Series(running_high).groupby(keys).max().reindex(range(n)).to_numpy()
    return low, deep.reindex(range(n)).to_numpy(), high


def session_paths(paths: Sequence[Sequence[float]], trailing_drawdown: float,
                  dates: Sequence[Any] | None = None) -> SessionPaths:
    """:class:`SessionPaths` of bar-by-bar P&L paths (each ``equity - starting balance`` after every
    step, the session's net P&L last)."""
    arrays = [np.asarray(path, dtype=float) for path in paths]
    if not arrays or any(a.ndim != 1 or len(a) == 0 or not np.isfinite(a).all() for a in arrays):
        raise ValueError("each session needs a non-empty, finite P&L path")
    x = np.concatenate(arrays)
    session = np.repeat(np.arange(len(arrays)), [len(a) for a in arrays])
    low, deep_low, high = _summaries(x, session, len(arrays), trailing_drawdown)
    dates = np.arange(len(arrays)) if dates is None else np.asarray(dates)
    return SessionPaths(dates, low, deep_low, high, np.array([a[-1] for a in arrays]))


def sessions_from_backtest(episodes: pd.DataFrame, steps: pd.DataFrame, rules: ApexRules) -> SessionPaths:
    """The sessions of one agent's backtest (one split and cost level; ``episodes`` with
    ``session_date`` and ``net_pnl``, ``steps`` with ``session_date``, ``step`` and ``equity``, as
    :func:`~hybrid_trader.agents.backtest.run_backtest` writes them) in date order."""
    episodes = episodes.sort_values("session_date", kind="stable")
    dates = episodes["session_date"].astype(str).to_numpy()
    if len(set(dates)) != len(dates):
        raise ValueError("one agent, split and cost level at a time: a session date repeats")
    index = pd.Index(dates)
    session = index.get_indexer(steps["session_date"].astype(str))
    if (session < 0).any() or len(np.unique(session)) != len(dates):
        raise ValueError("the steps' sessions must be the episodes' sessions")
    net = episodes["net_pnl"].to_numpy(dtype=float)
    # Each session's net P&L closes its path (it is also its last step's equity: repeating it changes nothing).
    step = steps["step"].to_numpy(dtype=float) if "step" in steps else np.arange(len(steps), dtype=float)
    session = np.concatenate([session, np.arange(len(dates))])
    x = np.concatenate([steps["equity"].to_numpy(dtype=float) - rules.starting_balance, net])
    order = np.lexsort((np.concatenate([step, np.full(len(dates), np.inf)]), session))
    if not np.isfinite(x).all():
        raise ValueError("equity and net P&L must be finite")
    low, deep_low, high = _summaries(x[order], session[order], len(dates), rules.trailing_drawdown)
    return SessionPaths(dates, low, deep_low, high, net)


@dataclass(frozen=True)
class AttemptOutcomes:
    """Per attempt: ``outcome`` (:data:`PASS`, :data:`BREACH` or :data:`EXPIRED`), ``days`` (sessions
    traded, the last one included) and ``balance`` (at the end; at a breach, before the breaching
    session)."""

    outcome: np.ndarray
    days: np.ndarray
    balance: np.ndarray


# The sessions that the still active attempts ``active`` (indices) trade on day ``day`` (0-based).
SessionChooser = Callable[[int, np.ndarray], np.ndarray]


def _play(sessions: SessionPaths, n: int, rules: ApexRules, choose: SessionChooser) -> AttemptOutcomes:
    """``n`` attempts, a day at a time; only the attempts still active are carried to the next day."""
    start, dd, lock = rules.starting_balance, rules.trailing_drawdown, rules.lock_level
    outcome = np.full(n, EXPIRED, dtype=np.int8)
    days = np.full(n, rules.max_days, dtype=np.int64)
    final = np.full(n, start)
    active = np.arange(n)
    balance, peak, best_day = np.full(n, start), np.full(n, start), np.full(n, -np.inf)
    for day in range(rules.max_days):
        s = choose(day, active)
        headroom = lock - balance  # the lock level, relative to the day's opening balance
        breach = (sessions.low[s] <= np.minimum(peak - balance - dd, headroom)) | (sessions.deep_low[s] <= headroom)
        final[active[breach]] = balance[breach]
        peak = np.maximum(peak, balance + sessions.high[s])
        balance = balance + sessions.close[s]
        best_day = np.maximum(best_day, sessions.close[s])
        profit = balance - start
        passed = ~breach & (profit >= rules.profit_target)
        if rules.consistency_fraction is not None:
            passed &= best_day <= rules.consistency_fraction * profit
        outcome[active[breach]], outcome[active[passed]] = BREACH, PASS
        done = breach | passed
        days[active[done]] = day + 1
        final[active[passed]] = balance[passed]
        if done.any():
            keep = ~done
            active, balance, peak, best_day = active[keep], balance[keep], peak[keep], best_day[keep]
        if len(active) == 0:
            break
    final[active] = balance
    return AttemptOutcomes(outcome, days, final)


def simulate_attempts(sessions: SessionPaths, order: np.ndarray, rules: ApexRules) -> AttemptOutcomes:
    """Evaluation attempts, one per row of ``order`` (session indices into ``sessions``, at least
    ``rules.max_days`` columns: the sessions the attempt trades, in order)."""
    order = np.asarray(order)
    if order.ndim != 2 or order.shape[1] < rules.max_days:
        raise ValueError(f"order must have one row per attempt and at least max_days = {rules.max_days} columns")
    by_day = np.ascontiguousarray(order[:, :rules.max_days].T)  # one contiguous row per day
    return _play(sessions, len(order), rules, lambda day, active: by_day[day, active])


def simulate_sequence(paths: Sequence[Sequence[float]], rules: ApexRules) -> dict[str, Any]:
    """One attempt over the given sessions in the given order (each a bar-by-bar P&L path, the
    session's net P&L last): ``{"outcome": "pass" | "breach" | "expired", "days", "balance"}``.
    Fewer sessions than ``max_days`` end the attempt early, as ``expired``."""
    rules_here = rules if len(paths) >= rules.max_days else dataclasses.replace(rules, max_days=len(paths))
    result = simulate_attempts(session_paths(paths, rules.trailing_drawdown),
                               np.arange(rules_here.max_days)[None, :], rules_here)
    names = {PASS: "pass", BREACH: "breach", EXPIRED: "expired"}
    return {"outcome": names[int(result.outcome[0])], "days": int(result.days[0]),
            "balance": float(result.balance[0])}


class _BlockWalk:
    """Positions in a circular sequence of ``n`` items, walked in blocks, one step at a time: the
    first step is a uniform item; each later one moves to the next item (after the last, the first)
    unless a new block starts, which jumps to a uniform item. ``stationary``: a block starts with
    probability ``1 / block_length`` at each step; ``circular``: every ``block_length`` steps."""

    def __init__(self, rng: np.random.Generator, n: int, size: int, block_length: float, kind: str) -> None:
        if kind not in BOOTSTRAPS:
            raise ValueError(f"kind must be one of {BOOTSTRAPS}")
        self.rng, self.n, self.block_length, self.kind = rng, n, block_length, kind
        self.position = np.zeros(size, dtype=np.int64)

    def step(self, t: int, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The positions of ``rows`` at step ``t`` (0-based; called for t = 0, 1, ... in order)."""
        position = self.position[rows]
        if t == 0 or (self.kind == "circular" and t % int(self.block_length) == 0):
            position = self.rng.integers(self.n, size=len(position))
        else:
            position = (position + 1) % self.n
            if self.kind == "stationary":
                new = self.rng.random(len(position)) < 1.0 / self.block_length
                position[new] = self.rng.integers(self.n, size=int(new.sum()))
        self.position[rows] = position
        return position


def block_bootstrap_indices(rng: np.random.Generator, n: int, size: int, length: int, block_length: float,
                            kind: str = "stationary") -> np.ndarray:
    """``(size, length)`` indices into a circular sequence of ``n`` items, each row walked in blocks
    from a uniform item: a stationary bootstrap (a new block at each step with probability
    ``1 / block_length``, geometric block lengths of mean ``block_length``) or a circular one (a
    new block every ``block_length`` steps)."""
    walk = _BlockWalk(rng, n, size, block_length, kind)
    out = np.empty((size, length), dtype=np.int64)
    for t in range(length):
        out[:, t] = walk.step(t)
    return out


def _medians_of_days(days: np.ndarray, groups: np.ndarray, n_groups: int, max_days: int) -> np.ndarray:
    """Median of ``days`` (integers 1..max_days) within each group (NaN for an empty group), from
    per-group histograms: the mean of the two middle values for an even count, as np.median."""
    counts = np.bincount(groups * (max_days + 1) + days, minlength=n_groups * (max_days + 1))
    cumulative = counts.reshape(n_groups, max_days + 1).cumsum(axis=1)
    total = cumulative[:, -1]
    lower = (cumulative > ((total - 1) // 2)[:, None]).argmax(axis=1)
    upper = (cumulative > (total // 2)[:, None]).argmax(axis=1)
    return np.where(total > 0, (lower + upper) / 2.0, np.nan)


def estimate_apex(sessions: SessionPaths, rules: ApexRules, estimation: ApexEstimation) -> dict[str, Any]:
    """The chance to pass, breach and expire and the median sessions to a pass, each with its
    interval (module docstring).

    Returns:
        ``sessions`` (held-out sessions), ``attempts``, ``outer_resamples``, ``resample_attempts``,
        ``confidence``, and for each of :data:`FIGURES` the point estimate and ``<figure>_low`` /
        ``<figure>_high`` (NaN without resamples; ``median_days_to_pass`` is NaN without a pass,
        and its interval comes from the resamples that have one).
    """
    n, resamples = len(sessions), estimation.outer_resamples
    # Separate streams: the point estimates do not depend on the resampling settings.
    point_rng, resample_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(estimation.seed).spawn(2))
    # Sequence 0: the sessions as played; 1..: resampled sequences of as many sessions.
    sequences = np.vstack([np.arange(n)[None, :], block_bootstrap_indices(
        resample_rng, n, resamples, n, estimation.block_length, estimation.bootstrap)])
    sizes = np.array([estimation.attempts] + [estimation.resample_attempts] * resamples)
    group = np.repeat(np.arange(resamples + 1), sizes)
    outcome, days = np.empty(len(group), dtype=np.int8), np.empty(len(group), dtype=np.int64)
    for rows, rng in ((np.flatnonzero(group == 0), point_rng), (np.flatnonzero(group > 0), resample_rng)):
        walk = _BlockWalk(rng, n, len(rows), estimation.block_length, estimation.bootstrap)
        result = _play(sessions, len(rows), rules,
                       lambda day, active: sequences[group[rows[active]], walk.step(day, active)])
        outcome[rows], days[rows] = result.outcome, result.days
    shares = {name: np.bincount(group, weights=outcome == code, minlength=resamples + 1) / sizes
              for name, code in (("pass_probability", PASS), ("breach_probability", BREACH),
                                 ("expiry_probability", EXPIRED))}
    passed = outcome == PASS
    shares["median_days_to_pass"] = _medians_of_days(days[passed], group[passed], resamples + 1, rules.max_days)
    tail = 100 * (1 - estimation.confidence) / 2
    figures: dict[str, Any] = {"sessions": n, "attempts": estimation.attempts, "outer_resamples": resamples,
                               "resample_attempts": estimation.resample_attempts,
                               "confidence": estimation.confidence}
    for name in FIGURES:
        values = shares[name]
        figures[name] = float(values[0])
        outer = values[1:][np.isfinite(values[1:])]
        low, high = np.percentile(outer, [tail, 100 - tail]) if len(outer) else (np.nan, np.nan)
        figures[f"{name}_low"], figures[f"{name}_high"] = float(low), float(high)
    return figures


def apex_figures(episodes: pd.DataFrame, steps: pd.DataFrame, rules: ApexRules,
                 estimation: ApexEstimation) -> dict[str, Any]:
    """:func:`estimate_apex` of one agent's backtest on one split at one cost level (``episodes`` and
    ``steps`` as :func:`~hybrid_trader.agents.backtest.run_backtest` returns them)."""
    return estimate_apex(sessions_from_backtest(episodes, steps, rules), rules, estimation)
