"""Raw OMS JSON (orders, webhook events) in, exact typed Arrow tables out.

One pass per batch: secrets are stripped first, then each order's rows for every table are
extracted with compiled extractors (see :mod:`omsframe.extract`); a record that cannot be
flattened goes whole to the quarantine with the reason, never silently dropped. Then each column
is converted by Arrow in one call (see :mod:`omsframe.convert`), personal data follows the
:class:`~omsframe.privacy.Privacy` policy, and order totals are summed exactly in decimal.

Example:
    >>> import orjson
    >>> page = orjson.loads(open("tests/fixtures/order-list-page.json", "rb").read())
    >>> result = flatten_orders(page["results"])
    >>> result.tables["order_items"].num_rows, len(result.quarantine)
    (2, 0)
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from omsframe.assemble import Rows, entity_table, owned_tables, stamp_policy, with_totals
from omsframe.convert import dumps, stamp_key
from omsframe.drift import KNOWN_STATE_CODES, DriftReport, check_fields
from omsframe.extract import ShapeError, compile_extractor
from omsframe.privacy import (
    Privacy,
    drop_credentials,
    may_name_credentials,
    strip_event_hook,
    strip_event_secrets,
    strip_order_secrets,
)
from omsframe.schema import TABLES

ORDER_TABLES = ("orders", "order_items", "addresses", "customers", "products", "channels", "states")


@dataclass
class QuarantinedRecord:
    """A record that could not be flattened, kept with the reason (secrets already removed).

    Example:
        >>> import omsframe as of
        >>> flat = of.flatten_orders([{"id": 1, "orderitem_set": "none"}, {"id": 2}])
        >>> [(q.kind, q.position, q.record_id, q.reason) for q in flat.quarantine]
        [('order', 0, 1, '`orderitem_set` is not a list')]
        >>> flat.tables["orders"].column("order_id").to_pylist()
        [2]
    """

    kind: str
    position: int
    record_id: Any
    reason: str
    record: str | None


@dataclass
class Flattened:
    """The result of flattening a batch: tables, quarantine, drift and the PII policy.

    ``duplicates`` counts input records dropped because a later copy of the same id won.

    Example:
        >>> import omsframe as of
        >>> old = {"id": 1, "modified_date": "2025-01-01T00:00:00Z", "number": "A"}
        >>> new = {"id": 1, "modified_date": "2025-01-02T00:00:00Z", "number": "B"}
        >>> flat = of.flatten_orders([new, old])
        >>> flat.duplicates, flat.tables["orders"].column("number").to_pylist()
        (1, ['B'])
        >>> list(flat.to_pandas()["orders"]["number"])
        ['B']
    """

    tables: dict[str, pa.Table]
    quarantine: list[QuarantinedRecord]
    drift: DriftReport
    pii_policy: str
    duplicates: int = 0

    def to_pandas(self) -> dict[str, Any]:
        """The tables as pandas DataFrames, typed as :func:`omsframe.load` gives them.

        Decimals stay exact (``pd.ArrowDtype``), timestamps UTC.
        """
        from omsframe.load import to_pandas

        return {name: to_pandas(table) for name, table in self.tables.items()}


_EXTRACTORS = {name: compile_extractor(TABLES[name]) for name in TABLES}
Stamped = dict[Any, tuple[str, tuple[Any, ...]]]


@contextmanager
def collector_paused(*, freeze: bool = False) -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of acyclic objects are made.

    Flattening creates only acyclic tuples and lists; without the pause, CPython's collector
    rescans every live parsed record many times per batch, which costs more than the work.
    Reference counting still frees everything acyclic at once.

    With ``freeze``, what exists already is also frozen out of the collector's sight (unless
    the program froze objects itself), so that a caller can collect the cycles it makes
    meanwhile (an HTTP response and its stream refer to each other) with a cheap
    ``gc.collect()`` now and then — what a sync does once per batch. The collector's previous
    state is restored on exit.

    Example:
        >>> import gc
        >>> with collector_paused():
        ...     gc.isenabled()
        False
    """
    was_enabled = gc.isenabled()
    freeze = freeze and gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.unfreeze()
        if was_enabled:
            gc.enable()


