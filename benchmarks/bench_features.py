"""Feature-engineering throughput on a year-sized synthetic series.

Prints bars per second of ``compute_bar_features`` (best of ``--repeats``),
and, for scale, of the cleaning step before it.

    .venv/bin/python -m benchmarks.bench_features [--days 252] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

from hybrid_trader.features.bar_features import compute_bar_features
from hybrid_trader.market_data.clean import CleaningConfig, ingest_bars
from hybrid_trader.market_data.synthetic import SyntheticMarketConfig, generate_synthetic_bars


def best_time(func, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=252)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    raw = generate_synthetic_bars(SyntheticMarketConfig(n_days=args.days, seed=1))
    result = ingest_bars(raw, CleaningConfig(), source="benchmark")
    n = len(result.bars)
    clean_s = best_time(lambda: ingest_bars(raw, CleaningConfig(), source="benchmark"), args.repeats)
    feature_s = best_time(lambda: compute_bar_features(result.bars, result.sessions), args.repeats)
    print(f"bars: {n:,} ({args.days} sessions)")
    print(f"validate+clean:    {clean_s:6.2f} s  {n / clean_s:12,.0f} bars/s")
    print(f"feature engineering: {feature_s:4.2f} s  {n / feature_s:12,.0f} bars/s")


if __name__ == "__main__":
    main()
