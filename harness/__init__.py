"""Is fine-tuning worth it? One task, every adaptation strategy, measured the same way."""

__version__ = "0.1.0"
