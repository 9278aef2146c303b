"""Validate and clean parsed bars onto the session grid, with a quality report.

The output is one row per expected minute of every kept session (see
:mod:`hybrid_trader.market_data.calendar`), nothing more and nothing less;
every row that came in is accounted for in the report's ``row_accounting``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hybrid_trader.market_data.calendar import EXCHANGE_TZ, expected_bar_times, sessions_between
from hybrid_trader.market_data.ingest import PRICE_COLUMNS, parse_raw_bars, select_outright_contract
from hybrid_trader.market_data.quality import DataQualityError, QualityLog, source_rows as _rows
from hybrid_trader.markets import ContractSpec

__all__ = ["CleaningConfig", "IngestionResult", "BAR_COLUMNS", "ingest_bars", "open_close_outside_range",
           "require_bars_left", "widen_range_to_open_close"]

BAR_COLUMNS = ["timestamp", "session_date", "open", "high", "low", "close", "volume", "symbol", "is_filled"]
_MAX_GAPS_LISTED = 200


@dataclass(frozen=True)
class CleaningConfig:
    """Options of validation and cleaning (``data_ingestion`` parameters).

    Attributes:
        strict: Turn every needed repair into an error.
        assume_timezone: Zone of timestamps without an offset.
        symbol_root: Keep only this root (e.g. ``"NQ"``); ``None`` requires a single root.
        default_symbol: Symbol of plain files without a ``symbol`` column.
        price_scale_factor: A price this many times above or below the median is corrupt.
        max_fill_minutes: Longest run of missing minutes that is filled.
        min_session_coverage: Smallest fraction of a session's bars that must be present.
    """

    strict: bool = False
    assume_timezone: str = "UTC"
    symbol_root: str | None = None
    default_symbol: str = "UNKNOWN"
    price_scale_factor: float = 10.0
    max_fill_minutes: int = 5
    min_session_coverage: float = 0.9

    def __post_init__(self) -> None:
        if self.price_scale_factor <= 1:
            raise ValueError("price_scale_factor must be > 1")
        if self.max_fill_minutes < 0:
            raise ValueError("max_fill_minutes must be >= 0")
        if not 0 < self.min_session_coverage <= 1:
            raise ValueError("min_session_coverage must be in (0, 1]")


@dataclass
class IngestionResult:
    """Clean bars, the sessions they cover, hidden regimes (synthetic only) and the report."""

    bars: pd.DataFrame
    sessions: pd.DataFrame
    day_regimes: pd.DataFrame
    report: dict[str, Any]


def ingest_bars(
    raw: pd.DataFrame,
    config: CleaningConfig,
    source: str,
    *,
    contract: ContractSpec | None = None,
    require_bars: bool = True,
) -> IngestionResult:
    """Parse, validate and clean a raw bar table.

    Args:
        raw: A raw table (see :mod:`hybrid_trader.market_data.ingest`).
        config: Cleaning options.
        source: Name of the input (file path) used in errors and the report.
        contract: The traded contract; its plausible price range bounds
            every price (rule ``implausible_price``). ``None``, or a contract
            without a range, leaves the rule unchecked.
        require_bars: Raise ``no_bars_left`` when no bar survives (see
            :func:`require_bars_left`); ``False`` returns the empty result and
            its report, so that a caller can keep the report before stopping.

    Returns:
        An :class:`IngestionResult`; ``bars`` has :data:`BAR_COLUMNS` with
        ``timestamp`` in America/New_York.

    Raises:
        DataQualityError: an ``error`` rule failed, or a repair was needed in strict mode.
    """
    log = QualityLog(source=source, strict=config.strict)
    rows_in = len(raw)
    bars, fmt, naive_timestamps = parse_raw_bars(
        raw, log, assume_timezone=config.assume_timezone, default_symbol=config.default_symbol
    )
    has_symbols = fmt == "databento" or "symbol" in {str(c).strip().lower() for c in raw.columns}
    if has_symbols:  # any file naming its instruments may mix months or spreads
        bars = select_outright_contract(bars, log, symbol_root=config.symbol_root, exchange_tz=EXCHANGE_TZ)

    earlier = bars["timestamp"].diff() < pd.Timedelta(0)
    log.record("out_of_order", int(earlier.sum()), _rows(bars, earlier))
    bars = bars.sort_values("timestamp", kind="stable")

    duplicated = bars["timestamp"].duplicated(keep="first")
    log.record("duplicate_timestamp", int(duplicated.sum()), _rows(bars, duplicated))
    bars = bars.loc[~duplicated]

    off_minute = bars["timestamp"] != bars["timestamp"].dt.floor("min")
    log.fail("not_minute_bars", int(off_minute.sum()), _rows(bars, off_minute),
             "timestamps are not on whole minutes; resample to 1-minute bars")
    prices = bars[list(PRICE_COLUMNS)]
    non_positive = (prices <= 0).any(axis=1)
    log.fail("non_positive_price", int(non_positive.sum()), _rows(bars, non_positive), "a price is <= 0")
    negative_volume = bars["volume"] < 0
    log.fail("negative_volume", int(negative_volume.sum()), _rows(bars, negative_volume), "volume is negative")
    inverted = bars["high"] < bars["low"]
    log.fail("high_below_low", int(inverted.sum()), _rows(bars, inverted), "high is below low")

    median = float(bars["close"].median()) if len(bars) else 1.0
    ratio = prices / median
    off_scale = ((ratio >= config.price_scale_factor) | (ratio <= 1.0 / config.price_scale_factor)).any(axis=1)
    log.record("price_scale", int(off_scale.sum()), _rows(bars, off_scale),
               detail=f"series median close {median:g}, factor {config.price_scale_factor:g}")
    bars = bars.loc[~off_scale].copy()
    _check_plausible_prices(bars, contract, log, synthetic="regime" in raw)

    outside = open_close_outside_range(bars)
    log.record("open_close_outside_range", int(outside.sum()), _rows(bars, outside))
    bars = widen_range_to_open_close(bars)

    bars["timestamp"] = bars["timestamp"].dt.tz_convert(EXCHANGE_TZ)
    rows_before_session = len(bars)
    grid, sessions = _session_grid(bars)
    on_grid = bars["timestamp"].isin(grid["timestamp"])
    log.record("outside_session", int((~on_grid).sum()), _rows(bars, ~on_grid))
    bars = bars.loc[on_grid]

    bars_out, sessions_out, gaps, filled, dropped_rows = _fill_to_grid(bars, grid, sessions, config, log)
    day_regimes = _day_regimes(bars, sessions_out)

    accounting = {
        "rows_in": rows_in,
        **{f"minus_{name}": -o["count"] for name, o in log.rules_report().items()
           if o["kind"] in ("filter",) or name in ("duplicate_timestamp", "price_scale")},
        "minus_incomplete_session": -dropped_rows,
        "plus_filled_bars": filled,
    }
    accounting["rows_out"] = len(bars_out)
    if sum(v for k, v in accounting.items() if k != "rows_out") != len(bars_out) or (
        rows_before_session != len(bars) + log.outcomes["outside_session"]["count"]
    ):
        raise RuntimeError(f"row accounting does not balance (a bug, please report): {accounting}")

    report = {
        "source": source,
        "format": "synthetic" if "regime" in raw else raw.attrs.get("format", fmt),
        "strict": config.strict,
        "assume_timezone": config.assume_timezone,
        "timestamps_without_offset": naive_timestamps,
        "rows_in": rows_in,
        "rows_out": len(bars_out),
        "row_accounting": accounting,
        "rules": log.rules_report(),
        "sessions": {
            "in_range": len(sessions),
            "kept": len(sessions_out),
            "first": str(sessions_out["session_date"].min().date()) if len(sessions_out) else None,
            "last": str(sessions_out["session_date"].max().date()) if len(sessions_out) else None,
            "early_close": [str(d.date()) for d in sessions_out.loc[sessions_out["early_close"], "session_date"]],
            "dropped": gaps["dropped_sessions"],
        },
        "filled_bars": filled,
        "gaps": gaps["runs"][:_MAX_GAPS_LISTED],
        "gap_count": len(gaps["runs"]),
    }
    if len(day_regimes):
        report["synthetic_regime_days"] = day_regimes["regime"].value_counts().sort_index().to_dict()
    log.record("no_bars_left", 0)
    report["rules"] = log.rules_report()
    if require_bars:
        require_bars_left(report)
    return IngestionResult(bars_out, sessions_out, day_regimes, report)


def open_close_outside_range(bars: pd.DataFrame) -> pd.Series:
    """Rows whose open or close lies outside [low, high] (rule ``open_close_outside_range``)."""
    return (bars["open"] > bars["high"]) | (bars["open"] < bars["low"]) | (
        (bars["close"] > bars["high"]) | (bars["close"] < bars["low"])
    )


def widen_range_to_open_close(bars: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``bars`` whose high and low take in the open and close (the rule's repair;
    serving applies it to a client's bars too)."""
    return bars.assign(high=bars[["open", "high", "close"]].max(axis=1),
                       low=bars[["open", "low", "close"]].min(axis=1))


