"""The segment benchmark's data: a deterministic workspace of people and what they did, written as
PostgreSQL ``COPY`` text straight from a generator (see bench/segments.py, which loads it).

One pseudo-random stream (``--seed``) decides everything, person by person, so the same seed and
scale always give the same rows. Shapes are those segment queries care about:

- **people** with realistic, skewed attributes: countries weighted like a US-led consumer app (US
  regions by population, so "Mississippi" is about 0.9 % of Americans), ages 13-80, coordinates
  around their city, platform and app version (recent releases most common, some pre-releases),
  first-touch UTM for four in ten, subscription states, and custom attributes (plan, loyalty
  points, favourite categories, beta tester);
- **behaviour over ~6 months with a long tail**: a person's number of sessions follows a Pareto law
  (most people visit a few times, a few visit daily); people sign up over time and many stop coming
  back (so lifecycle stages spread out); each session is a ``$session_started`` event (as the
  intake records), an ``Application Opened`` (mobile) or a page view (web), then a few activity
  events drawn from a weighted list with a long tail of 300 rare event names;
- **purchases**: each ``Order Completed`` event has one to three product lines (500 products with
  skewed popularity, prices by product, currency by country).

Context is kept to a few fields per event (SDKs send ~1 KB): segment queries never read it, and a
smaller table keeps generation to minutes.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

# The benchmark's "now": events run up to it. A fixed instant (not the wall clock) keeps the data and
# every relative window ("last 30 days") identical between runs. Mid-afternoon, so windows start
# inside a day and the boundary-day recount is exercised.
NOW = datetime(2026, 6, 30, 15, 30, tzinfo=UTC)
HISTORY_DAYS = 182
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOW_S = int((NOW - EPOCH).total_seconds())
START_S = NOW_S - HISTORY_DAYS * 86400

SESSION_STARTED = "$session_started"
ORDER_COMPLETED = "Order Completed"

PROFILE_COLUMNS = (
    "id", "workspace_id", "external_id", "first_name", "last_name", "email", "phone", "gender", "date_of_birth",
    "language", "locale", "country", "region", "city", "time_zone", "latitude", "longitude", "last_ip",
    "first_seen", "last_seen", "session_count", "app_version", "platform",
    "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term",
    "email_subscription", "email_subscription_changed_at", "push_subscription", "push_subscription_changed_at",
    "sms_subscription", "sms_subscription_changed_at", "random_bucket", "custom_attributes", "created_at", "updated_at",
)  # fmt: skip
EVENT_COLUMNS = (
    "id", "workspace_id", "profile_id", "app_id", "type", "name", "properties", "context", "message_id",
    "timestamp", "received_at",
)  # fmt: skip
PURCHASE_COLUMNS = (
    "workspace_id",
    "profile_id",
    "event_id",
    "product_id",
    "price",
    "currency",
    "quantity",
    "timestamp",
)
DEVICE_COLUMNS = (
    "workspace_id", "profile_id", "app_id", "device_id", "platform", "manufacturer", "model", "os_name", "os_version",
    "app_version", "locale", "push_provider", "push_token", "push_enabled", "push_disabled_reason",
    "ad_tracking_enabled", "first_seen", "last_seen",
)  # fmt: skip
NULL = "\\N"


# --- weighted choices ------------------------------------------------------------------------------


class Weighted:
    """Draw from ``items`` with ``weights`` by bisecting cumulative weights (faster than random.choices
    for one draw at a time)."""

    def __init__(self, items: Sequence[object], weights: Sequence[float]) -> None:
        self.items = list(items)
        self.cumulative: list[float] = []
        total = 0.0
        for weight in weights:
            total += weight
            self.cumulative.append(total)
        self.total = total

    def draw(self, rng: random.Random) -> object:
        return self.items[bisect.bisect_right(self.cumulative, rng.random() * self.total)]


def zipf_weights(n: int, exponent: float = 1.1) -> list[float]:
    return [1.0 / (rank**exponent) for rank in range(1, n + 1)]


# --- where people are ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    country: str
    region: str
    city: str
    latitude: float
    longitude: float
    time_zone: str
    language: str
    currency: str


def _places() -> tuple[list[Place], list[float]]:
    us = [
        # region, city, lat, lon, time zone, population weight (millions)
        ("California", "Los Angeles", 34.05, -118.24, "America/Los_Angeles", 39.0),
        ("Texas", "Houston", 29.76, -95.37, "America/Chicago", 30.0),
        ("Florida", "Miami", 25.76, -80.19, "America/New_York", 22.0),
        ("New York", "New York", 40.71, -74.01, "America/New_York", 19.7),
        ("Pennsylvania", "Philadelphia", 39.95, -75.17, "America/New_York", 13.0),
        ("Illinois", "Chicago", 41.88, -87.63, "America/Chicago", 12.5),
        ("Ohio", "Columbus", 39.96, -83.00, "America/New_York", 11.8),
        ("Georgia", "Atlanta", 33.75, -84.39, "America/New_York", 11.0),
        ("North Carolina", "Charlotte", 35.23, -80.84, "America/New_York", 10.7),
        ("Michigan", "Detroit", 42.33, -83.05, "America/Detroit", 10.0),
        ("Washington", "Seattle", 47.61, -122.33, "America/Los_Angeles", 7.8),
        ("Arizona", "Phoenix", 33.45, -112.07, "America/Phoenix", 7.4),
        ("Massachusetts", "Boston", 42.36, -71.06, "America/New_York", 7.0),
        ("Colorado", "Denver", 39.74, -104.99, "America/Denver", 5.9),
        ("Louisiana", "New Orleans", 29.95, -90.07, "America/Chicago", 4.6),
        ("Alabama", "Birmingham", 33.52, -86.80, "America/Chicago", 5.1),
        ("Mississippi", "Jackson", 32.30, -90.18, "America/Chicago", 2.9),
        ("Tennessee", "Nashville", 36.16, -86.78, "America/Chicago", 7.1),
        ("Oregon", "Portland", 45.52, -122.68, "America/Los_Angeles", 4.2),
        ("Nevada", "Las Vegas", 36.17, -115.14, "America/Los_Angeles", 3.2),
    ]
    world = [
        ("GB", "England", "London", 51.51, -0.13, "Europe/London", "en", "GBP", 8.0),
        ("GB", "Scotland", "Glasgow", 55.86, -4.25, "Europe/London", "en", "GBP", 1.0),
        ("DE", "Berlin", "Berlin", 52.52, 13.40, "Europe/Berlin", "de", "EUR", 3.0),
        ("DE", "Bavaria", "Munich", 48.14, 11.58, "Europe/Berlin", "de", "EUR", 3.0),
        ("FR", "Île-de-France", "Paris", 48.86, 2.35, "Europe/Paris", "fr", "EUR", 4.0),
        ("FR", "Auvergne-Rhône-Alpes", "Lyon", 45.76, 4.84, "Europe/Paris", "fr", "EUR", 1.5),
        ("ES", "Madrid", "Madrid", 40.42, -3.70, "Europe/Madrid", "es", "EUR", 2.5),
        ("CA", "Ontario", "Toronto", 43.65, -79.38, "America/Toronto", "en", "CAD", 3.5),
        ("CA", "Quebec", "Montreal", 45.50, -73.57, "America/Toronto", "fr", "CAD", 1.5),
        ("BR", "São Paulo", "São Paulo", -23.55, -46.63, "America/Sao_Paulo", "pt", "BRL", 5.0),
        ("MX", "Mexico City", "Mexico City", 19.43, -99.13, "America/Mexico_City", "es", "MXN", 4.0),
        ("IN", "Maharashtra", "Mumbai", 19.08, 72.88, "Asia/Kolkata", "en", "INR", 5.0),
        ("JP", "Tokyo", "Tokyo", 35.68, 139.69, "Asia/Tokyo", "ja", "JPY", 3.0),
        ("AU", "New South Wales", "Sydney", -33.87, 151.21, "Australia/Sydney", "en", "AUD", 2.0),
    ]
    places = [Place("US", r, c, lat, lon, tz, "en", "USD") for r, c, lat, lon, tz, _ in us]
    us_total = sum(w for *_, w in us)
    # Americans are 45 % of everyone, spread over their regions by population.
    weights = [45.0 * w / us_total for *_, w in us]
    world_total = sum(w for *_, w in world)
    for country, region, city, lat, lon, tz, language, currency, weight in world:
        places.append(Place(country, region, city, lat, lon, tz, language, currency))
        weights.append(55.0 * weight / world_total)
    return places, weights


PLACES, PLACE_WEIGHTS = _places()

FIRST_NAMES = (  # noqa: SIM905 - a list literal of 36 names would be 36 lines
    "Emma Liam Olivia Noah Ava Lucas Mia Hugo Léa Yuki Aarav Sofia Mateo Chloé Ines Jonas Amara Kai Zoé Omar Priya "
    "Elif Wei Nora James Grace Ethan Lily Mason Chloe Logan Harper Jack Ella Leo Aria"
).split()
LAST_NAMES = (  # noqa: SIM905
    "Martin Smith García Müller Rossi Dubois Kowalski Tanaka Nguyen Silva Johnson Brown Williams Jones Miller Davis "
    "Wilson Moore Taylor Anderson Thomas Jackson White Harris Clark Lewis Young Walker Hall Allen"
).split()
GENDERS = Weighted(["female", "male", "other", "prefer_not_to_say", ""], [44, 44, 2, 2, 8])
PLATFORMS = Weighted(["ios", "android", "web"], [40, 35, 25])
IOS_MODELS = ("iPhone15,2", "iPhone14,7", "iPhone16,1", "iPhone13,2")
ANDROID_MODELS = ("Pixel 8", "SM-S911B", "SM-A546B", "moto g54")

# Releases, oldest first: recent ones are the most common (people update), and a few run betas.
RELEASES = [f"3.{minor}.{patch}" for minor in range(0, 10) for patch in (0, 1)] + [
    f"4.{minor}.{patch}" for minor in range(0, 13) for patch in (0, 1, 2)
]
RELEASE_WEIGHTS = [math.exp(index / 9) for index in range(len(RELEASES))]
VERSIONS = Weighted([*RELEASES, "4.13.0-beta.1", "4.13.0-beta.2"], [*RELEASE_WEIGHTS, 40.0, 60.0])

UTM_SOURCES = Weighted(
    [
        ("facebook", "paid_social"), ("instagram", "paid_social"), ("tiktok", "social"), ("twitter", "social"),
        ("google", "cpc"), ("bing", "cpc"), ("newsletter", "email"), ("partner-blog", "referral"),
        ("appstore", "organic"),
    ],
    [22, 15, 12, 4, 25, 3, 10, 5, 4],
)  # fmt: skip
UTM_CAMPAIGNS = ("spring_sale", "summer_launch", "brand", "retargeting", "back_to_school", "welcome")
SUBSCRIPTION_STATES = Weighted(["subscribed", "opted_in", "unsubscribed"], [60, 28, 12])
PLANS = Weighted(["free", "plus", "pro"], [70, 20, 10])
CATEGORIES = ("shoes", "shirts", "jackets", "bags", "watches", "books", "games", "toys", "kitchen", "garden", "beauty")
CATEGORY_WEIGHTS = zipf_weights(len(CATEGORIES), 0.8)
CATEGORY_DRAW = Weighted(CATEGORIES, CATEGORY_WEIGHTS)

# Products: id, category, price; popularity follows a Zipf law.
PRODUCT_COUNT = 500


@dataclass(frozen=True)
class Product:
    sku: str
    category: str
    price: str
    viewed_json: str  # the properties of a Product Viewed / Added event, pre-rendered


def _products() -> list[Product]:
    rng = random.Random(20260630)
    products = []
    for n in range(PRODUCT_COUNT):
        category = str(CATEGORY_DRAW.draw(rng))
        price = f"{rng.choice([4.99, 9.99, 14.99, 19.99, 29.99, 39.99, 59.99, 89.99, 129.0, 249.0]):.2f}"
        sku = f"sku-{n + 1:04d}"
        viewed = f'{{"price": {price}, "category": "{category}", "product_id": "{sku}"}}'
        products.append(Product(sku, category, price, viewed))
    return products


PRODUCTS = _products()
PRODUCT_DRAW = Weighted(range(PRODUCT_COUNT), zipf_weights(PRODUCT_COUNT, 1.0))
SEARCHES = ("red shoes", "rain jacket", "gift for dad", "running", "wallet", "lego", "cookbook", "sunglasses")

# What people do in a session after opening the app: weights per event, with a long tail of 300 rare
# event names (feature usage) sharing a tenth of the activity.
TAIL_EVENTS = [f"Feature {n} Used" for n in range(1, 301)]
ACTIVITY = Weighted(
    ["Product Viewed", "Search", "Product Added", "Wishlist Added", "Checkout Started", ORDER_COMPLETED,
     "Coupon Applied", "Review Written", "Product Shared", *TAIL_EVENTS],
    [40, 15, 12, 4, 5, 3.5, 2, 1, 2, *(10 * w / sum(zipf_weights(300)) for w in zipf_weights(300))],
)  # fmt: skip
MEAN_ACTIVITY_PER_SESSION = 1.6


# --- time -------------------------------------------------------------------------------------------

_DAY_PREFIX: dict[int, str] = {}
_TIME_OF_DAY = [f" {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00" for s in range(86400)]


def ts(seconds: int) -> str:
    """COPY text for an aware UTC time given in epoch seconds (tables instead of datetime formatting:
    this runs tens of millions of times)."""
    day, second = divmod(seconds, 86400)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = _DAY_PREFIX[day] = (EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")
    return prefix + _TIME_OF_DAY[second]


# --- the generator ----------------------------------------------------------------------------------


@dataclass
class Counts:
    profiles: int = 0
    events: int = 0
    purchases: int = 0
    devices: int = 0
    by_name: dict[str, int] = field(default_factory=dict)


@dataclass
class Chunk:
    """COPY text for a run of people: one block per table."""

    profiles: str
    events: str
    purchases: str
    devices: str


@dataclass
class Generator:
    """Yields ``Chunk``s of COPY text for ``profiles`` people and about ``events`` events.

    Profile ids are 1..profiles and event ids 1..n, assigned here, so purchases can name their event
    without a round trip (the loader moves the id sequences past them afterwards)."""

    seed: int
    profiles: int
    events: int
    workspace_id: int
    app_ids: dict[str, int]
    chunk_size: int = 5000
    counts: Counts = field(default_factory=Counts)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._event_id = 0
        self._session_counts = self._draw_session_counts()

    def _draw_session_counts(self) -> list[int]:
        """Sessions per person: none for one in ten (imported, never active), else a Pareto law with a
        cap, scaled so the whole workspace makes about ``events`` events."""
        rng = random.Random(self.seed * 7919 + 1)
        raw = [0.0 if rng.random() < 0.1 else min(1500.0, rng.paretovariate(1.25)) for _ in range(self.profiles)]
        # $session_started, then Application Opened (mobile) or a page view (web), then the activity.
        per_session = 2 + MEAN_ACTIVITY_PER_SESSION
        wanted_sessions = self.events / per_session
        factor = wanted_sessions / max(1.0, sum(raw))
        counts = []
        for value in raw:
            scaled = value * factor
            whole = int(scaled)
            counts.append(whole + (1 if rng.random() < scaled - whole else 0) if value else 0)
        return counts

    def __iter__(self) -> Iterator[Chunk]:
        profiles: list[str] = []
        events: list[str] = []
        purchases: list[str] = []
        devices: list[str] = []
        for index in range(self.profiles):
            self._person(index + 1, self._session_counts[index], profiles, events, purchases, devices)
            if len(profiles) >= self.chunk_size:
                yield Chunk("".join(profiles), "".join(events), "".join(purchases), "".join(devices))
                profiles, events, purchases, devices = [], [], [], []
        if profiles:
            yield Chunk("".join(profiles), "".join(events), "".join(purchases), "".join(devices))

    def _person(
        self,
        pid: int,
        sessions: int,
        profiles: list[str],
        events: list[str],
        purchases: list[str],
        devices: list[str],
    ) -> None:
        rng = self._rng
        ws = self.workspace_id
        place: Place = PLACES[bisect.bisect_right(_PLACE_CUMULATIVE, rng.random() * _PLACE_TOTAL)]
        platform = str(PLATFORMS.draw(rng))
        app_id = self.app_ids[platform]
        version = "" if platform == "web" else str(VERSIONS.draw(rng))

        # When they signed up and the span they were active in. A third signed up before the history
        # starts; half of everyone stops coming back after a while.
        if rng.random() < 0.35:
            signup = START_S - rng.randrange(1, 540 * 86400)
        else:
            signup = START_S + int(rng.random() ** 0.8 * (NOW_S - START_S))
        active_from = max(signup, START_S)
        if rng.random() < 0.5:
            active_to = NOW_S
        else:
            active_to = min(NOW_S, active_from + int(rng.expovariate(1 / (45 * 86400))) + 3600)
        span = max(3600, active_to - active_from)

        session_starts = sorted(active_from + rng.randrange(span) for _ in range(sessions))
        first_seen = last_seen = None
        context = _CONTEXTS[platform].replace("VERSION", version)
        currency = place.currency
        name_counts = self.counts.by_name
        for start in session_starts:
            t = start
            self._event_id += 1
            events.append(_event_row(self._event_id, ws, pid, app_id, "track", SESSION_STARTED, "{}", context, t))
            name_counts[SESSION_STARTED] = name_counts.get(SESSION_STARTED, 0) + 1
            self._event_id += 1
            if platform == "web":
                events.append(_event_row(self._event_id, ws, pid, app_id, "page", "Home", '{"path": "/"}', context, t))
            else:
                events.append(
                    _event_row(self._event_id, ws, pid, app_id, "track", "Application Opened", "{}", context, t)
                )
            activity = int(rng.expovariate(1 / MEAN_ACTIVITY_PER_SESSION) + 0.5)
            for _ in range(activity):
                t += rng.randrange(5, 240)
                name = str(ACTIVITY.draw(rng))
                name_counts[name] = name_counts.get(name, 0) + 1
                self._event_id += 1
                event_id = self._event_id
                if name in ("Product Viewed", "Product Added", "Wishlist Added", "Product Shared"):
                    properties = PRODUCTS[int(str(PRODUCT_DRAW.draw(rng)))].viewed_json
                elif name == "Search":
                    properties = f'{{"query": "{SEARCHES[rng.randrange(len(SEARCHES))]}"}}'
                elif name == ORDER_COMPLETED:
                    lines = 1 + (rng.random() < 0.3) + (rng.random() < 0.1)
                    revenue = 0.0
                    stamp = ts(t)
                    for _ in range(lines):
                        product = PRODUCTS[int(str(PRODUCT_DRAW.draw(rng)))]
                        quantity = 1 if rng.random() < 0.8 else rng.randrange(2, 4)
                        revenue += float(product.price) * quantity
                        purchases.append(
                            f"{ws}\t{pid}\t{event_id}\t{product.sku}\t{product.price}\t{currency}\t{quantity}\t{stamp}\n"
                        )
                        self.counts.purchases += 1
                    properties = f'{{"order_id": "o-{event_id}", "revenue": {revenue:.2f}, "currency": "{currency}"}}'
                else:
                    properties = "{}"
                events.append(_event_row(event_id, ws, pid, app_id, "track", name, properties, context, t))
            first_seen = first_seen if first_seen is not None else start
            last_seen = t
        self.counts.events = self._event_id

        # Who they are.
        first = FIRST_NAMES[rng.randrange(len(FIRST_NAMES))]
        last = LAST_NAMES[rng.randrange(len(LAST_NAMES))]
        email = f"{_ascii(first)}.{_ascii(last)}.{pid}@example.com".lower() if rng.random() < 0.85 else ""
        phone = f"+1555{pid % 10_000_000:07d}" if place.country == "US" and rng.random() < 0.5 else ""
        if rng.random() < 0.75:
            # Ages 13-80, most in their twenties and thirties.
            age_days = int(min(80, max(13, rng.gauss(32, 12))) * 365.25) + rng.randrange(365)
            dob = (NOW.date() - timedelta(days=age_days)).isoformat()
        else:
            dob = NULL
        if rng.random() < 0.7:
            latitude = f"{place.latitude + rng.gauss(0, 0.25):.5f}"
            longitude = f"{place.longitude + rng.gauss(0, 0.25):.5f}"
        else:
            latitude = longitude = NULL
        if rng.random() < 0.4:
            source, medium = UTM_SOURCES.draw(rng)  # type: ignore[misc]
            campaign = UTM_CAMPAIGNS[rng.randrange(len(UTM_CAMPAIGNS))]
        else:
            source = medium = campaign = ""
        email_state = str(SUBSCRIPTION_STATES.draw(rng))
        push_state = str(SUBSCRIPTION_STATES.draw(rng))
        sms_state = "subscribed" if rng.random() < 0.8 else "unsubscribed"
        changed = ts(signup + rng.randrange(max(1, NOW_S - signup))) if email_state != "subscribed" else NULL
        favourites = sorted({str(CATEGORY_DRAW.draw(rng)) for _ in range(rng.randrange(0, 4))})
        custom = (
            f'{{"plan": "{PLANS.draw(rng)}", "loyalty_points": {int(rng.expovariate(1 / 400))}, '
            f'"favorite_categories": [{", ".join(f"{chr(34)}{c}{chr(34)}" for c in favourites)}], '
            f'"beta_tester": {"true" if version.endswith(("beta.1", "beta.2")) else "false"}}}'
        )
        created = ts(signup)
        profiles.append(
            "\t".join(
                (
                    str(pid),
                    str(ws),
                    f"u-{pid}",
                    first,
                    last,
                    email,
                    phone,
                    str(GENDERS.draw(rng)),
                    dob,
                    place.language,
                    f"{place.language}-{place.country}",
                    place.country,
                    place.region,
                    place.city,
                    place.time_zone,
                    latitude,
                    longitude,
                    NULL,
                    ts(first_seen) if first_seen is not None else NULL,
                    ts(last_seen) if last_seen is not None else NULL,
                    str(sessions),
                    version,
                    platform,
                    source,
                    medium,
                    campaign,
                    "",
                    "",
                    email_state,
                    changed,
                    push_state,
                    NULL,
                    sms_state,
                    NULL,
                    str(rng.randrange(10_000)),
                    custom,
                    created,
                    created,
                )
            )
            + "\n"
        )
        self.counts.profiles += 1

        if platform != "web" and sessions and rng.random() < 0.85:
            enabled = push_state != "unsubscribed" and rng.random() < 0.7
            model = (IOS_MODELS if platform == "ios" else ANDROID_MODELS)[pid % 4]
            provider = "apns" if platform == "ios" else "fcm"
            devices.append(
                "\t".join(
                    (
                        str(ws),
                        str(pid),
                        str(app_id),
                        f"d-{pid}",
                        platform,
                        "Apple" if platform == "ios" else "Google",
                        model,
                        "iOS" if platform == "ios" else "Android",
                        "17.4" if platform == "ios" else "14",
                        version,
                        f"{place.language}-{place.country}",
                        provider,
                        f"tok-{pid}" if enabled else "",
                        "t" if enabled else "f",
                        "",
                        NULL,
                        ts(session_starts[0]),
                        ts(last_seen or session_starts[-1]),
                    )
                )
                + "\n"
            )
            self.counts.devices += 1


_PLACE_CUMULATIVE = Weighted(PLACES, PLACE_WEIGHTS).cumulative
_PLACE_TOTAL = _PLACE_CUMULATIVE[-1]
_CONTEXTS = {
    "ios": '{"os": {"name": "iOS"}, "app": {"version": "VERSION"}, "library": {"name": "analytics-ios"}}',
    "android": '{"os": {"name": "Android"}, "app": {"version": "VERSION"}, "library": {"name": "analytics-android"}}',
    "web": '{"library": {"name": "analytics.js"}, "userAgent": "Mozilla/5.0"}',
}


def _event_row(
    event_id: int, ws: int, pid: int, app_id: int, type_: str, name: str, properties: str, context: str, t: int
) -> str:
    stamp = ts(t)
    return (
        f"{event_id}\t{ws}\t{pid}\t{app_id}\t{type_}\t{name}\t{properties}\t{context}"
        f"\tm{event_id:011d}\t{stamp}\t{stamp}\n"
    )


def _ascii(text: str) -> str:
    return text.encode("ascii", "ignore").decode() or "x"


def today() -> date:
    return NOW.date()