class _Entities:
    """Customers, products, channels and states seen so far, each as last seen."""

    def __init__(self) -> None:
        self.customers: Stamped = {}
        self.products: Stamped = {}
        self.images: dict[Any, list[str]] = {}
        self.channels: Stamped = {}
        self.states: Stamped = {}
        self.addresses: dict[tuple[Any, Any], tuple[Any, ...]] = {}

    @staticmethod
    def wants(store: Stamped, key: Any, stamp: Any) -> bool:
        """Whether a row for ``key`` stamped ``stamp`` is newer than the one kept."""
        previous = store.get(key)
        if previous is None:
            return True
        moment = stamp_key(stamp)
        return moment != "" and moment >= previous[0]

    def keep(self, found: list[tuple[str, Any, Any, tuple[Any, ...], Any]]) -> None:
        """Keep the rows one successfully flattened order brought."""
        for kind, key, stamp, row, extra in found:
            store: Stamped = getattr(self, kind)
            if self.wants(store, key, stamp):
                store[key] = (stamp_key(stamp), row)
                if kind == "products":
                    self.images[key] = extra


def flatten_orders(records: Iterable[Any], *, privacy: Privacy | None = None) -> Flattened:
    """Flatten full orders (the shape of the order list and order detail) into tables.

    When the same order id appears more than once, the copy with the latest
    ``modified_date`` is kept (the later one on a tie) and the others are counted in
    ``duplicates``.

    Args:
        records: Orders as parsed JSON (dicts). They are modified in place: secrets removed.
        privacy: The PII policy; by default pseudonymize with a fresh key (stable within
            this call only: the cache passes its own key).

    Returns:
        :class:`Flattened` with tables ``orders, order_items, addresses, customers, products,
        channels, states``, the quarantine and the drift report.

    Example:
        >>> flatten_orders([{"id": 1, "orderitem_set": []}]).tables["orders"].num_rows
        1
    """
    return _flatten(records, privacy or Privacy())


def _flatten(
    records: Iterable[Any], privacy: Privacy, recover: Callable[[int], Any] | None = None
) -> Flattened:
    """:func:`flatten_orders`; with ``recover``, the records are not kept (see _OrderBatch)."""
    batch = _OrderBatch(privacy, recover)
    with collector_paused():
        for record in records:
            batch.add(record)
        return batch.finish()


def iter_flatten_orders(
    records: Iterable[Any], *, privacy: Privacy | None = None, batch_size: int = 5_000
) -> Iterator[Flattened]:
    """Flatten in batches of ``batch_size`` orders, so memory stays bounded.

    Each record is taken apart as soon as it arrives (while it is still in the processor's
    cache, right after it was parsed); the batch becomes Arrow tables every ``batch_size``.

    Example:
        >>> batches = list(iter_flatten_orders(({"id": i} for i in range(5)), batch_size=2))
        >>> [b.tables["orders"].num_rows for b in batches]
        [2, 2, 1]
    """
    privacy = privacy or Privacy()
    source = iter(records)
    while True:
        with collector_paused():  # the records are usually parsed as we pull them
            batch = _OrderBatch(privacy)
            for record in itertools.islice(source, batch_size):
                batch.add(record)
            if not batch.count:
                return
            flattened = batch.finish()
            # free the parsed records while the collector still sleeps: waking it with them
            # alive would have it scan every one of them once more
            del batch, record
        yield flattened