def _check_plausible_prices(
    bars: pd.DataFrame, contract: ContractSpec | None, log: QualityLog, *, synthetic: bool
) -> None:
    """Refuse prices outside the contract's plausible range (a scale error the median cannot see)."""
    price_range = contract.plausible_price_range if contract is not None else None
    if synthetic or price_range is None:
        reason = "the synthetic market" if synthetic else "no plausible price range for the contract"
        log.record("implausible_price", 0, detail=f"not checked: {reason}")
        return
    low, high = price_range
    prices = bars[list(PRICE_COLUMNS)]
    outside = ((prices < low) | (prices > high)).any(axis=1)
    if outside.any():
        first = ", ".join(f"{p:g}" for p in prices.loc[outside].iloc[0])
        log.fail(
            "implausible_price", int(outside.sum()), _rows(bars, outside),
            f"prices outside {contract.symbol}'s plausible range [{low:g}, {high:g}] (first such bar: open, "
            f"high, low, close = {first}); is every price off by a constant factor (cents, a lost decimal, "
            "1e-9 fixed-point units), or is market.symbol not the file's contract?",
        )
    log.record("implausible_price", 0, detail=f"{contract.symbol}: [{low:g}, {high:g}]")


def require_bars_left(report: dict[str, Any]) -> None:
    """Stop when no bar survived, naming the rules that removed the rows and the likeliest fix.

    Raises:
        DataQualityError: (rule ``no_bars_left``) ``report["rows_out"]`` is 0;
            the error carries the report.
    """
    if report["rows_out"]:
        return
    removed = {
        key.removeprefix("minus_"): -count
        for key, count in report["row_accounting"].items()
        if key.startswith("minus_") and count
    }
    ranked = sorted(removed.items(), key=lambda item: -item[1])
    detail = f"no bar is left of the {report['rows_in']} rows read"
    if ranked:
        detail += ": " + ", ".join(f"{rule} removed {count}" for rule, count in ranked)
        detail += f". Likeliest cause: {ranked[0][0]}. {_likely_fix(ranked[0][0], report)}"
    raise DataQualityError(report["source"], None, "no_bars_left", detail, report=report)


