"""What a sync did: :class:`SyncReport`, for terminals (aligned lines) and Jupyter (a table).

Example:
    >>> report = SyncReport(cache="data/demo", source="http://127.0.0.1:8765", plan="full")
    >>> print(str(report).splitlines()[2])
    plan          full
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from omsframe._display import aligned, html_table
from omsframe.merge import UpsertCounts


@dataclass
class SyncReport:
    """What a sync did. Prints as aligned lines; renders as a table in Jupyter.

    Example:
        >>> import tempfile
        >>> import omsframe as of
        >>> with of.simulate(orders=30) as oms, tempfile.TemporaryDirectory() as cache:
        ...     report = of.sync(oms.url, token=oms.token, cache=cache, progress=False)
        >>> report.plan, report.orders_new == report.orders_seen, report.complete
        ('full', True, True)
        >>> report.to_dict()["orders_new"] == report.orders_new
        True
        >>> print(str(report).splitlines()[2])
        plan          full
    """

    cache: str
    source: str
    plan: str = ""
    resumed: bool = False
    notes: list[str] = field(default_factory=list)
    pages: int = 0
    orders_seen: int = 0
    orders_new: int = 0
    orders_updated: int = 0
    orders_unchanged: int = 0
    orders_stale: int = 0
    items: int = 0
    events_seen: int = 0
    events_new: int = 0
    events_updated: int = 0
    server_count: int = 0
    complete: bool = True
    retries: int = 0
    throttled: int = 0
    waited_seconds: float = 0.0
    quarantined: int = 0
    duplicates: int = 0
    drift: dict[str, dict[str, int]] = field(default_factory=dict)
    duration_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for ``--json`` and the manifest)."""
        return asdict(self)

    def _rows(self) -> list[tuple[str, str]]:
        drift = ", ".join(f"{k}: {sum(v.values())}" for k, v in self.drift.items() if v) or "none"
        return [
            ("cache", self.cache),
            ("source", self.source),
            ("plan", self.plan + (" (resumed)" if self.resumed else "")),
            (
                "orders",
                f"{self.orders_seen:,} read: {self.orders_new:,} new, "
                f"{self.orders_updated:,} updated, {self.orders_unchanged:,} unchanged"
                + (
                    f", {self.orders_stale:,} older than the copy stored (kept)"
                    if self.orders_stale
                    else ""
                )
                + (f", {self.duplicates:,} read twice" if self.duplicates else ""),
            ),
            ("items", f"{self.items:,}"),
            (
                "events",
                f"{self.events_seen:,} read: {self.events_new:,} new, "
                f"{self.events_updated:,} updated",
            ),
            ("pages", f"{self.pages:,}"),
            (
                "reconciled",
                f"{'yes' if self.complete else 'NO'} (the server counted {self.server_count:,} "
                "for this read)",
            ),
            (
                "retries",
                f"{self.retries:,} ({self.throttled:,} × 429; requests waited "
                f"{self.waited_seconds:.1f}s in all, side by side)"
                if self.retries or self.waited_seconds
                else "0",
            ),
            ("quarantined", f"{self.quarantined:,}"),
            ("schema drift", drift),
            ("duration", f"{self.duration_seconds:.1f}s"),
            *(("note", note) for note in self.notes),
        ]

    def __str__(self) -> str:
        return aligned(self._rows())

    def _repr_html_(self) -> str:
        return html_table(self._rows(), "omsframe sync")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's plain-text view (a terminal, a text-only front end): the aligned lines."""
        printer.text(str(self))

    def add_orders(self, counts: UpsertCounts) -> None:
        """Add an order upsert's counts."""
        self.orders_new += counts.new
        self.orders_updated += counts.updated
        self.orders_unchanged += counts.unchanged
        self.orders_stale += counts.stale