class _OrderBatch:
    """Orders being flattened: rows are extracted as each record arrives."""

    def __init__(self, privacy: Privacy, recover: Callable[[int], Any] | None = None) -> None:
        """Start a batch; ``recover(position)``, if given, returns a record again.

        It is asked for a record bound for the quarantine (e.g. parsed again from its JSON
        text); with it, the records are not kept: parsed records held for a whole batch crowd
        the processor's cache and cost ~25 % of the time.
        """
        self.privacy = privacy
        self.recover = recover
        self.records: list[Any] = []
        self.count = 0
        self.drift = DriftReport()
        self.quarantine: list[QuarantinedRecord] = []
        self.orders, self.items = Rows("orders"), Rows("order_items")
        self.addresses = Rows("addresses")
        self.entities = _Entities()
        self.winner: dict[int, tuple[str, int]] = {}  # order id -> (modified_date, position)
        self.superseded: set[int] = set()  # positions that lost to a later copy

    def add(self, record: Any) -> None:
        """Take one order apart (or quarantine it, or note that a newer copy supersedes it)."""
        position = self.count
        self.count += 1
        if self.recover is None:
            self.records.append(record)
        if record.__class__ is dict:
            strip_order_secrets(record)  # first: even a superseded copy leaves without them
        if record.__class__ is dict and record.get("id").__class__ is int:
            stamp = stamp_key(record.get("modified_date"))
            previous = self.winner.get(record["id"])
            if previous is not None:
                if stamp < previous[0]:
                    self.superseded.add(position)
                    return
                self.superseded.add(previous[1])
            self.winner[record["id"]] = (stamp, position)
        try:
            order_row, item_rows, address_rows, found = _order_rows(
                record, self.drift, self.entities
            )
        except ShapeError as error:
            self.quarantine.append(
                _quarantined("order", position, record, str(error), self.privacy)
            )
            return
        self.entities.keep(found)
        orders, items, addresses = self.orders, self.items, self.addresses
        orders.rows.append(order_row)
        orders.owner.append(position)
        orders.computed["item_count"].append(len(item_rows))
        order_id, placed = record["id"], record.get("date_placed")
        channel = record.get("channel")
        channel_id = channel.get("id") if channel.__class__ is dict else None
        for item_row in item_rows:
            items.rows.append(item_row)
            items.owner.append(position)
            items.computed["order_id"].append(order_id)
            items.computed["date_placed"].append(placed)
            items.computed["channel_id"].append(channel_id)
        for role, address_row in address_rows:
            addresses.rows.append(address_row)
            addresses.owner.append(position)
            addresses.computed["order_id"].append(order_id)
            addresses.computed["role"].append(role)
            addresses.computed["date_placed"].append(placed)

    def finish(self) -> Flattened:
        """Convert the rows to Arrow tables (an order with any bad value is quarantined)."""
        parts = (self.orders, self.items, self.addresses)
        if self.superseded:
            for rows in parts:
                rows.drop_owners(self.superseded)
        privacy, drift, quarantine = self.privacy, self.drift, self.quarantine
        (order_table, item_table, address_table), bad = owned_tables(parts, privacy, drift)
        for position in sorted(bad):
            record = self.records[position] if self.recover is None else self.recover(position)
            quarantine.append(_quarantined("order", position, record, bad[position], privacy))
        tables = {
            "orders": with_totals(order_table, item_table),
            "order_items": item_table,
            "addresses": address_table,
        }
        entities = self.entities
        images = {"image_urls": [entities.images[k] for k in entities.products]}
        for name, store, computed in (
            ("customers", entities.customers, {}),
            ("products", entities.products, images),
            ("channels", entities.channels, {}),
            ("states", entities.states, {}),
        ):
            kept = [row for _, row in store.values()]
            tables[name], bad_rows = entity_table(name, kept, computed, privacy, drift)
            for row, reason in sorted(bad_rows.items()):
                quarantine.append(QuarantinedRecord(name, row, kept[row][0], reason, None))
        for code in tables["states"].column("code").to_pylist():
            if code not in KNOWN_STATE_CODES:
                drift.new_state_codes[str(code)] += 1
        return Flattened(
            stamp_policy(tables, privacy),
            quarantine,
            drift,
            privacy.describe(),
            len(self.superseded),
        )


