"""sweeper: settle, with evidence, which remedy fixes a failing training run."""

__version__ = "0.1.0"
