"""spanqa: extractive QA checkpoints to fast, verified offline inference."""

__version__ = "0.1.0"