def _order_rows(record: Any, drift: DriftReport, seen: _Entities) -> tuple[Any, ...]:
    """Every row one order contributes; raises ShapeError when it cannot be flattened.

    Rows of customers, products, channels and states are extracted only when newer than what
    ``seen`` holds (the same product appears on thousands of items).
    """
    if record.__class__ is not dict:
        raise ShapeError(f"the order is {type(record).__name__}, expected an object")
    order_id = record.get("id")  # (its secrets are gone: _OrderBatch.add strips them first)
    if order_id.__class__ is not int:
        raise ShapeError(f"the order has no integer `id` (got {order_id!r:.40})")
    check_fields(record, "order", drift)
    ext = _EXTRACTORS
    order_row = ext["orders"](record)
    item_list = record.get("orderitem_set")
    if item_list is None:
        item_list = []
    elif item_list.__class__ is not list:
        raise ShapeError("`orderitem_set` is not a list")
    found: list[tuple[str, Any, Any, tuple[Any, ...], Any]] = []
    states = [record.get("state")]
    item_rows = []
    for item in item_list:
        if item.__class__ is not dict:
            raise ShapeError(f"an item of `orderitem_set` is {type(item).__name__}, not an object")
        check_fields(item, "item", drift)
        item_rows.append(ext["order_items"](item))
        states.append(item.get("state"))
        product = item.get("product")
        if product.__class__ is dict:
            key, stamp = product.get("id"), product.get("modified_date")
            if seen.wants(seen.products, key, stamp):
                check_fields(product, "product", drift)
                images = product.get("productimage_set") or []
                if images.__class__ is not list:
                    raise ShapeError("`product.productimage_set` is not a list")
                urls = [i.get("url") for i in images if i.__class__ is dict and i.get("url")]
                found.append(("products", key, stamp, ext["products"](product), urls))
    for state in states:
        if state.__class__ is dict:
            key = (state.get("enum_class"), state.get("enum_value"))
            if key not in seen.states:
                check_fields(state, "state", drift)
                found.append(("states", key, None, ext["states"](state), None))
    address_rows = []
    for role in ("shipping", "billing"):
        address = record.get(f"{role}_address")
        if address.__class__ is dict:
            # orders reuse addresses (billing is usually shipping): extract each version once
            check_fields(address, "address", drift)  # every copy: it goes to the raw layer
            key = (address.get("id"), address.get("modified_date"))
            row = seen.addresses.get(key) if key[0] is not None else None
            if row is None:
                row = ext["addresses"](address)
                seen.addresses[key] = row
            address_rows.append((role, row))
        elif address is not None and address.__class__ is not int:
            raise ShapeError(f"`{role}_address` is {type(address).__name__}, expected an object")
    customer = record.get("customer")
    if customer.__class__ is dict:
        check_fields(customer, "customer", drift)
        modified = record.get("modified_date")
        row = (*ext["customers"](customer), modified)
        found.append(("customers", customer.get("pk"), modified, row, None))
    channel = record.get("channel")
    if channel.__class__ is dict:
        check_fields(channel, "channel", drift)
        key, stamp = channel.get("id"), channel.get("modified_date")
        if seen.wants(seen.channels, key, stamp):
            found.append(("channels", key, stamp, ext["channels"](channel), None))
    return order_row, item_rows, address_rows, found


def _quarantined(
    kind: str, position: int, record: Any, reason: str, privacy: Privacy
) -> QuarantinedRecord:
    record_id = record.get("id") if isinstance(record, dict) else None
    if isinstance(record, dict):
        if kind == "order":
            strip_order_secrets(record)
            privacy.scrub_order(record)
        else:
            strip_event_secrets(record)
            _scrub_payload(record, privacy)
    return QuarantinedRecord(kind, position, record_id, reason, dumps(record))


def _scrub_payload(event: dict[str, Any], privacy: Privacy) -> None:
    """Apply the PII policy to the order snapshot an event carries."""
    request = event.get("request_payload")
    if isinstance(request, dict) and isinstance(request.get("payload"), dict):
        privacy.scrub_order(request["payload"])


def flatten_events(records: Iterable[Any], *, privacy: Privacy | None = None) -> Flattened:
    """Flatten webhook events into the ``events`` table (payload kept as JSON, secrets removed).

    Args:
        records: Events as parsed JSON (dicts); modified in place (secrets removed).
        privacy: The PII policy applied to the order snapshot in each payload.

    Returns:
        :class:`Flattened` with one table, ``events``.

    Example:
        >>> events = flatten_events([{"id": 1, "order": 5, "request_datetimes": []}])
        >>> events.tables["events"].num_rows
        1
    """
    return flatten_events_json(list(records), privacy or Privacy())[0]


