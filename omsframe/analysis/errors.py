"""The errors the analyses raise.

Both are :class:`~omsframe.errors.OmsframeError` (and ``ValueError``, since they are about
the arguments)::

    OmsframeError
    └── AnalysisError       an analysis was asked something it cannot answer (unknown
        │                   measure or period, a frame without the columns it needs)
        └── CurrencyError   money in different currencies would be added together (no ``fx``,
                            or ``fx`` without a rate for a currency and day)

Example:
    >>> issubclass(CurrencyError, AnalysisError)
    True
"""

from __future__ import annotations

from omsframe.errors import OmsframeError

__all__ = ["AnalysisError", "CurrencyError"]


class AnalysisError(OmsframeError, ValueError):
    """An analysis was asked something it cannot answer; the message says what to pass."""


class CurrencyError(AnalysisError):
    """Amounts in different currencies would be added together; group or convert them."""
