"""Static reference data of the simulated shop: states, places, names, products, channels.

Everything here is fixed (not drawn from the seed), so ids of states, cities and the like are
the same in every simulated world. The seeded choices are made in :mod:`world`.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- order states ---------------------------------------------------------------------------
# (enum_value, English name, Turkish name). The OMS reuses Omnitron's OrderStatus codes.
STATE_NAMES: dict[int, tuple[str, str]] = {
    50: ("Cancellation Waiting", "İptal Bekliyor"),
    100: ("Cancelled", "İptal Edildi"),
    200: ("Waiting", "Bekliyor"),
    300: ("Payment Waiting", "Ödeme Bekleniyor"),
    350: ("Confirmation Waiting", "Onay Bekleniyor"),
    400: ("Approved", "Onaylanmış"),
    425: ("Inactive", "Aktif Olmayan"),
    450: ("Preparing", "Hazırlanıyor"),
    500: ("Shipped", "Kargolandı"),
    510: ("Shipped And Informed", "Kargolandı ve Bilgilendirildi"),
    520: ("Ready For Pickup", "Teslim Almaya Hazır"),
    540: ("Attempted Delivery", "Teslimat Denendi"),
    544: ("Review Started", "İnceleme Başladı"),
    545: ("Review Waiting", "İnceleme Bekliyor"),
    550: ("Delivered", "Teslim Edildi"),
    600: ("Refunded", "İade Edildi"),
}
# Unknown codes served under the schema-drift fault: clients must keep them, not fail.
UNKNOWN_STATES: dict[int, tuple[str, str]] = {
    700: ("Partially Delivered", "Kısmen Teslim Edildi"),
    999: ("Archived", "Arşivlendi"),
}
STATE_CODES: tuple[int, ...] = tuple(STATE_NAMES)
ORDER_CONTENT_TYPE = 2
ITEM_CONTENT_TYPE = 3
STATE_CATALOGUE_CREATED = "2021-06-30T14:43:26.601899Z"
STATE_CATALOGUE_MODIFIED = "2022-10-14T10:39:33.629710Z"


def state_id(code: int, content_type: int) -> int:
    """Return the OMS primary key of a state row (orders and items have separate rows)."""
    codes = (*STATE_CODES, *UNKNOWN_STATES)
    base = 1 if content_type == ORDER_CONTENT_TYPE else 101
    return base + codes.index(code)


# --- payment, delivery, cargo ---------------------------------------------------------------
PAYMENT_TYPES: tuple[tuple[str, str, float], ...] = (
    # (value, label, share of orders)
    ("credit_card", "Credit Card", 0.66),
    ("funds_transfer", "Funds Transfer", 0.08),
    ("pay_on_delivery", "Pay On Delivery", 0.12),
    ("masterpass", "Masterpass", 0.09),
    ("loyalty_money", "Loyalty Money", 0.05),
)
DELIVERY_TYPES: tuple[tuple[str, str, float], ...] = (
    ("standard", "Standard", 0.72),
    ("express", "Express", 0.14),
    ("same_day", "Same Day", 0.05),
    ("click_and_collect", "Click And Collect", 0.09),
)
CARGO_COMPANIES: tuple[int, ...] = (34, 35, 41, 52)
CLIENT_TYPES: tuple[tuple[str, float], ...] = (
    ("default", 0.55),
    ("ios", 0.2),
    ("android", 0.25),
)


# --- channels -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChannelSpec:
    """A sales channel of the simulated shop."""

    id: int
    name: str
    channel_type: str
    currency: str
    country_codes: tuple[str, ...]
    share: float
    price_factor: float  # list prices in this currency = TRY prices / factor
    vat: tuple[int, int]  # tax rate in hundredths of a percent: (clothing, other)
    language: str


CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec(1, "Web Shop TR", "web", "try", ("tr",), 0.50, 1.0, (1000, 2000), "tr"),
    ChannelSpec(2, "Mobile App TR", "mobile", "try", ("tr",), 0.30, 1.0, (1000, 2000), "tr"),
    ChannelSpec(
        3, "EU Shop", "web", "eur", ("de", "fr", "nl", "it"), 0.12, 36.0, (1900, 1900), "en"
    ),
    ChannelSpec(4, "US Shop", "web", "usd", ("us",), 0.08, 33.0, (800, 800), "en"),
)


# --- places ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Country:
    """A country of the gazetteer."""

    pk: int
    code: str
    name: str
    latitude: str
    longitude: str


COUNTRIES: tuple[Country, ...] = (
    Country(1, "tr", "Türkiye", "39.05625600", "35.30207500"),
    Country(2, "de", "Germany", "51.16569100", "10.45152600"),
    Country(3, "fr", "France", "46.22763800", "2.21374900"),
    Country(4, "nl", "Netherlands", "52.13263300", "5.29126600"),
    Country(5, "it", "Italy", "41.87194000", "12.56738000"),
    Country(6, "us", "United States", "37.09024000", "-95.71289100"),
)

# (country code, city, latitude, longitude, population weight, townships, postcode prefix)
CITY_ROWS: tuple[tuple[str, str, float, float, float, tuple[str, ...], str], ...] = (
    (
        "tr",
        "İSTANBUL",
        41.0082,
        28.9784,
        40.0,
        ("Kadıköy", "Beşiktaş", "Üsküdar", "Şişli", "Bakırköy", "Ataşehir", "Esenyurt"),
        "34",
    ),
    (
        "tr",
        "ANKARA",
        39.9334,
        32.8597,
        14.0,
        ("Çankaya", "Keçiören", "Yenimahalle", "Etimesgut"),
        "06",
    ),
    ("tr", "İZMİR", 38.4237, 27.1428, 11.0, ("Karşıyaka", "Bornova", "Konak", "Buca"), "35"),
    ("tr", "BURSA", 40.1826, 29.0665, 7.0, ("Nilüfer", "Osmangazi", "Yıldırım"), "16"),
    ("tr", "ANTALYA", 36.8969, 30.7133, 6.0, ("Muratpaşa", "Konyaaltı", "Kepez"), "07"),
    ("tr", "ADANA", 37.0000, 35.3213, 5.0, ("Seyhan", "Çukurova"), "01"),
    ("tr", "KONYA", 37.8746, 32.4932, 5.0, ("Selçuklu", "Meram"), "42"),
    ("tr", "GAZİANTEP", 37.0662, 37.3833, 4.0, ("Şahinbey", "Şehitkamil"), "27"),
    ("tr", "KOCAELİ", 40.8533, 29.8815, 4.0, ("İzmit", "Gebze"), "41"),
    ("tr", "ESKİŞEHİR", 39.7767, 30.5206, 3.0, ("Tepebaşı", "Odunpazarı"), "26"),
    ("de", "BERLIN", 52.5200, 13.4050, 10.0, ("Mitte", "Kreuzberg", "Neukölln"), "10"),
    ("de", "MÜNCHEN", 48.1351, 11.5820, 6.0, ("Altstadt", "Schwabing"), "80"),
    ("fr", "PARIS", 48.8566, 2.3522, 10.0, ("1er Arrondissement", "11e Arrondissement"), "75"),
    ("nl", "AMSTERDAM", 52.3676, 4.9041, 6.0, ("Centrum", "Oost"), "10"),
    ("it", "MILANO", 45.4642, 9.1900, 6.0, ("20158 Milano MI", "20121 Milano MI"), "20"),
    ("us", "NEW YORK", 40.7128, -74.0060, 10.0, ("Manhattan", "Brooklyn", "Queens"), "10"),
    ("us", "LOS ANGELES", 34.0522, -118.2437, 7.0, ("Hollywood", "Downtown"), "90"),
    ("us", "CHICAGO", 41.8781, -87.6298, 5.0, ("Loop", "Lincoln Park"), "60"),
)
DISTRICT_NAMES: tuple[str, ...] = ("Cumhuriyet", "Atatürk", "Merkez", "Fatih", "Yeni", "Hürriyet")
STREET_NAMES: dict[str, tuple[str, ...]] = {
    "tr": (
        "Bağdat Caddesi",
        "İstiklal Caddesi",
        "Atatürk Bulvarı",
        "Gül Sokak",
        "Lale Sokak",
        "Çamlık Sokak",
        "Cumhuriyet Caddesi",
        "Menekşe Sokak",
    ),
    "de": ("Hauptstraße", "Bahnhofstraße", "Gartenweg", "Schillerstraße"),
    "fr": ("Rue de Rivoli", "Rue du Bac", "Avenue Victor Hugo"),
    "nl": ("Prinsengracht", "Damrak", "Kalverstraat"),
    "it": ("Viale Edoardo Jenner", "Via Roma", "Corso Buenos Aires"),
    "us": ("Main Street", "Oak Avenue", "Maple Drive", "Broadway"),
}


@dataclass(frozen=True)
class Place:
    """One district of the gazetteer, with its township, city and country."""

    country: Country
    city_pk: int
    city: str
    city_lat: str
    city_lon: str
    township_pk: int
    township: str
    district_pk: int
    district: str
    lat: str
    lon: str
    postcode: str
    weight: float


def _coordinate(value: float) -> str:
    return f"{value:.8f}"


def build_places() -> tuple[Place, ...]:
    """Expand the city table into districts, each with stable primary keys."""
    by_code = {c.code: c for c in COUNTRIES}
    places: list[Place] = []
    township_pk, district_pk = 1, 1
    for city_pk, (code, city, lat, lon, weight, townships, prefix) in enumerate(CITY_ROWS, 1):
        for t_index, township in enumerate(townships):
            for d_index, district in enumerate(DISTRICT_NAMES[:3]):
                dlat = lat + 0.011 * (t_index + 1) - 0.004 * d_index
                dlon = lon - 0.009 * (t_index + 1) + 0.005 * d_index
                places.append(
                    Place(
                        country=by_code[code],
                        city_pk=city_pk,
                        city=city,
                        city_lat=_coordinate(lat),
                        city_lon=_coordinate(lon),
                        township_pk=township_pk,
                        township=township,
                        district_pk=district_pk,
                        district=f"{district} Mah."
                        if code == "tr"
                        else f"{district} {d_index + 1}",
                        lat=_coordinate(dlat),
                        lon=_coordinate(dlon),
                        postcode=f"{prefix}{100 + 10 * t_index + d_index:03d}",
                        weight=weight / (len(townships) * 3),
                    )
                )
                district_pk += 1
            township_pk += 1
    return tuple(places)


# --- people ---------------------------------------------------------------------------------
FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "tr": (
        "Ayşe",
        "Fatma",
        "Zeynep",
        "Elif",
        "Emine",
        "Merve",
        "Mehmet",
        "Mustafa",
        "Ahmet",
        "Ali",
        "Hüseyin",
        "Emre",
        "Burak",
        "Deniz",
        "Can",
        "Ece",
        "Selin",
        "Kerem",
    ),
    "en": (
        "Anna",
        "Emma",
        "Sophie",
        "Lucas",
        "Noah",
        "Liam",
        "Olivia",
        "Mia",
        "Leon",
        "Paul",
        "Marie",
        "James",
        "Chloe",
        "Luca",
        "Giulia",
        "Daan",
    ),
}
LAST_NAMES: dict[str, tuple[str, ...]] = {
    "tr": (
        "Yılmaz",
        "Kaya",
        "Demir",
        "Şahin",
        "Çelik",
        "Yıldız",
        "Yıldırım",
        "Öztürk",
        "Aydın",
        "Özdemir",
        "Arslan",
        "Doğan",
        "Kılıç",
        "Aslan",
        "Koç",
    ),
    "en": (
        "Müller",
        "Schmidt",
        "Martin",
        "Bernard",
        "de Jong",
        "Rossi",
        "Smith",
        "Johnson",
        "Williams",
        "Brown",
        "Jones",
        "Garcia",
        "Bianchi",
        "Dubois",
    ),
}

# --- products -------------------------------------------------------------------------------
# (category, base TRY list price in lira, clothing VAT class?, typical names)
CATEGORIES: tuple[tuple[str, int, bool, tuple[str, ...]], ...] = (
    (
        "T-Shirt",
        450,
        True,
        ("Organic Cotton Crew Neck T-Shirt", "Oversize Graphic T-Shirt", "Slim Fit Polo T-Shirt"),
    ),
    ("Shirt", 900, True, ("Oxford Button-Down Shirt", "Linen Summer Shirt")),
    ("Jeans", 1200, True, ("Straight Leg Jeans", "Skinny Jeans", "Mom Fit Jeans")),
    ("Dress", 1500, True, ("Floral Midi Dress", "Knitted Maxi Dress")),
    ("Sweatshirt", 1000, True, ("Hooded Sweatshirt", "Crew Neck Sweatshirt")),
    ("Jacket", 2800, True, ("Denim Jacket", "Puffer Jacket", "Trench Coat")),
    ("Sneakers", 2200, False, ("Leather Sneakers", "Running Sneakers")),
    ("Bag", 1300, False, ("Canvas Tote Bag", "Leather Shoulder Bag")),
    ("Hat", 350, False, ("Cotton Cap", "Wool Beanie")),
)
COLORS: tuple[str, ...] = ("Black", "White", "Navy", "Beige", "Red", "Green", "Grey")
SIZES: tuple[str, ...] = ("XS", "S", "M", "L", "XL")
MATERIALS: tuple[str, ...] = ("Cotton", "Linen", "Denim", "Polyester", "Leather", "Wool")
