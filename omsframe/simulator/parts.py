"""The parts of rendered orders that do not change with the clock, built once per world.

A product, a place of the gazetteer (city, country, township, district), a channel, its price
and stock lists and a webhook look the same at every moment, so a :class:`Parts`
builds each of them on first use and keeps it (there are a few hundred of them, whatever the
number of orders). Customers and addresses (one per customer, tens of thousands) are built on
each call, quickly, and not kept.

The kept objects are *shared*: whoever gets one must not change it. :func:`fresh` makes an
independent deep copy for callers that may (:mod:`~omsframe.simulator.render`'s public
functions hand out fresh objects; the server, which serializes at once and whose fault
injection only changes an order's own keys and its item dicts, takes the shared ones).

Example:
    >>> from omsframe.simulator.world import World
    >>> parts = World.generate(seed=1, orders=20).parts
    >>> parts.product(0) is parts.product(0)
    True
    >>> fresh(parts.product(0)) == parts.product(0)
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

from omsframe.simulator import catalogue as cat
from omsframe.simulator.world import US, iso

if TYPE_CHECKING:
    from omsframe.simulator.world import World

__all__ = ["Parts", "fresh"]

Json = dict[str, Any]
T = TypeVar("T")
_NESTED = frozenset((dict, list))
_ASCII = str.maketrans("çğıöşüÇĞİÖŞÜ ", "cgiosuCGIOSU-")
_KINDS = {"category": "dropdown", "color": "valuelabel", "size": "dropdown", "material": "text"}
_TITLES = ("Ev", "İş", "Yazlık")


def fresh(value: T) -> T:
    """A deep copy of JSON-like data: new dicts and lists, the same immutable leaves.

    Example:
        >>> shared = {"a": [{"b": 1}], "c": "x"}
        >>> copy = fresh(shared)
        >>> copy == shared, copy["a"][0] is shared["a"][0]
        (True, False)
    """
    return cast(T, _copy(value))


def _copy(value: Any) -> Any:
    if type(value) is dict:
        return {k: _copy(v) if type(v) in _NESTED else v for k, v in value.items()}
    if type(value) is list:
        return [_copy(v) if type(v) in _NESTED else v for v in value]
    return value


class Parts:
    """The clock-independent objects of one world (get it as ``world.parts``).

    Building a kept object twice (two threads at once) is harmless: both builds are equal.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self._products: list[Json | None] = [None] * len(world.product_name)
        self._places: list[tuple[Json, Json, Json, Json] | None] = [None] * len(world.places)
        self._channels: dict[tuple[int, bool], Json] = {}
        self._lists: dict[int, tuple[Json, Json]] = {}
        self._webhooks: dict[int, Json] = {}

    # --- kept (shared) objects ----------------------------------------------------------------
    def product(self, p: int) -> Json:
        """The nested ``product`` of an item, with attributes and images (shared)."""
        product = self._products[p]
        if product is None:
            product = self._products[p] = self._build_product(p)
        return product

    def _build_product(self, p: int) -> Json:
        w = self.world
        category, _base, _clothing, _names = cat.CATEGORIES[int(w.product_category[p])]
        color = cat.COLORS[int(w.product_color[p])]
        size = cat.SIZES[int(w.product_size[p])]
        material = cat.MATERIALS[int(w.product_material[p])]
        base_code = f"AKN-{100 + p // 5:04d}"
        attributes = {"category": category, "color": color, "size": size, "material": material}
        return {
            "id": 300 + p,
            "productimage_set": [
                {
                    "order": k,
                    "id": 400 + 3 * p + k,
                    "url": f"https://cdn.example.com/products/{p}/{k}.jpg",
                    "product": 300 + p,
                }
                for k in range(1 + p % 3)
            ],
            "created_date": "2022-11-10T06:57:37.198392Z",
            "modified_date": "2022-11-10T06:57:37.198402Z",
            "omnitron_id": 8000 + p,
            "name": w.product_name[p],
            "base_code": base_code,
            "sku": f"{base_code}-{color[:3].upper()}-{size}",
            "barcode": w.product_barcode[p],
            "attributes": attributes,
            "attributes_kwargs": {
                key: {"label": value, "value": value, "data_type": _KINDS[key]}
                for key, value in attributes.items()
            },
            "extra_attributes": {},
            "remote_modified_date": "2022-09-07T11:49:23.777608Z",
        }

    def place(self, index: int) -> tuple[Json, Json, Json, Json]:
        """The ``city``, ``country``, ``township`` and ``district`` objects of a place (shared)."""
        objects = self._places[index]
        if objects is None:
            place = self.world.places[index]
            country = place.country
            objects = self._places[index] = (
                {
                    "pk": place.city_pk,
                    "name": place.city,
                    "country": country.pk,
                    "is_active": True,
                    "longitude": place.city_lon,
                    "latitude": place.city_lat,
                },
                {
                    "pk": country.pk,
                    "name": country.name,
                    "code": country.code,
                    "is_active": True,
                    "longitude": country.longitude,
                    "latitude": country.latitude,
                },
                {
                    "pk": place.township_pk,
                    "name": place.township,
                    "city": place.city_pk,
                    "is_active": True,
                    "longitude": place.lon,
                    "latitude": place.lat,
                },
                {
                    "pk": place.district_pk,
                    "name": place.district,
                    "city": place.city_pk,
                    "township": place.township_pk,
                    "is_active": True,
                    "longitude": place.lon,
                    "latitude": place.lat,
                },
            )
        return objects

    def channel(self, channel_index: int, with_configuration: bool) -> Json:
        """The nested ``channel``; ``configuration`` carries (fake) live credentials (shared)."""
        key = (channel_index, with_configuration)
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = self._build_channel(*key)
        return channel

    def _build_channel(self, channel_index: int, with_configuration: bool) -> Json:
        spec = cat.CHANNELS[channel_index]
        channel: Json = {
            "id": spec.id,
            "channel_type": spec.channel_type,
            "created_date": "2021-07-06T09:49:30.220001Z",
            "modified_date": "2023-02-16T15:16:54.433413Z",
            "omnitron_id": spec.id,
            "name": spec.name,
        }
        if with_configuration:
            secrets = self.world.channel_secrets[spec.id]
            channel["configuration"] = {
                "server": f"https://shop{spec.id}.example.com/api/v1",
                "password": secrets["password"],
                "username": "omnitron",
                "sales_url": f"https://shop{spec.id}.example.com/",
                "auth_token": secrets["auth_token"],
                "feature_flags": {},
                "cancel_mail_subject": "{}",
                "cancel_mail_template_url": "{}",
                "localized_cancel_mail_subject": {},
                "direct_cancel_mail_template_url": "{}",
            }
        channel["is_active"] = True
        return channel

    def price_stock_lists(self, channel_index: int) -> tuple[Json, Json]:
        """The ``price_list`` and ``stock_list`` of a channel's items (shared)."""
        lists = self._lists.get(channel_index)
        if lists is None:
            spec = cat.CHANNELS[channel_index]
            price_list = {
                "pk": 30 + spec.id,
                "code": f"{spec.currency}_price_list",
                "name": f"{spec.name} price list",
                "currency": spec.currency,
                "created_date": "2021-02-25T13:41:08.252536Z",
                "is_auto_sync": False,
                "modified_date": "2023-02-02T13:27:03.825072Z",
            }
            stock_list = {
                "pk": 30 + spec.id,
                "code": None if spec.id % 2 else f"stock_{spec.id}",
                "name": f"{spec.name} stock list",
                "created_date": "2021-02-25T13:41:20.523128Z",
                "is_auto_sync": False,
                "modified_date": "2021-02-25T13:41:20.523152Z",
            }
            lists = self._lists[channel_index] = (price_list, stock_list)
        return lists

    def webhook(self, index: int) -> Json:
        """The ``webhook`` object of a webhook event, secrets included (shared)."""
        webhook = self._webhooks.get(index)
        if webhook is None:
            hook = self.world.webhooks[index]
            webhook = self._webhooks[index] = {
                "id": hook.id,
                "target_url": hook.target_url,
                "event_type": hook.event_type,
                "secret_key": hook.secret_key,
                "config": {
                    "auth": {"username": hook.auth_username, "password": hook.auth_password}
                },
                "additional_headers": {"X-Api-Key": hook.header_value},
            }
        return webhook

    # --- built on each call (fresh) -----------------------------------------------------------
    def customer(self, c: int) -> Json:
        """The nested ``customer`` object (a new dict; its values are immutable)."""
        w = self.world
        spec = cat.CHANNELS[int(w.customer_channel[c])]
        lang = "tr" if spec.language == "tr" else "en"
        first = cat.FIRST_NAMES[lang][int(w.customer_first[c])]
        last = cat.LAST_NAMES[lang][int(w.customer_last[c])]
        phone = int(w.customer_phone[c])
        pk = 3000 + c
        return {
            "email": f"{first.translate(_ASCII)}.{last.translate(_ASCII)}.{pk}@example.com".lower(),
            "first_name": first,
            "last_name": last,
            "phone_number": f"+90{phone}" if phone >= 0 else None,
            "erp_code": f"ERP{pk:07d}" if pk % 3 == 0 else None,
            "pk": pk,
            "channel": spec.id,
        }

    def address(
        self, a: int, *, shared: bool, customer: Json | None = None, customer_index: int = -1
    ) -> Json:
        """A shipping or billing address with its customer and place objects (a new dict).

        With ``shared``, the place objects are the kept ones; otherwise they are copies.
        ``customer`` is a customer object already built for ``customer_index``: an address of
        that customer takes it (shared) or a copy of it, rather than building it again.
        """
        w = self.world
        place_index = int(w.address_place[a])
        place = w.places[place_index]
        places = self.place(place_index)
        city, country, township, district = places if shared else map(dict, places)
        c = int(w.address_customer[a])
        if customer is None or c != customer_index:
            customer = self.customer(c)
        elif not shared:
            customer = dict(customer)
        code = place.country.code
        street = cat.STREET_NAMES[code]
        corporate = bool(w.address_corporate[a])
        created = int(w.address_created[a])
        line = f"{street[int(w.address_street[a]) % len(street)]} No:{int(w.address_number[a])}"
        last_name = customer["last_name"]
        return {
            "id": 9000 + a,
            "city": city,
            "country": country,
            "township": township,
            "district": district,
            "customer": customer,
            "address_type": "customer",
            "created_date": iso(created),
            "modified_date": iso(created + 3 * US),
            "omnitron_id": 20000 + a,
            "mapping": None,
            "title": _TITLES[a % 3] if code == "tr" else "Home",
            "is_active": True,
            "line": line,
            "postcode": place.postcode,
            "notes": None,
            "email": customer["email"],
            "phone_number": customer["phone_number"] or "",
            "first_name": customer["first_name"],
            "last_name": last_name,
            "company_name": f"{last_name} Ltd." if corporate else "",
            "tax_office": "Kadıköy" if corporate else "",
            "tax_no": f"{(a * 7919) % 10**10:010d}" if corporate else "",
            "e_bill_taxpayer": corporate,
        }
