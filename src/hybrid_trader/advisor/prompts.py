"""Prompts in trader's units, built from named features and bucketed.

The template (``advisor.prompt`` in ``conf/base/parameters_advisor.yml``) has
a *static prefix* (instructions; its key/value cache is computed once) and a
*state* part with named fields. Field values are bucketed so that equal market
situations give equal prompt text, which is what makes the answer cache work:

* ``trend``: ``strong up`` / ``up`` / ``sideways`` / ``down`` / ``strong down``
  from the SMA-50 slope (ATR per 10 bars) and ADX-14;
* ``rsi``: RSI-14 (0-100) rounded to ``rsi_step``;
* ``momentum``: 30-bar return in percent, clipped to +/-``momentum_clip_pct``
  and rounded to ``momentum_step_pct``;
* ``vwap``: distance to the session VWAP in ATR, clipped to +/-``vwap_clip_atr``
  and rounded to ``vwap_step_atr``;
* ``volatility``: ``low`` / ``normal`` / ``high`` volatility percentile (terciles);
* ``atr``: ATR-14 in points, rounded to ``atr_step_points``;
* ``time``: the New York clock time that starts the ``time_step_minutes``-wide
  slot holding the bar (e.g. ``12:30``), from ``minutes_since_open``;
* ``move``: the session's move from its first open in ATR, with its side, in
  the ranges that ``move_edges_atr`` bound (edges 5, 15: ``up 0-5 ATR``,
  ``down 5-15 ATR``, ``up 15+ ATR``), from ``session_move_atr``;
* ``session_vol``: ``below usual`` / ``usual`` / ``above usual``: the session's
  realised volatility so far relative to the train days' usual for the same
  minutes (``session_vol_ratio``, :mod:`hybrid_trader.features.scaling`) below
  ``vol_low`` or above ``vol_high``; ``unknown`` where it is undefined (a
  session's first bar);
* ``strength``: ``strong`` / ``weak`` trend: ADX-14 at or above ``strong_trend_adx``, or below;
* ``position``: ``Flat`` / ``Long`` / ``Short``; ``pnl``: open P&L in dollars,
  rounded to ``pnl_step``; ``buffer``: drawdown buffer in dollars, rounded
  down to ``buffer_step``; ``minutes_left``: the ``minutes_step``-wide range
  holding the minutes to the flat deadline (e.g. ``120-240``).

Inputs are raw (unscaled) values named as in the observation registry
(``session_vol_ratio`` as the feature scaler computes it, before scaling), plus
``unrealized_pnl`` and ``drawdown_buffer`` in dollars and ``minutes_to_flat``
in minutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from hybrid_trader.env.actions import Action
from hybrid_trader.features.registry import RTH_MINUTES

__all__ = ["PromptTemplate", "Buckets", "PromptBuilder", "STATE_INPUTS", "ANSWER_WORDS"]

STATE_INPUTS = ("sma50_slope", "adx14", "rsi14", "momentum30", "vwap_distance", "volatility_percentile",
                "atr14", "minutes_since_open", "session_move_atr", "session_vol_ratio",
                "position_side", "unrealized_pnl", "drawdown_buffer", "minutes_to_flat")
_FIELDS = ("trend", "rsi", "momentum", "vwap", "volatility", "atr", "time", "move", "strength", "session_vol", "position",
           "pnl", "buffer", "minutes_left")
_RTH_OPEN_MINUTE = 9 * 60 + 30  # 09:30 New York
# The word that answers with each action (scored as whole words).
ANSWER_WORDS = {Action.HOLD: "HOLD", Action.BUY: "BUY", Action.SELL: "SELL",
                Action.MOVE_SL_TO_BREAKEVEN: "BREAKEVEN", Action.ENABLE_TRAILING_STOP: "TRAIL",
                Action.DISABLE_TRAILING_STOP: "UNTRAIL", Action.EXIT: "EXIT"}
# Every action can be answered: a missing word would fail only when a mask first allows it.
assert set(ANSWER_WORDS) == set(Action), "ANSWER_WORDS must name every Action"
assert len(set(ANSWER_WORDS.values())) == len(ANSWER_WORDS), "answer words must be distinct"


@dataclass(frozen=True)
class PromptTemplate:
    """A versioned prompt: static ``prefix`` + ``state`` with ``{field}`` placeholders
    (the fields of :meth:`PromptBuilder.fields`, and optionally ``{allowed}``: the
    answer words the mask allows)."""

    version: str
    prefix: str
    state: str
    generate_prefix: str = ""  # the prefix in generate mode (asks for ACTION | CONFIDENCE | REASON)

    def __post_init__(self) -> None:
        lines = max(self.prefix.count("\n"), self.generate_prefix.count("\n")) + self.state.count("\n") + 1
        if lines >= 50:
            raise ValueError(f"prompt template {self.version} has {lines} lines; keep it under 50")


@dataclass(frozen=True)
class Buckets:
    """Rounding steps of the prompt's values (``advisor.prompt.buckets``)."""

    rsi_step: float = 20.0
    momentum_step_pct: float = 0.5
    momentum_clip_pct: float = 1.0
    vwap_step_atr: float = 1.0
    vwap_clip_atr: float = 3.0
    atr_step_points: float = 10.0
    pnl_step: float = 250.0
    buffer_step: float = 500.0
    minutes_step: float = 120.0
    trend_slope_atr: float = 0.3
    strong_trend_adx: float = 25.0
    time_step_minutes: float = 30.0
    move_edges_atr: tuple[float, ...] = (5.0, 15.0)
    vol_low: float = 0.8
    vol_high: float = 1.25

    def __post_init__(self) -> None:
        object.__setattr__(self, "move_edges_atr", tuple(float(e) for e in self.move_edges_atr))
        if not self.move_edges_atr or any(e <= 0 for e in self.move_edges_atr):
            raise ValueError("advisor.prompt.buckets.move_edges_atr must be a non-empty list of positive edges")


