"""What the advisor should have answered: outcome labels of flat-account prompts.

For a flat account the advisor picks HOLD, BUY or SELL. The *label* of a bar
is the answer that paid off:

* ``outcome`` (any market): the forward move over ``horizon_bars`` bars,
  ``forward_points = close[min(t + H, last bar of the session)] - open[t + 1]``
  (a decision at bar ``t``'s close fills at the next open; a day trader is flat
  by the session's end, so the horizon stops there), in index points. BUY when
  it exceeds the round-trip cost of one contract in points, SELL when it is
  below minus that cost, HOLD otherwise. A session's last bar has no label.
* ``oracle`` (a planted market): the oracle's side at the bar
  (:func:`~hybrid_trader.market_data.synthetic.oracle_directions`): BUY for +1,
  SELL for -1, HOLD for 0. ``forward_points`` is still the realised move.

Label indices are :data:`LABEL_ACTIONS` positions: 0 HOLD, 1 BUY, 2 SELL.

:func:`advisor_examples` turns every flat tradable bar inside the entry window
into one row: its prompt text (the flat-account state, as the advisor is asked),
the prompt's fields, its label and forward move, its day and split. Fine-tuning
reads the train rows only; the skill report reads validation and test rows.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from hybrid_trader.advisor.prescore import FLAT_OPTIONS, flat_states
from hybrid_trader.advisor.prompts import PromptBuilder
from hybrid_trader.env.actions import Action
from hybrid_trader.features.registry import RTH_MINUTES
from hybrid_trader.market_data.synthetic import PlantedEdge, oracle_directions
from hybrid_trader.markets import ContractSpec

__all__ = ["LABEL_ACTIONS", "LABEL_WORDS", "round_trip_cost_points", "forward_moves", "bar_labels",
           "advisor_examples", "soft_targets"]

LABEL_ACTIONS = (int(Action.HOLD), int(Action.BUY), int(Action.SELL))
LABEL_WORDS = ("HOLD", "BUY", "SELL")


def round_trip_cost_points(contract: ContractSpec) -> float:
    """Commission and slippage of one contract's entry and exit, in index points."""
    return 2.0 * (contract.commission_per_side / contract.multiplier + contract.slippage_ticks * contract.tick_size)


def forward_moves(clean_bars: pd.DataFrame, horizon_bars: int) -> np.ndarray:
    """``close[min(t + H, session's last bar)] - open[t + 1]`` per bar; NaN at a session's last bar."""
    if horizon_bars < 1:
        raise ValueError(f"the label horizon must be at least one bar, got {horizon_bars}")
    session = pd.factorize(clean_bars["session_date"])[0]
    n = len(clean_bars)
    index = np.arange(n)
    # Each bar's session's last row: sessions are contiguous and in time order.
    last = pd.Series(index).groupby(session).transform("max").to_numpy()
    opens, closes = clean_bars["open"].to_numpy(float), clean_bars["close"].to_numpy(float)
    entry = np.minimum(index + 1, n - 1)
    exit_row = np.minimum(index + horizon_bars, last)
    move = closes[exit_row] - opens[entry]
    move[index == last] = np.nan
    return move


def bar_labels(clean_bars: pd.DataFrame, horizon_bars: int, cost_points: float,
               edge: PlantedEdge | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, forward_points)`` per bar (module docstring); label -1 where there is none."""
    move = forward_moves(clean_bars, horizon_bars)
    if edge is not None:
        side = oracle_directions(clean_bars, edge)
        labels = np.select([side > 0, side < 0], [1, 2], 0)
    else:
        labels = np.select([move > cost_points, move < -cost_points], [1, 2], 0)
    labels[np.isnan(move)] = -1
    return labels.astype(np.int64), move


def advisor_examples(clean_bars: pd.DataFrame, advisor_bar_features: pd.DataFrame, day_splits: pd.DataFrame,
                     builder: PromptBuilder, *, horizon_bars: int, cost_points: float, drawdown_limit: float,
                     entry_window: Mapping[str, str], edge: PlantedEdge | None = None) -> pd.DataFrame:
    """One row per flat tradable bar in the entry window that has a label.

    Columns: ``session_date``, ``split``, ``prompt`` (the state text after the static prefix),
    the prompt's fields (``time``, ``move``, ``session_vol``, ``strength``, ...), ``label``
    (0 HOLD, 1 BUY, 2 SELL) and ``forward_points``.
    """
    if len(clean_bars) != len(advisor_bar_features) or not np.array_equal(
            clean_bars["timestamp"].to_numpy(), advisor_bar_features["timestamp"].to_numpy()):
        raise ValueError("clean_bars and advisor_bar_features must hold the same bars in the same order")
    labels, move = bar_labels(clean_bars, horizon_bars, cost_points, edge)
    start, end = (_minutes_after_open(entry_window[k]) for k in ("start", "end"))
    # Rounded: a fraction of 390 times 390 can land a hair below its whole minute (25 -> 24.999...).
    minute = np.round(advisor_bar_features["minutes_since_open"].to_numpy(float) * RTH_MINUTES, 6)
    keep = (advisor_bar_features["valid_for_trading"].to_numpy(bool) & (labels >= 0)
            & (minute >= start) & (minute < end))
    rows = advisor_bar_features.loc[keep]
    states = flat_states(rows, drawdown_limit)
    fields = pd.DataFrame([builder.fields(s) for s in states], index=rows.index)
    split_of_day = day_splits.set_index("session_date")["split"]
    out = fields.assign(
        session_date=rows["session_date"].to_numpy(),
        split=rows["session_date"].map(split_of_day).to_numpy(),
        prompt=[builder.state_text(s, FLAT_OPTIONS) for s in states],
        label=labels[keep],
        forward_points=move[keep],
    )
    if out["split"].isna().any():
        raise ValueError("some bars belong to days that the split does not know")
    return out.reset_index(drop=True)


def soft_targets(examples: pd.DataFrame) -> pd.DataFrame:
    """Per distinct prompt: ``count`` and the share of each label (``p_hold``, ``p_buy``, ``p_sell``),
    most frequent prompts first. Equal prompts are one training example whose target is
    the distribution of their outcomes."""
    onehot = pd.get_dummies(pd.Categorical(examples["label"], categories=[0, 1, 2])).to_numpy(float)
    frame = pd.DataFrame(onehot, columns=["p_hold", "p_buy", "p_sell"]).assign(prompt=examples["prompt"].to_numpy())
    grouped = frame.groupby("prompt", sort=False)
    out = grouped.mean().assign(count=grouped.size())
    return out.sort_values("count", ascending=False, kind="stable").reset_index()


def _minutes_after_open(clock: str) -> float:
    hours, minutes = str(clock).split(":")
    return int(hours) * 60 + int(minutes) - (9 * 60 + 30)


def describe_labels(examples: pd.DataFrame) -> dict[str, Any]:
    """Rows and label shares per split (for reports)."""
    out: dict[str, Any] = {}
    for split, rows in examples.groupby("split"):
        shares = rows["label"].value_counts(normalize=True)
        out[str(split)] = {"bars": int(len(rows)), "sessions": int(rows["session_date"].nunique()),
                           "prompts": int(rows["prompt"].nunique()),
                           **{f"share_{w.lower()}": float(shares.get(i, 0.0)) for i, w in enumerate(LABEL_WORDS)}}
    return out
