"""One folder per pipeline; each exports ``create_pipeline``."""
