"""Backtests of every agent and baseline, their metrics, the comparison table and the pictures."""
