import pytest

from hybrid_trader.markets import CONTRACTS, resolve_contract


@pytest.mark.parametrize(
    ("symbol", "multiplier", "tick", "tick_value"),
    [("ES", 50, 0.25, 12.5), ("NQ", 20, 0.25, 5.0), ("YM", 5, 1.0, 5.0), ("RTY", 50, 0.10, 5.0),
     ("MES", 5, 0.25, 1.25), ("MNQ", 2, 0.25, 0.5), ("MYM", 0.5, 1.0, 0.5), ("M2K", 5, 0.10, 0.5)],
)
def test_contract_specs(symbol, multiplier, tick, tick_value):
    spec = CONTRACTS[symbol]
    assert (spec.multiplier, spec.tick_size) == (multiplier, tick)
    assert spec.tick_value == pytest.approx(tick_value)


def test_micro_commissions_are_below_e_mini_commissions():
    assert all(CONTRACTS[f"M{root}"].commission_per_side < CONTRACTS[root].commission_per_side
               for root in ("ES", "NQ", "YM"))


def test_overrides_and_custom_contracts():
    spec = resolve_contract({"symbol": "es", "commission_per_side": 1.5, "slippage_ticks": None})
    assert (spec.symbol, spec.commission_per_side, spec.slippage_ticks) == ("ES", 1.5, 1.0)
    custom = resolve_contract({
        "symbol": "MBT",
        "custom_contracts": {"MBT": {"multiplier": 0.1, "tick_size": 5.0, "commission_per_side": 2.5}},
    })
    assert custom.tick_value == pytest.approx(0.5)
    assert custom.round_to_tick(101_237.0) == 101_235.0


def test_bad_market_config_is_rejected():
    with pytest.raises(ValueError, match="unknown market symbol 'XX'"):
        resolve_contract({"symbol": "XX"})
    with pytest.raises(ValueError, match="missing.*tick_size"):
        resolve_contract({"symbol": "ZZ", "custom_contracts": {"ZZ": {"multiplier": 1, "commission_per_side": 1}}})
    with pytest.raises(ValueError, match="tick_size must be > 0"):
        resolve_contract({"symbol": "ZZ", "custom_contracts": {
            "ZZ": {"multiplier": 1, "tick_size": 0, "commission_per_side": 1}}})
