"""omsframe: Akinon OMS orders as exact, tidy pandas tables and the standard order analyses."""

__version__ = "0.1.0"

__all__ = ["__version__"]
