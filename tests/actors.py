"""Actor classes several Ray test modules use (not collected: no ``test_`` prefix)."""

from __future__ import annotations


class Broken:
    """A constructor that raises, as a user's check of its arguments does."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")

    def ping(self) -> str:
        return "pong"
