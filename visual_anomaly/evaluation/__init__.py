"""Evaluation: detection metrics, plots and Markdown reports, shared by bag tools and training."""
