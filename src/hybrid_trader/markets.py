"""Futures contract specifications, the single place they are defined.

A contract's *multiplier* is the dollar value of one index point; its *tick
value* is ``multiplier * tick_size``. Commission is charged per contract per
side (once on entry, once on exit); slippage is in ticks per fill. The
*plausible price range* bounds any price the contract can print, so that data
ingestion can refuse a file whose every price is off by a constant factor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

__all__ = ["ContractSpec", "CONTRACTS", "resolve_contract"]


@dataclass(frozen=True)
class ContractSpec:
    """One futures contract and the trading costs assumed for it.

    Attributes:
        symbol: Root symbol, e.g. ``"NQ"``.
        multiplier: Dollars per one point of the index.
        tick_size: Minimum price increment, in index points.
        commission_per_side: Dollars per contract per fill (entry or exit).
        slippage_ticks: Adverse ticks assumed on every fill.
        min_plausible_price: Lowest price, in index points, a bar of this
            contract can plausibly print (``None``: not checked).
        max_plausible_price: Highest such price (``None``: not checked).
    """

    symbol: str
    multiplier: float
    tick_size: float
    commission_per_side: float
    slippage_ticks: float = 1.0
    min_plausible_price: float | None = None
    max_plausible_price: float | None = None

    def __post_init__(self) -> None:
        for name in ("multiplier", "tick_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"contract {self.symbol!r}: {name} must be > 0")
        for name in ("commission_per_side", "slippage_ticks"):
            if getattr(self, name) < 0:
                raise ValueError(f"contract {self.symbol!r}: {name} must be >= 0")
        low, high = self.min_plausible_price, self.max_plausible_price
        if (low is None) != (high is None) or (low is not None and not 0 < low < high):
            raise ValueError(f"contract {self.symbol!r}: min_plausible_price and max_plausible_price must "
                             "both be set with 0 < min < max, or both be null")

    @property
    def plausible_price_range(self) -> tuple[float, float] | None:
        """``(min_plausible_price, max_plausible_price)``, or ``None`` when not set."""
        if self.min_plausible_price is None or self.max_plausible_price is None:
            return None
        return self.min_plausible_price, self.max_plausible_price

    @property
    def tick_value(self) -> float:
        """Dollars per tick per contract."""
        return self.multiplier * self.tick_size

    def round_to_tick(self, price: float) -> float:
        """Nearest price on this contract's tick grid."""
        return round(price / self.tick_size) * self.tick_size


# Commissions: typical all-in retail/prop rates; E-minis ~$2-2.50, micros ~$0.50-0.75.
# Plausible prices: from about half the index's lowest level since the contract
# listed (S&P 500 ~670 and Dow ~6,500 in 2009, Nasdaq-100 ~800 in 2002,
# Russell 2000 ~340 in 2009) to four to five times its level of the mid-2020s
# (S&P ~6,000, Nasdaq-100 ~21,000, Dow ~43,000, Russell ~2,300). A file priced
# 100x or 1/100x off (cents, a lost decimal) or in 1e-9 fixed-point units falls
# outside; micros share their E-mini's index.
_ES_RANGE = (300.0, 30_000.0)
_NQ_RANGE = (400.0, 100_000.0)
_YM_RANGE = (3_000.0, 200_000.0)
_RTY_RANGE = (150.0, 10_000.0)
CONTRACTS: dict[str, ContractSpec] = {
    spec.symbol: spec
    for spec in (
        ContractSpec("ES", 50.0, 0.25, 2.25, 1.0, *_ES_RANGE),
        ContractSpec("NQ", 20.0, 0.25, 2.25, 1.0, *_NQ_RANGE),
        ContractSpec("YM", 5.0, 1.0, 2.25, 1.0, *_YM_RANGE),
        ContractSpec("RTY", 50.0, 0.10, 2.25, 1.0, *_RTY_RANGE),
        ContractSpec("MES", 5.0, 0.25, 0.62, 1.0, *_ES_RANGE),
        ContractSpec("MNQ", 2.0, 0.25, 0.62, 1.0, *_NQ_RANGE),
        ContractSpec("MYM", 0.5, 1.0, 0.62, 1.0, *_YM_RANGE),
        ContractSpec("M2K", 5.0, 0.10, 0.62, 1.0, *_RTY_RANGE),
    )
}


def resolve_contract(market_params: Mapping[str, Any]) -> ContractSpec:
    """Build the contract spec selected by the ``market`` parameters.

    Args:
        market_params: ``symbol`` (a built-in root or a key of
            ``custom_contracts``), optional ``commission_per_side`` and
            ``slippage_ticks`` overrides (``null`` keeps the contract's
            default), and ``custom_contracts``: a mapping of new symbols to
            ``{multiplier, tick_size, commission_per_side, slippage_ticks,
            min_plausible_price, max_plausible_price}`` (the last three optional).

    Returns:
        The resolved :class:`ContractSpec`.

    Raises:
        ValueError: unknown symbol, or a custom contract with missing or bad fields.
    """
    symbol = str(market_params.get("symbol", "")).upper()
    custom = {str(k).upper(): v for k, v in (market_params.get("custom_contracts") or {}).items()}
    if symbol in custom:
        fields = dict(custom[symbol])
        missing = {"multiplier", "tick_size", "commission_per_side"} - fields.keys()
        if missing:
            raise ValueError(
                f"custom contract {symbol!r} is missing {sorted(missing)} "
                "(needs multiplier, tick_size, commission_per_side[, slippage_ticks])"
            )
        spec = ContractSpec(symbol=symbol, **{k: None if v is None else float(v) for k, v in fields.items()})
    elif symbol in CONTRACTS:
        spec = CONTRACTS[symbol]
    else:
        known = sorted(CONTRACTS) + sorted(custom)
        raise ValueError(f"unknown market symbol {symbol!r}; known: {', '.join(known)}")

    overrides = {
        key: float(market_params[key])
        for key in ("commission_per_side", "slippage_ticks")
        if market_params.get(key) is not None
    }
    return replace(spec, **overrides) if overrides else spec
