"""The version of omsframe (one place)."""

__version__ = "0.1.0"
