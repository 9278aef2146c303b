"""Data-quality rules, their outcomes, and the error that stops a run.

Every rule has one of four kinds:

* ``error``: the run stops with a :class:`DataQualityError` naming file, row
  and rule; no repair is safe.
* ``repair``: the data is repaired as documented and the count is reported;
  with ``strict: true`` a repair that would be needed is an error instead.
* ``filter``: rows that are not part of the series asked for (overnight bars,
  spreads, other months) are left out and counted; never an error.
* ``conversion``: a documented encoding of the source (e.g. Databento's
  fixed-point prices) is decoded and counted; never an error, even in strict
  mode, since nothing is wrong with the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["RULES", "Rule", "DataQualityError", "QualityLog", "source_rows"]


@dataclass(frozen=True)
class Rule:
    """One validation rule: its kind and what it checks and does."""

    name: str
    kind: str  # "error" | "repair" | "filter" | "conversion"
    description: str


RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule(
            "no_data_rows", "error",
            "The file holds at least one data row (an empty file, or one with only a header, stops the run).",
        ),
        Rule(
            "dbn_schema", "error",
            "A DBN file decodes completely and holds ohlcv-1m records (the schema in its metadata).",
        ),
        Rule("required_columns", "error", "The file has every column of its format (Databento or plain)."),
        Rule("unparseable_timestamp", "error", "Every timestamp parses (ISO-8601 with or without offset, or epoch ns)."),
        Rule("unparseable_value", "error", "Every price and volume is a finite number."),
        Rule(
            "fixed_point_price", "conversion",
            "Prices written as integers in units of 1e-9 (Databento's fixed-point format: DBN files, and CSV "
            "written with pretty_px=False), recognised when every price is an integer and the median close "
            "is >= 1e9, are divided by 1e9.",
        ),
        Rule("calendar_spread", "filter", "Spread rows (outright legs joined by '-', e.g. NQZ5-NQH6) are dropped."),
        Rule("other_instrument", "filter", "Rows of another root than symbol_root are dropped."),
        Rule("non_front_contract", "filter", "Per New York day, only the outright month with the most volume is kept."),
        Rule("out_of_order", "repair", "Rows whose timestamp is earlier than the previous row's; repaired by a stable sort."),
        Rule("duplicate_timestamp", "repair", "Several rows with one timestamp; the first in file order is kept."),
        Rule(
            "not_minute_bars", "error",
            "Timestamps fall on whole minutes; finer data must be resampled to 1-minute bars first.",
        ),
        Rule("non_positive_price", "error", "Open, high, low and close are > 0."),
        Rule("negative_volume", "error", "Volume is >= 0."),
        Rule("high_below_low", "error", "High >= low on every bar."),
        Rule(
            "price_scale", "repair",
            "A bar with a price that differs from the series median close by a factor >= price_scale_factor "
            "(~100x corruption) is dropped; its minute then counts as a missing bar.",
        ),
        Rule(
            "implausible_price", "error",
            "Every price left after price_scale lies within the traded contract's plausible range "
            "(ContractSpec.min_plausible_price .. max_plausible_price); catches a scale error shared by "
            "every row, which price_scale (relative to the file's own median) cannot see. Not applied to "
            "the synthetic market, whose level is set by its start_price.",
        ),
        Rule("open_close_outside_range", "repair", "Open or close outside [low, high]; high/low widened to include them."),
        Rule(
            "outside_session", "filter",
            "Bars outside 08:30 ET .. the last bar (16:59, or the early close) of a CME equity session, "
            "or on a non-trading day, are dropped.",
        ),
        Rule(
            "missing_bars", "repair",
            "A run of at most max_fill_minutes missing minutes is filled with flat zero-volume bars at the "
            "last known close (is_filled = true).",
        ),
        Rule(
            "incomplete_session", "repair",
            "A session with a longer run of missing minutes, or fewer than min_session_coverage of its "
            "expected bars, is dropped whole and listed.",
        ),
        Rule(
            "no_bars_left", "error",
            "At least one bar is left after every rule; otherwise the run stops, naming the rules that "
            "removed the rows and the likeliest fix (e.g. assume_timezone for local timestamps read as UTC).",
        ),
    )
}

_MAX_ROWS_LISTED = 10


def source_rows(frame, mask, limit: int = _MAX_ROWS_LISTED) -> list[int]:
    """File rows (``source_row``) of the first ``limit`` rows of ``frame`` where ``mask`` holds."""
    return [int(r) for r in frame.loc[np.asarray(mask), "source_row"].head(limit)]


class DataQualityError(ValueError):
    """Bad input that no documented repair may fix. Names file, row and rule.

    ``report`` holds the data-quality report when the failure came after the
    whole file was validated (``no_bars_left``); otherwise ``None``.
    """

    def __init__(self, source: str, row: int | None, rule: str, detail: str,
                 report: dict[str, Any] | None = None) -> None:
        self.source, self.row, self.rule, self.detail, self.report = source, row, rule, detail, report
        where = f"{source}, row {row}" if row is not None else source
        super().__init__(f"{where}: rule {rule!r} failed: {detail}")


@dataclass
class QualityLog:
    """Collects each rule's outcome while a file is validated.

    ``strict`` makes every repair rule with a non-zero count raise instead.
    """

    source: str
    strict: bool = False
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self, rule: str, count: int, rows: list[int] | None = None, detail: str = "") -> None:
        """Record that ``rule`` affected ``count`` rows (``rows``: their file rows)."""
        spec = RULES[rule]
        rows = list(rows or [])[:_MAX_ROWS_LISTED]
        if count and spec.kind == "repair" and self.strict:
            raise DataQualityError(
                self.source, rows[0] if rows else None, rule,
                f"{count} row(s) would need a repair ({spec.description}) and strict mode is on"
                + (f"; {detail}" if detail else ""),
            )
        previous = self.outcomes.get(rule, {"count": 0, "rows": []})
        self.outcomes[rule] = {
            "kind": spec.kind,
            "count": previous["count"] + int(count),
            "rows": (previous["rows"] + rows)[:_MAX_ROWS_LISTED],
            **({"detail": detail} if detail else {}),
        }

    def fail(self, rule: str, count: int, rows: list[int], detail: str) -> None:
        """Stop the run on an ``error`` rule if ``count`` is non-zero; else record a pass."""
        if count:
            raise DataQualityError(self.source, rows[0] if rows else None, rule, f"{count} row(s): {detail}")
        self.record(rule, 0)

    def rules_report(self) -> dict[str, dict[str, Any]]:
        """Every rule in declaration order with its kind, count and example rows."""
        return {
            name: {
                "kind": rule.kind,
                "count": self.outcomes.get(name, {}).get("count", 0),
                "rows": self.outcomes.get(name, {}).get("rows", []),
                "description": rule.description,
                **({"detail": self.outcomes[name]["detail"]} if "detail" in self.outcomes.get(name, {}) else {}),
            }
            for name, rule in RULES.items()
            if name in self.outcomes
        }
