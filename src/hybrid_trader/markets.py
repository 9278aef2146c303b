"""Futures contract specifications, the single place they are defined.

A contract's *multiplier* is the dollar value of one index point; its *tick
value* is ``multiplier * tick_size``. Commission is charged per contract per
side (once on entry, once on exit); slippage is in ticks per fill.
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
    """

    symbol: str
    multiplier: float
    tick_size: float
    commission_per_side: float
    slippage_ticks: float = 1.0

    def __post_init__(self) -> None:
        for name in ("multiplier", "tick_size"):
            if not getattr(self, name) > 0:
                raise ValueError(f"contract {self.symbol!r}: {name} must be > 0")
        for name in ("commission_per_side", "slippage_ticks"):
            if getattr(self, name) < 0:
                raise ValueError(f"contract {self.symbol!r}: {name} must be >= 0")

    @property
    def tick_value(self) -> float:
        """Dollars per tick per contract."""
        return self.multiplier * self.tick_size

    def round_to_tick(self, price: float) -> float:
        """Nearest price on this contract's tick grid."""
        return round(price / self.tick_size) * self.tick_size


# Commissions: typical all-in retail/prop rates; E-minis ~$2-2.50, micros ~$0.50-0.75.
CONTRACTS: dict[str, ContractSpec] = {
    spec.symbol: spec
    for spec in (
        ContractSpec("ES", 50.0, 0.25, 2.25),
        ContractSpec("NQ", 20.0, 0.25, 2.25),
        ContractSpec("YM", 5.0, 1.0, 2.25),
        ContractSpec("RTY", 50.0, 0.10, 2.25),
        ContractSpec("MES", 5.0, 0.25, 0.62),
        ContractSpec("MNQ", 2.0, 0.25, 0.62),
        ContractSpec("MYM", 0.5, 1.0, 0.62),
        ContractSpec("M2K", 5.0, 0.10, 0.62),
    )
}


def resolve_contract(market_params: Mapping[str, Any]) -> ContractSpec:
    """Build the contract spec selected by the ``market`` parameters.

    Args:
        market_params: ``symbol`` (a built-in root or a key of
            ``custom_contracts``), optional ``commission_per_side`` and
            ``slippage_ticks`` overrides (``null`` keeps the contract's
            default), and ``custom_contracts``: a mapping of new symbols to
            ``{multiplier, tick_size, commission_per_side, slippage_ticks}``.

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
        spec = ContractSpec(symbol=symbol, **{k: float(v) for k, v in fields.items()})
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
