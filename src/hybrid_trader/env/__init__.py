"""The trading environment: market data, the account engine, observations, and Gym/SB3 wrappers."""
