"""v4only: keep IPv6-less clusters from breaking opted-in pods."""

__version__ = "0.1.0"
