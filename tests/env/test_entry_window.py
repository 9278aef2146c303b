"""The entry window: BUY and SELL are masked at every decision outside it."""

from __future__ import annotations

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from hybrid_trader.env.actions import Action
from hybrid_trader.env.engine import EngineConfig, TradingEngine
from hybrid_trader.env.factory import market_for_split
from hybrid_trader.env.market import MarketData
from hybrid_trader.markets import CONTRACTS
from tests.conftest import PROJECT_ROOT


def _clock(bars: pd.DataFrame) -> pd.Series:
    return bars["timestamp"].dt.strftime("%H:%M")


def test_entries_are_masked_outside_the_window(synthetic_frames):
    bars, features = synthetic_frames
    market = MarketData.from_frames(bars, features, CONTRACTS["NQ"], entry_start="10:00", entry_end="10:05")
    clock = _clock(bars)
    first_day = (bars["session_date"] == bars["session_date"].min()).to_numpy()
    # Inclusive at both ends: exactly 10:00 .. 10:05 on a full day.
    assert clock[first_day & market.entry_allowed].tolist() == ["10:00", "10:01", "10:02", "10:03", "10:04",
                                                                "10:05"]
    engine = TradingEngine(market, EngineConfig(episode_mode="full_session"), 1)
    start = int(np.flatnonzero(first_day & (clock == "09:58").to_numpy())[0])
    engine.reset(starts=np.array([start]))
    seen = []
    for _ in range(9):  # decisions at 09:58 .. 10:06
        masks = engine.action_masks()[0]
        seen.append((clock[engine.t[0]], bool(masks[Action.BUY]), bool(masks[Action.SELL])))
        engine.step(np.array([Action.HOLD]))
    assert seen == [(f"{h:02d}:{m:02d}", inside, inside) for h, m, inside in
                    [(9, 58, False), (9, 59, False), (10, 0, True), (10, 1, True), (10, 2, True), (10, 3, True),
                     (10, 4, True), (10, 5, True), (10, 6, False)]]


def test_the_configured_window_and_the_last_fillable_bar(synthetic_frames):
    bars, features = synthetic_frames
    environment = OmegaConf.to_container(OmegaConf.load(PROJECT_ROOT / "conf/base/parameters.yml"))["environment"]
    days = sorted(features["session_date"].unique())
    features = features.assign(split="train")
    market = market_for_split(bars, features, CONTRACTS["NQ"], environment, "train")
    clock = _clock(bars)
    # Full day (window 09:30-16:00): from the first bar with a complete window (09:39) to 16:00.
    first = clock[(bars["session_date"] == days[0]).to_numpy() & market.entry_allowed]
    assert (first.min(), first.max(), len(first)) == ("09:39", "16:00", 382)
    # Early close (last bar 12:59): a decision at 12:57 fills at 12:58; one at 12:58 would fill on
    # the last bar and is masked.
    early = clock[(bars["session_date"] == days[1]).to_numpy() & market.entry_allowed]
    assert (early.min(), early.max(), len(early)) == ("09:39", "12:57", 199)