def _likely_fix(rule: str, report: dict[str, Any]) -> str:
    if rule in ("outside_session", "incomplete_session"):
        naive, zone = report["timestamps_without_offset"], report["assume_timezone"]
        dropped = len(report["sessions"]["dropped"])
        if naive:
            return (
                f"{naive} timestamps carry no offset and were read as {zone} "
                f"(data_ingestion.assume_timezone), which put the bars outside the 08:30-16:59 New York "
                f"session ({dropped} session(s) dropped as incomplete); if they are exchange-local times, "
                "set data_ingestion.assume_timezone: America/New_York."
            )
        return (
            f"the bars do not cover the 08:30-16:59 New York session ({dropped} session(s) dropped as "
            "incomplete); check the file's time offsets, or relax data_ingestion.min_session_coverage / "
            "max_fill_minutes."
        )
    if rule == "other_instrument":
        return "data_ingestion.symbol_root matches no instrument of the file; set it to the file's root."
    if rule == "calendar_spread":
        return "the file holds only calendar spreads; download the outright contract."
    return "see the rule's description in docs/data.md."


def _session_grid(bars: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Expected bar times of every CME session between the first and last bar (none without bars)."""
    if bars.empty:  # every row was filtered out: no session, so that the report can say by which rule
        sessions = sessions_between("2024-01-02", "2024-01-02").iloc[:0]  # the calendar's columns and dtypes
    else:
        first, last = bars["timestamp"].iloc[[0, -1]].dt.date
        sessions = sessions_between(first, last)
    sessions["session_date"] = pd.to_datetime(sessions["session_date"])
    parts = [
        pd.DataFrame({"timestamp": expected_bar_times(s), "session_date": s.session_date})
        for s in sessions.itertuples()
    ]
    if not parts:  # no session at all (no bars, or only weekend bars): an empty grid of the right dtypes
        parts = [pd.DataFrame({"timestamp": bars["timestamp"].iloc[:0].reset_index(drop=True),
                               "session_date": sessions["session_date"].iloc[:0].reset_index(drop=True)})]
    grid = pd.concat(parts, ignore_index=True)
    return grid, sessions


def _fill_to_grid(
    bars: pd.DataFrame, grid: pd.DataFrame, sessions: pd.DataFrame, config: CleaningConfig, log: QualityLog
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], int, int]:
    merged = grid.merge(bars.drop(columns=["regime"], errors="ignore"), on="timestamp", how="left")
    missing = merged["close"].isna()
    # Runs of consecutive missing minutes within a session.
    run_start = missing & ~(missing.shift(fill_value=False) & (merged["session_date"] == merged["session_date"].shift()))
    run_id = run_start.cumsum().where(missing)
    runs = (
        merged.loc[missing]
        .assign(run=run_id[missing])
        .groupby("run")
        .agg(session_date=("session_date", "first"), start=("timestamp", "first"), minutes=("timestamp", "size"))
    )
    per_session = merged.groupby("session_date").agg(present=("close", "count"), expected=("timestamp", "size"))
    longest = runs.groupby("session_date")["minutes"].max().reindex(per_session.index, fill_value=0)
    coverage = per_session["present"] / per_session["expected"]
    drop = (coverage < config.min_session_coverage) | (longest > config.max_fill_minutes)

    dropped_sessions = [
        {
            "session_date": str(day.date()),
            "bars_present": int(per_session.loc[day, "present"]),
            "bars_expected": int(per_session.loc[day, "expected"]),
            "longest_gap_minutes": int(longest.loc[day]),
        }
        for day in per_session.index[drop]
    ]
    dropped_rows = int(per_session.loc[drop, "present"].sum())
    first_rows = _rows(bars, bars["timestamp"].dt.tz_localize(None).dt.normalize().isin(
        pd.DatetimeIndex(per_session.index[drop])), 10)
    if drop.any() and config.strict:
        raise DataQualityError(log.source, first_rows[0] if first_rows else None, "incomplete_session",
                               f"{int(drop.sum())} incomplete session(s) and strict mode is on: "
                               f"{[d['session_date'] for d in dropped_sessions][:5]}")
    log.record("incomplete_session", dropped_rows, first_rows,
               detail=f"{int(drop.sum())} session(s) dropped" if drop.any() else "")

    kept = merged.loc[~merged["session_date"].isin(per_session.index[drop])].reset_index(drop=True)
    fill = kept["close"].isna()
    kept_runs = runs.loc[~runs["session_date"].isin(per_session.index[drop])]
    log.record("missing_bars", int(fill.sum()), [],
               detail=f"{len(kept_runs)} gap(s) filled" if len(kept_runs) else "")

    last_close = kept["close"].ffill()
    # Only a gap at the very start of the data has no earlier close: use the first open.
    last_close = last_close.fillna(kept["open"].dropna().iloc[0] if kept["open"].notna().any() else np.nan)
    for col in PRICE_COLUMNS:
        kept[col] = kept[col].where(~fill, last_close)
    kept["volume"] = kept["volume"].where(~fill, 0.0)
    kept["symbol"] = kept["symbol"].ffill().bfill()
    kept["is_filled"] = fill.to_numpy()
    out = kept[BAR_COLUMNS].copy()

    run_records = [
        {
            "session_date": str(r.session_date.date()),
            "start": r.start.isoformat(),
            "minutes": int(r.minutes),
            "action": "session_dropped" if r.session_date in set(per_session.index[drop]) else "filled",
        }
        for r in runs.itertuples()
    ]
    counts = out.groupby("session_date").agg(n_bars=("close", "size"), n_filled=("is_filled", "sum"))
    sessions_out = sessions.loc[sessions["session_date"].isin(counts.index)].merge(
        counts, left_on="session_date", right_index=True
    ).reset_index(drop=True)
    return out, sessions_out, {"runs": run_records, "dropped_sessions": dropped_sessions}, int(fill.sum()), dropped_rows


def _day_regimes(bars: pd.DataFrame, sessions: pd.DataFrame) -> pd.DataFrame:
    """The synthetic market's hidden regime per kept session (empty for real data)."""
    if "regime" not in bars:
        return pd.DataFrame({"session_date": pd.Series(dtype="datetime64[ns]"), "regime": pd.Series(dtype=str)})
    day = bars["timestamp"].dt.tz_localize(None).dt.normalize()
    regimes = bars.groupby(day)["regime"].first().rename_axis("session_date").reset_index()
    return regimes.loc[regimes["session_date"].isin(sessions["session_date"])].reset_index(drop=True)
