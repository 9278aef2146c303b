"""Market data: the exchange calendar, the synthetic market, CSV parsing and validation."""