def _round(value: float, step: float) -> float:
    return round(value / step) * step


def _clip(value: float, limit: float) -> float:
    return max(-limit, min(limit, value))


def _floor(value: float, step: float) -> float:
    return math.floor(value / step) * step


@dataclass
class PromptBuilder:
    """Turns a state (named raw values) and its allowed actions into prompt text."""

    template: PromptTemplate
    buckets: Buckets = field(default_factory=Buckets)

    @classmethod
    def from_params(cls, prompt: Mapping[str, Any]) -> "PromptBuilder":
        """From the ``advisor.prompt`` parameters."""
        return cls(PromptTemplate(str(prompt["version"]), prompt["prefix"], prompt["state"],
                                  prompt.get("generate_prefix", "")), Buckets(**prompt.get("buckets", {})))

    def fields(self, state: Mapping[str, Any]) -> dict[str, str]:
        """The template's fields for ``state``, bucketed and in trader's units."""
        missing = [name for name in STATE_INPUTS if name not in state]
        if missing:
            raise KeyError(f"advisor state lacks {missing}")
        b = self.buckets
        slope, adx = float(state["sma50_slope"]), float(state["adx14"])
        direction = "up" if slope > b.trend_slope_atr else "down" if slope < -b.trend_slope_atr else "sideways"
        if direction != "sideways" and adx >= b.strong_trend_adx:
            direction = f"strong {direction}"
        percentile = float(state["volatility_percentile"])
        side = int(state["position_side"])
        # Rounded: a fraction of 390 times 390 can land a hair below its whole minute (225 -> 224.999...).
        clock = _RTH_OPEN_MINUTE + _floor(round(float(state["minutes_since_open"]) * RTH_MINUTES, 6), b.time_step_minutes)
        move = float(state["session_move_atr"])
        edges = (0.0, *sorted(float(e) for e in b.move_edges_atr))
        above = [e for e in edges if abs(move) >= e]
        if math.isnan(move) or not above:
            raise ValueError(f"session_move_atr must be a number, got {move}")
        low = above[-1]
        span = f"{low:g}+" if low == edges[-1] else f"{low:g}-{edges[len(above)]:g}"
        vol_ratio = float(state["session_vol_ratio"])
        return {
            "time": f"{int(clock // 60):02d}:{int(clock % 60):02d}",
            "move": f"{'down' if move < 0 else 'up'} {span} ATR",
            "strength": "strong" if adx >= b.strong_trend_adx else "weak",
            "session_vol": "unknown" if math.isnan(vol_ratio) else "below usual" if vol_ratio < b.vol_low
            else "above usual" if vol_ratio > b.vol_high else "usual",
            "trend": direction,
            "rsi": f"{_round(float(state['rsi14']), b.rsi_step):.0f}",
            "momentum": f"{_round(_clip(100 * float(state['momentum30']), b.momentum_clip_pct), b.momentum_step_pct):+.1f}%",
            "vwap": f"{_round(_clip(float(state['vwap_distance']), b.vwap_clip_atr), b.vwap_step_atr):+.0f} ATR",
            "volatility": "low" if percentile < 1 / 3 else "high" if percentile > 2 / 3 else "normal",
            "atr": f"{_round(float(state['atr14']), b.atr_step_points):.0f}",
            "position": {1: "Long", -1: "Short"}.get(side, "Flat"),
            "pnl": f"{_round(float(state['unrealized_pnl']), b.pnl_step):+.0f}",
            "buffer": f"{_floor(float(state['drawdown_buffer']), b.buffer_step):.0f}",
            "minutes_left": "{:.0f}-{:.0f}".format(_floor(float(state["minutes_to_flat"]), b.minutes_step),
                                                   _floor(float(state["minutes_to_flat"]), b.minutes_step) + b.minutes_step),
        }

    def state_text(self, state: Mapping[str, Any], allowed: tuple[int, ...]) -> str:
        """The state part of the prompt (everything after the static prefix)."""
        words = ", ".join(ANSWER_WORDS[Action(a)] for a in allowed)
        return self.template.state.format(**self.fields(state), allowed=words)  # {allowed} is optional

    def content_free_text(self, allowed: tuple[int, ...]) -> str:
        """The same prompt with every value replaced by ``N/A`` (for contextual calibration)."""
        blank = {name: "N/A" for name in _FIELDS}
        words = ", ".join(ANSWER_WORDS[Action(a)] for a in allowed)
        return self.template.state.format(**blank, allowed=words)
