"""Hybrid Trader: a Kedro pipeline for hybrid RL + LLM futures trading agents."""

__version__ = "0.1.0"