def flatten_events_json(
    batch: list[Any], privacy: Privacy
) -> tuple[Flattened, list[Any], list[int]]:
    """:func:`flatten_events`, each row's event as JSON (for the raw layer) and its position.

    Each JSON is a value for :func:`~omsframe.convert.json_texts`, and each position the
    row's record's in ``batch``, in the order of the rows (the records not there were
    quarantined).

    An event carries a whole order (~9 KB of JSON). Its payload is made JSON once, after the
    PII policy: that text is checked for credential-like keys (see
    :func:`~omsframe.privacy.may_name_credentials`), kept as the ``payload`` column, and
    spliced into the whole event's JSON (an ``orjson.Fragment``). The event was made JSON
    three times before: to check it, for the column and for the raw layer.

    Example:
        >>> from omsframe.convert import json_texts
        >>> events = [{"id": 2, "request_payload": {"payload": {"id": 7}}}, "bad", {"id": 3}]
        >>> flat, texts, positions = flatten_events_json(events, Privacy())
        >>> json_texts(texts).to_pylist(), positions, len(flat.quarantine)
        (['{"id":2,"request_payload":{"payload":{"id":7}}}', '{"id":3}'], [0, 2], 1)
    """
    drift = DriftReport()
    quarantine: list[QuarantinedRecord] = []
    rows = Rows("events")
    texts: list[Any] = []  # (orjson.Fragment, or the event where orjson could not)
    extract = _EXTRACTORS["events"]
    for position, event in enumerate(batch):
        try:
            if event.__class__ is not dict:
                raise ShapeError(f"the event is {type(event).__name__}, expected an object")
            strip_event_hook(event)  # (other credential-like keys: see _event_json)
            if event.get("id").__class__ is not int:
                raise ShapeError("the event has no integer `id`")
            row = extract(event)
            attempts = event.get("request_datetimes") or []
            if attempts.__class__ is not list:
                raise ShapeError("`request_datetimes` is not a list")
            _scrub_payload(event, privacy)
        except ShapeError as error:
            quarantine.append(_quarantined("event", position, event, str(error), privacy))
            continue
        payload, text = _event_json(event)
        rows.rows.append(row)
        rows.owner.append(position)
        rows.computed["attempt_count"].append(len(attempts))
        rows.computed["last_attempt"].append(attempts[-1] if attempts else None)
        rows.computed["payload"].append(payload)
        texts.append(text)
    (table,), bad = owned_tables((rows,), privacy, drift)
    for position in sorted(bad):
        quarantine.append(_quarantined("event", position, batch[position], bad[position], privacy))
    positions = rows.owner
    if bad:
        texts = [text for text, owner in zip(texts, positions, strict=True) if owner not in bad]
        positions = [owner for owner in positions if owner not in bad]
    for code in pc.unique(table.column("state_code")).to_pylist():
        if code is not None and code not in KNOWN_STATE_CODES:
            drift.new_state_codes[str(code)] += 1
    flat = Flattened(
        stamp_policy({"events": table}, privacy), quarantine, drift, privacy.describe()
    )
    return flat, texts, positions


def _event_json(event: dict[str, Any]) -> tuple[Any, Any]:
    """An event's payload for its column, and its JSON; credential-like keys dropped first.

    The payload comes back as an ``orjson.Fragment`` of its JSON, the event's JSON as one
    too, and the event as it was, its keys in their order. Where orjson cannot make the JSON
    (an integer beyond 64 bits), the event is walked key by key and the payload and the event
    themselves come back, made JSON later as any value is.
    """
    if "request_payload" not in event:
        drop_credentials(event)
        return None, event
    request = event["request_payload"]
    whole = None
    try:
        text = orjson.dumps(request)
        if may_name_credentials(text):
            drop_credentials(request)
            text = orjson.dumps(request)
        payload = None if request is None else orjson.Fragment(text)
        event["request_payload"] = None  # (in its place) the rest: the webhook, the response...
        drop_credentials(event)
        event["request_payload"] = payload
        whole = orjson.Fragment(orjson.dumps(event))
    except TypeError:
        pass  # walked below, payload and all
    finally:
        event["request_payload"] = request
    if whole is None:
        drop_credentials(event)
        return request, event
    return payload, whole
