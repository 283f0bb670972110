"""Intake benchmark: how many Segment-style events per second the production server stores, end to end.

It starts gunicorn serving ``config.wsgi`` against a fresh PostgreSQL database, posts ``/v1/batch``
requests of 100 realistic events (about 1 KB each, as the mobile and web SDKs send them) from
concurrent keep-alive clients for a bounded time, then prints events/s accepted and stored, request
latency percentiles, errors by status, where the CPU went (gunicorn workers, PostgreSQL backends, the
client itself), and, as the yardstick, the rows/s of a plain ``COPY`` of the same events into a copy of
the events table.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.ingest
    .venv/bin/python -m bench.ingest --duration 20 --worker-class sync,gthread   # compare worker classes
    .venv/bin/python -m bench.ingest --copy-only                                 # only the COPY yardstick

The event stream is deterministic (``--seed``): the same people, sessions, products and contexts every
run; only the message ids (unique per message) and ``sentAt`` (the time of sending) are stamped into the
pre-encoded bodies as they go out, so the client costs little next to the server it measures.
See docs/bench-ingest.md.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import datetime as dt
import gzip
import http.client
import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

from bench.common import (
    BASE_DIR,
    OUT_DIR,
    BenchError,
    CpuMeter,
    Gunicorn,
    Services,
    backing_services,
    check_loopback,
    database_name,
    django_env,
    drop_database,
    exit_cleanly_on_sigterm,
    fmt_int,
    log,
    migrate,
    own_cpu_seconds,
    percentile,
    postgres_pids,
    print_table,
    recreate_database,
    setup_django,
)

BATCH_PATH = "/v1/batch"
# Stamped per request into the pre-encoded bodies; neither string occurs in generated data.
MESSAGE_ID_PLACEHOLDER = "ffffffff-ffff-4fff-bfff-ffffffffffff"
SENT_AT_PLACEHOLDER = "1999-12-31T23:59:59.999Z"
TARGET_EVENTS_PER_SECOND = 10_000
TARGET_P99_MS = 250.0


# --- the people and what they do ------------------------------------------------------------------

FIRST_NAMES = [
    "Emma",
    "Liam",
    "Olivia",
    "Noah",
    "Ava",
    "Lucas",
    "Mia",
    "Hugo",
    "Léa",
    "Yuki",
    "Aarav",
    "Sofia",
    "Mateo",
    "Chloé",
    "Ines",
    "Jonas",
    "Amara",
    "Kai",
    "Zoé",
    "Omar",
    "Priya",
    "Elif",
    "Wei",
    "Nora",
]
LAST_NAMES = [
    "Martin",
    "Smith",
    "García",
    "Müller",
    "Rossi",
    "Dubois",
    "Kowalski",
    "Tanaka",
    "Nguyen",
    "Silva",
    "Johnson",
    "Bernard",
    "Novak",
    "Jensen",
    "Okafor",
    "Haddad",
    "Kim",
    "Patel",
    "Moreau",
    "Lopez",
]
PLACES = [  # city, region, country, time zone, locale, latitude, longitude, carrier
    ("San Francisco", "California", "US", "America/Los_Angeles", "en-US", 37.7749, -122.4194, "T-Mobile"),
    ("New York", "New York", "US", "America/New_York", "en-US", 40.7128, -74.0060, "Verizon"),
    ("London", "England", "GB", "Europe/London", "en-GB", 51.5072, -0.1276, "EE"),
    ("Paris", "Île-de-France", "FR", "Europe/Paris", "fr-FR", 48.8566, 2.3522, "Orange F"),
    ("Berlin", "Berlin", "DE", "Europe/Berlin", "de-DE", 52.5200, 13.4050, "Telekom.de"),
    ("Madrid", "Madrid", "ES", "Europe/Madrid", "es-ES", 40.4168, -3.7038, "Movistar"),
    ("São Paulo", "São Paulo", "BR", "America/Sao_Paulo", "pt-BR", -23.5505, -46.6333, "Vivo"),
    ("Tokyo", "Tokyo", "JP", "Asia/Tokyo", "ja-JP", 35.6762, 139.6503, "NTT DOCOMO"),
    ("Mumbai", "Maharashtra", "IN", "Asia/Kolkata", "en-IN", 19.0760, 72.8777, "Jio 4G"),
    ("Sydney", "New South Wales", "AU", "Australia/Sydney", "en-AU", -33.8688, 151.2093, "Telstra"),
]
IOS_DEVICES = [("Apple", "iPhone15,2"), ("Apple", "iPhone14,5"), ("Apple", "iPhone16,1"), ("Apple", "iPad13,4")]
ANDROID_DEVICES = [("samsung", "SM-S911B"), ("Google", "Pixel 8"), ("Xiaomi", "2201117TG"), ("OnePlus", "CPH2449")]
IOS_VERSIONS = ["16.7.8", "17.4.1", "17.5.1", "18.0"]
ANDROID_VERSIONS = ["12", "13", "14"]
BROWSERS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
]
SCREENS = ["Home", "Search", "Category", "Product Detail", "Cart", "Checkout", "Account", "Wishlist", "Orders"]
CATEGORIES = ["Shoes", "Outerwear", "Bags", "Accessories", "Denim", "Knitwear", "Sportswear", "Home"]
BRANDS = ["Northwind", "Aurora", "Fjällvik", "Maison Lune", "Kestrel", "Tidewater", "Orbit & Co"]
ADJECTIVES = ["Classic", "Vintage", "Ultralight", "Merino", "Waxed", "Recycled", "Slim", "Oversized", "Trail"]
NOUNS = ["Sneaker", "Parka", "Tote", "Beanie", "Jacket", "Backpack", "Hoodie", "Chino", "Scarf", "Boot"]
CAMPAIGNS = [
    ("spring_sale", "google", "cpc", "running shoes", "ad_a"),
    ("newsletter_w12", "newsletter", "email", "", "hero_banner"),
    ("retarget_cart", "facebook", "paid_social", "", "carousel_2"),
]
CUSTOM_EVENTS = [
    "Wishlist Item Added",
    "Review Submitted",
    "Coupon Applied",
    "Push Notification Opened",
    "Video Played",
    "Article Shared",
    "Store Locator Used",
    "Size Guide Viewed",
]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class Product:
    product_id: str
    sku: str
    name: str
    brand: str
    category: str
    price: float
    variant: str

    def properties(self, *, quantity: int = 1, position: int | None = None) -> dict[str, Any]:
        props: dict[str, Any] = {
            "product_id": self.product_id,
            "sku": self.sku,
            "category": self.category,
            "name": self.name,
            "brand": self.brand,
            "variant": self.variant,
            "price": self.price,
            "quantity": quantity,
            "currency": "USD",
            "url": f"https://shop.example.com/p/{self.product_id}",
            "image_url": f"https://cdn.example.com/img/{self.sku}.jpg",
        }
        if position is not None:
            props["position"] = position
        return props


@dataclass
class Person:
    user_id: str | None  # None for anonymous visitors who never signed in
    anonymous_id: str
    platform: str  # ios, android or web
    context: dict[str, Any]
    traits: dict[str, Any]
    campaign: dict[str, str] | None


def make_catalog(rng: random.Random, size: int = 400) -> list[Product]:
    products = []
    for index in range(size):
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
        products.append(
            Product(
                product_id=f"prod_{index:05d}",
                sku=f"SKU-{rng.randrange(10**7):07d}",
                name=name,
                brand=rng.choice(BRANDS),
                category=rng.choice(CATEGORIES),
                price=round(rng.uniform(9, 320), 2),
                variant=rng.choice(["Black", "Navy", "Olive", "Sand", "S", "M", "L", "XL"]),
            )
        )
    return products


def make_person(rng: random.Random, index: int, *, identified: bool) -> Person:
    platform = rng.choices(["ios", "android", "web"], weights=[45, 35, 20])[0]
    city, region, country, tz, locale, lat, lon, carrier = rng.choice(PLACES)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    user_id = f"user_{rng.getrandbits(40):010x}{index:05d}" if identified else None
    anonymous_id = _uuid(rng)
    ip = f"{rng.randrange(11, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    context: dict[str, Any] = {"locale": locale, "timezone": tz, "ip": ip}
    if platform == "web":
        context.update(
            library={"name": "analytics.js", "version": "next-1.70.0"},
            userAgent=rng.choice(BROWSERS),
            screen={"width": 1440, "height": 900, "density": 2},
        )
    else:
        ios = platform == "ios"
        manufacturer, model = rng.choice(IOS_DEVICES if ios else ANDROID_DEVICES)
        build = rng.choice([5120, 5121, 5203])
        context.update(
            app={
                "name": "ShopMate",
                "version": f"5.{build % 1000 // 100}.{build % 10}",
                "build": str(build),
                "namespace": "com.example.shopmate",
            },
            device={
                "id": _uuid(rng),
                "advertisingId": _uuid(rng),
                "adTrackingEnabled": rng.random() < 0.4,
                "manufacturer": manufacturer,
                "model": model,
                "name": model.split(",")[0],
                "type": platform,
                "token": f"{rng.getrandbits(256):064x}" if rng.random() < 0.7 else None,
            },
            os={"name": "iOS" if ios else "Android", "version": rng.choice(IOS_VERSIONS if ios else ANDROID_VERSIONS)},
            library={"name": "analytics-ios" if ios else "analytics-android", "version": "4.1.8" if ios else "4.11.3"},
            network={"bluetooth": False, "carrier": carrier, "cellular": rng.random() < 0.4, "wifi": True},
            screen={"width": 390, "height": 844, "density": 3},
            location={
                "city": city,
                "country": country,
                "latitude": round(lat + rng.uniform(-0.1, 0.1), 4),
                "longitude": round(lon + rng.uniform(-0.1, 0.1), 4),
            },
        )
        if context["device"]["token"] is None:
            del context["device"]["token"]
    traits: dict[str, Any] = {}
    if identified:
        traits = {
            "email": f"{first.lower()}.{last.lower()}.{index}@example.com",
            "firstName": first,
            "lastName": last,
            "phone": f"+1415{rng.randrange(10**7):07d}",
            "createdAt": f"20{rng.randrange(19, 25)}-0{rng.randrange(1, 10)}-1{rng.randrange(10)}T08:00:00Z",
            "address": {"city": city, "state": region, "country": country},
            "plan": rng.choice(["free", "plus", "premium"]),
            "loyalty_points": rng.randrange(0, 5000),
            "favorite_category": rng.choice(CATEGORIES),
            "newsletter_opt_in": rng.random() < 0.6,
        }
    campaign = None
    if rng.random() < 0.25:
        name, source, medium, term, content = rng.choice(CAMPAIGNS)
        campaign = {"name": name, "source": source, "medium": medium, "term": term, "content": content}
    return Person(user_id, anonymous_id, platform, context, traits, campaign)


def make_population(rng: random.Random, *, users: int, anonymous: int) -> list[Person]:
    people = [make_person(rng, index, identified=True) for index in range(users)]
    people += [make_person(rng, users + index, identified=False) for index in range(anonymous)]
    return people


def iso_ms(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def session_messages(
    rng: random.Random, person: Person, catalog: Sequence[Product], start: dt.datetime
) -> list[dict[str, Any]]:
    """One visit: an app open or landing page, views, product interest, sometimes a purchase; an
    identify now and then for signed-in people. Timestamps a few seconds apart."""
    moment = start
    web = person.platform == "web"
    messages: list[dict[str, Any]] = []

    def add(kind: str, **fields: Any) -> None:
        nonlocal moment
        moment += dt.timedelta(milliseconds=rng.randrange(300, 20_000))
        context = dict(person.context)
        if person.campaign:
            context["campaign"] = person.campaign
        if person.traits:
            context["traits"] = {"email": person.traits["email"]}
        if web:
            page = fields.pop("_page", "Home")
            path = "/" + page.lower().replace(" ", "-")
            context["page"] = {
                "path": path,
                "referrer": "https://www.google.com/",
                "search": "",
                "title": f"{page} | Shop",
                "url": f"https://shop.example.com{path}",
            }
        fields.pop("_page", None)
        message: dict[str, Any] = {"type": kind}
        if person.user_id:
            message["userId"] = person.user_id
        message["anonymousId"] = person.anonymous_id
        message.update(fields)
        message.update(context=context, timestamp=iso_ms(moment), messageId=MESSAGE_ID_PLACEHOLDER, integrations={})
        messages.append(message)

    def view(screen: str, **properties: Any) -> None:
        if web:
            add("page", name=screen, properties={"title": f"{screen} | Shop", **properties}, _page=screen)
        else:
            add("screen", name=screen, properties=properties)

    if person.user_id and rng.random() < 0.15:
        add("identify", traits=person.traits)
    if web:
        view("Home")
    else:
        add(
            "track",
            event="Application Opened",
            properties={
                "from_background": rng.random() < 0.5,
                "build": person.context["app"]["build"],
                "version": person.context["app"]["version"],
            },
        )
    cart: list[Product] = []
    for _ in range(rng.randrange(2, 16)):
        roll = rng.random()
        product = rng.choice(catalog)
        if roll < 0.30:
            view(rng.choice(SCREENS))
        elif roll < 0.55:
            view("Product Detail", product_id=product.product_id)
            add("track", event="Product Viewed", properties=product.properties(), _page="Product Detail")
        elif roll < 0.65:
            cart.append(product)
            add(
                "track",
                event="Product Added",
                properties={
                    "cart_id": f"cart_{person.anonymous_id[:8]}",
                    **product.properties(quantity=rng.randrange(1, 3)),
                },
            )
        elif roll < 0.72:
            add("track", event="Products Searched", properties={"query": f"{product.category.lower()} {product.brand}"})
        elif roll < 0.78:
            add(
                "track",
                event="Product List Viewed",
                properties={
                    "list_id": f"{product.category.lower()}_top",
                    "category": product.category,
                    "products": [p.properties(position=i + 1) for i, p in enumerate(rng.sample(catalog, 3))],
                },
            )
        else:
            add(
                "track",
                event=rng.choice(CUSTOM_EVENTS),
                properties={
                    "product_id": product.product_id,
                    "source": rng.choice(["push", "home_feed", "search", "email"]),
                    "rating": rng.randrange(1, 6),
                    "experiment": "checkout_v2",
                    "variant": rng.choice("AB"),
                },
            )
    if cart and rng.random() < 0.35:
        add(
            "track",
            event="Checkout Started",
            properties={"value": round(sum(p.price for p in cart), 2), "currency": "USD"},
        )
        if rng.random() < 0.6:
            revenue = round(sum(p.price for p in cart), 2)
            add(
                "track",
                event="Order Completed",
                properties={
                    "order_id": f"ord_{rng.getrandbits(48):012x}",
                    "affiliation": "ShopMate",
                    "total": round(revenue + 4.99, 2),
                    "revenue": revenue,
                    "shipping": 4.99,
                    "tax": round(revenue * 0.08, 2),
                    "discount": 0,
                    "coupon": rng.choice(["", "SPRING10"]),
                    "currency": "USD",
                    "products": [p.properties(quantity=1, position=i + 1) for i, p in enumerate(cart)],
                },
            )
    return messages


@dataclass
class BatchTemplate:
    """A pre-encoded ``/v1/batch`` body with the byte offsets of its placeholders."""

    body: bytes
    id_offsets: list[int]
    sent_at_offset: int

    @classmethod
    def encode(cls, messages: list[dict[str, Any]]) -> BatchTemplate:
        body = json.dumps({"batch": messages, "sentAt": SENT_AT_PLACEHOLDER}, separators=(",", ":"), ensure_ascii=False)
        raw = body.encode()
        offsets, start, needle = [], 0, MESSAGE_ID_PLACEHOLDER.encode()
        while (found := raw.find(needle, start)) >= 0:
            offsets.append(found)
            start = found + len(needle)
        assert len(offsets) == len(messages), "a message id placeholder appears in generated data"
        return cls(raw, offsets, raw.rindex(SENT_AT_PLACEHOLDER.encode()))

    def render(self, *, id_prefix: bytes, first_seq: int, sent_at: bytes) -> bytes:
        """The body with unique message ids ``<prefix><seq as 12 hex digits>`` and ``sentAt`` stamped in."""
        buf = bytearray(self.body)
        for seq, offset in enumerate(self.id_offsets, start=first_seq):
            buf[offset : offset + 36] = b"%s%012x" % (id_prefix, seq)
        buf[self.sent_at_offset : self.sent_at_offset + 24] = sent_at
        return bytes(buf)


@dataclass
class Workload:
    templates: list[BatchTemplate]
    id_prefix: bytes
    batch_size: int
    people: list[Person]

    @property
    def mean_message_bytes(self) -> float:
        return sum(len(t.body) for t in self.templates) / (len(self.templates) * self.batch_size)

    def body(self, batch_number: int, sent_at: bytes) -> bytes:
        template = self.templates[batch_number % len(self.templates)]
        return template.render(id_prefix=self.id_prefix, first_seq=batch_number * self.batch_size, sent_at=sent_at)

    def type_mix(self) -> collections.Counter[str]:
        mix: collections.Counter[str] = collections.Counter()
        for template in self.templates:
            for message in json.loads(template.body)["batch"]:
                mix[message["type"] if message["type"] != "track" else "track: " + message["event"]] += 1
        return mix


def make_workload(
    *, seed: int, users: int, anonymous: int, batches: int, batch_size: int, now: dt.datetime | None = None
) -> Workload:
    """``batches`` distinct batch bodies of ``batch_size`` messages: sessions of people drawn with a
    long tail (a few are very active, most come now and then), cut into batches as a relay would."""
    rng = random.Random(seed)
    catalog = make_catalog(rng)
    people = make_population(rng, users=users, anonymous=anonymous)
    # A long tail of activity: person i is picked with weight 1/sqrt(i+1), so with the default sizes
    # about half the population shows up and the busiest 1% send about a tenth of the events.
    cumulative = list(itertools.accumulate((index + 1) ** -0.5 for index in range(len(people))))
    rng.shuffle(people)
    # Event times are the only thing not fixed by the seed: visits of the last hour before ``now``.
    now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    stream: list[dict[str, Any]] = []
    templates: list[BatchTemplate] = []
    while len(templates) < batches:
        while len(stream) < batch_size:
            person = rng.choices(people, cum_weights=cumulative)[0]
            start = now - dt.timedelta(seconds=rng.randrange(60, 3600))
            stream += session_messages(rng, person, catalog, start)
        templates.append(BatchTemplate.encode(stream[:batch_size]))
        del stream[:batch_size]
    prefix = str(uuid.UUID(int=rng.getrandbits(128), version=4))[:24].encode()
    return Workload(templates, prefix, batch_size, people)


# --- the load ----------------------------------------------------------------------------------------


def sent_at_now() -> bytes:
    return iso_ms(dt.datetime.now(dt.UTC)).encode()


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    samples: dict[str, str] = field(default_factory=dict)  # first body per non-200 status, for diagnosis
    batches: int = 0
    wall: float = 0.0
    client_cpu: float = 0.0

    def merge(self, other: LoadResult) -> None:
        self.latencies += other.latencies
        self.statuses.update(other.statuses)
        self.failures.update(other.failures)
        for key, value in other.samples.items():
            self.samples.setdefault(key, value)
        self.batches += other.batches

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)


def run_load(
    workload: Workload,
    *,
    address: tuple[str, int],
    write_key: str,
    concurrency: int,
    duration: float,
    counter: Iterator[int],
    max_batch: int,
    use_gzip: bool,
) -> LoadResult:
    """Post batches from ``concurrency`` threads, each on its own keep-alive connection, until
    ``duration`` seconds have passed or batch number ``max_batch`` is reached."""
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"Authorization": auth, "Content-Type": "application/json", "User-Agent": "engage-bench/1"}
    if use_gzip:
        headers["Content-Encoding"] = "gzip"
    deadline = time.monotonic() + duration
    results = [LoadResult() for _ in range(concurrency)]

    def client(result: LoadResult) -> None:
        conn = http.client.HTTPConnection(*address, timeout=30)
        try:
            while time.monotonic() < deadline and (number := next(counter)) < max_batch:
                body = workload.body(number, sent_at_now())
                if use_gzip:
                    body = gzip.compress(body, compresslevel=1, mtime=0)
                result.batches += 1
                started = time.perf_counter()
                try:
                    conn.request("POST", BATCH_PATH, body, headers)
                    response = conn.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    result.failures[type(exc).__name__] += 1
                    conn.close()  # reconnects on the next request
                    continue
                result.latencies.append(time.perf_counter() - started)
                result.statuses[response.status] += 1
                if response.status != 200:
                    result.samples.setdefault(str(response.status), data[:300].decode(errors="replace"))
        finally:
            conn.close()

    cpu_before, started = own_cpu_seconds(), time.perf_counter()
    threads = [threading.Thread(target=client, args=(result,), name=f"client-{i}") for i, result in enumerate(results)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = LoadResult(wall=time.perf_counter() - started, client_cpu=own_cpu_seconds() - cpu_before)
    for result in results:
        total.merge(result)
    total.latencies.sort()
    return total


# --- the database side ---------------------------------------------------------------------------------


@dataclass
class Target:
    server_url: str
    url: str
    workspace_id: int
    app_id: int
    write_key: str


def prepare_database(server_url: str, name: str) -> Target:
    with_db = recreate_database(server_url, name)
    migrate(with_db)
    setup_django(with_db)
    from django.db import connection

    from profiles.models import App, Workspace

    connection.close()  # the URL may have changed since the last run in this process
    workspace = Workspace.objects.create(name="Bench", slug="bench")
    app = App.objects.create(workspace=workspace, name="Bench iOS", platform="ios")
    connection.close()
    return Target(server_url, with_db, workspace.pk, app.pk, app.write_key)


@dataclass(frozen=True)
class EventCount:
    ours: int  # rows of the messages the benchmark sent (their message ids start with its prefix)
    all: int  # plus what the intake derived from them, e.g. ``$session_started`` events


def count_events(conn: psycopg.Connection[Any], workspace_id: int, id_prefix: bytes) -> EventCount:
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE left(message_id, %s) = %s), count(*)"
        " FROM profiles_event WHERE workspace_id = %s",
        [len(id_prefix), id_prefix.decode(), workspace_id],
    ).fetchone()
    assert row is not None
    return EventCount(int(row[0]), int(row[1]))


def wait_until_stored(
    conn: psycopg.Connection[Any], workspace_id: int, id_prefix: bytes, *, expected: int, since: float, timeout: float
) -> tuple[EventCount, float]:
    """Count the stored events until ``expected`` of ours are there or the count stops growing; return
    the count and the seconds from ``since`` (a perf_counter) to when it was reached. Today the intake
    stores before answering 200, so this returns at once; it keeps the figure honest if it ever queues."""
    deadline = time.perf_counter() + timeout
    count = count_events(conn, workspace_id, id_prefix)
    reached_at = last_change = time.perf_counter()
    while count.ours < expected and time.perf_counter() < deadline and time.perf_counter() - last_change < 5:
        time.sleep(0.2)
        now_count = count_events(conn, workspace_id, id_prefix)
        if now_count != count:
            count, reached_at, last_change = now_count, time.perf_counter(), time.perf_counter()
    return count, reached_at - since


def _copy_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def event_columns(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'profiles_event' "
        "AND column_name <> 'id' ORDER BY ordinal_position"
    ).fetchall()
    return [str(row[0]) for row in rows]


def export_stored_events(conn: psycopg.Connection[Any], columns: list[str], limit: int) -> list[bytes]:
    """The stored events, exactly as the intake wrote them, in COPY text format (in memory)."""
    query = sql.SQL("COPY (SELECT {} FROM profiles_event ORDER BY id LIMIT {}) TO STDOUT").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Literal(limit)
    )
    with conn.cursor() as cur, cur.copy(query) as copy:
        return [bytes(chunk) for chunk in copy]


def create_profiles(workspace_id: int, identifiers: list[str]) -> dict[str, int]:
    """One profile per identifier, made in one statement (the ORM's bulk_create takes ~1 ms a row here),
    with every column the model fills in Python taken from an unsaved instance. The identifier goes in
    external_id, anonymous or not: only the COPY's foreign keys need these rows."""
    from django.db import connection

    from profiles.models import Profile

    template = Profile(workspace_id=workspace_id, external_id="")
    fields = [f for f in Profile._meta.concrete_fields if not f.primary_key and not f.has_db_default()]
    fields = [f for f in fields if f.attname != "external_id"]
    casts = ", ".join(f"%s::{f.db_type(connection)}" for f in fields)
    columns = ", ".join(connection.ops.quote_name(f.column or f.attname) for f in fields)
    values = [f.get_db_prep_save(f.pre_save(template, add=True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO profiles_profile ({columns}, external_id) SELECT {casts}, ext FROM unnest(%s::text[]) AS ext "
            "RETURNING external_id, id",
            [*values, identifiers],
        )
        made = {str(external_id): int(pk) for external_id, pk in cursor.fetchall()}
    connection.close()
    return made


def synthesize_events(target: Target, workload: Workload, columns: list[str], rows: int) -> list[bytes]:
    """Without an intake: the benchmark's own messages as event rows of one profile per person, in COPY
    text format. Rows are built the obvious way: the yardstick is COPY, not this."""
    profile_of = create_profiles(target.workspace_id, [p.user_id or p.anonymous_id for p in workload.people])
    received = dt.datetime.now(dt.UTC).isoformat()
    out: list[bytes] = []
    for number in range((rows + workload.batch_size - 1) // workload.batch_size):
        for message in json.loads(workload.body(number, sent_at_now()))["batch"]:
            if len(out) >= rows:
                break
            values = {
                "workspace_id": str(target.workspace_id),
                "profile_id": str(profile_of[message.get("userId") or message["anonymousId"]]),
                "app_id": str(target.app_id),
                "type": message["type"],
                "name": message.get("event") or message.get("name") or message["type"],
                "properties": json.dumps(message.get("properties") or message.get("traits") or {}),
                "context": json.dumps(message["context"]),
                "message_id": message["messageId"],
                "timestamp": message["timestamp"],
                "received_at": received,
            }
            missing = set(columns) - set(values)
            if missing:
                raise BenchError(f"--copy-only does not know how to fill profiles_event columns {sorted(missing)}")
            out.append(("\t".join(_copy_escape(values[c]) for c in columns) + "\n").encode())
    return out


@dataclass
class CopyResult:
    rows: int
    seconds: float
    bytes: int
    backend_cpu: float = 0.0  # CPU seconds of the PostgreSQL backend that ran the COPY

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def copy_baseline(conn: psycopg.Connection[Any], columns: list[str], data: list[bytes], rows: int) -> CopyResult:
    """COPY ``data`` into a fresh copy of profiles_event (same columns, defaults, indexes, unique and
    foreign-key constraints) in one transaction, timed to the commit; the copy is dropped after."""
    conn.execute("DROP TABLE IF EXISTS bench_copy_event")
    conn.execute("CREATE TABLE bench_copy_event (LIKE profiles_event INCLUDING ALL)")
    foreign_keys = conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'profiles_event'::regclass AND contype = 'f'"
    ).fetchall()
    for (definition,) in foreign_keys:
        conn.execute(sql.SQL("ALTER TABLE bench_copy_event ADD {}").format(sql.SQL(definition)))
    conn.commit()
    query = sql.SQL("COPY bench_copy_event ({}) FROM STDIN").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
    backend = psutil.Process(conn.info.backend_pid)
    cpu_before, started = sum(backend.cpu_times()[:2]), time.perf_counter()
    with conn.cursor() as cur:
        with cur.copy(query) as copy:
            for chunk in data:
                copy.write(chunk)
        conn.commit()
    seconds, cpu = time.perf_counter() - started, sum(backend.cpu_times()[:2]) - cpu_before
    conn.execute("DROP TABLE bench_copy_event")
    conn.commit()
    return CopyResult(rows, seconds, sum(map(len, data)), cpu)


# --- profiling ---------------------------------------------------------------------------------------


def start_py_spy(
    pids: list[int], duration: float, out_dir: Path, *, idle: bool
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """``py-spy record`` on each pid for ``duration`` seconds, without pausing it (``--nonblocking``).
    With ``idle`` the samples of a thread waiting (on PostgreSQL, on the socket) count too: wall time."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not py_spy:
        raise BenchError("--py-spy needs py-spy: .venv/bin/pip install py-spy")
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("worker-*.txt"):
        old.unlink()
    procs = []
    for pid in pids:
        path = out_dir / f"worker-{pid}.txt"
        cmd = [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(duration))),
            "--rate",
            "200",
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(path),
            *(["--idle"] if idle else []),
        ]
        procs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), path))
    return procs


PY_SPY_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


@dataclass
class SpyProfile:
    samples: int = 0
    mode: str = ""
    hottest: list[tuple[str, float, float]] = field(default_factory=list)  # function, % self, % total
    project: list[tuple[str, float]] = field(default_factory=list)  # the project's own functions, % total


def summarize_py_spy(files: list[Path], top: int) -> SpyProfile:
    """Collapsed stacks (``frame;frame;... count`` lines) of all workers, by function: the share of
    on-CPU samples spent in it (self) and in it or its callees (total); the project's own functions
    (files under its packages) are listed apart, by total, to show which step of a request costs what."""
    packages = {p.name + "/" for p in BASE_DIR.iterdir() if (p / "__init__.py").exists()} - {"bench/", "scripts/"}
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            functions = []
            for frame in stack.split(";"):
                match = PY_SPY_FRAME.match(frame.strip())
                functions.append(f"{match['function']} ({match['file']})" if match else frame.strip())
            samples += count
            own[functions[-1]] += count
            for function in set(functions):
                total[function] += count
    if not samples:
        return SpyProfile()

    def share(value: int) -> float:
        return 100.0 * value / samples

    hottest = [(name, share(own[name]), share(total[name])) for name, _ in own.most_common(top)]
    project = [
        (name, share(n)) for name, n in total.most_common() if name.partition("(")[2].startswith(tuple(packages))
    ]
    return SpyProfile(samples=samples, hottest=hottest, project=project[:top])


# --- one run -------------------------------------------------------------------------------------------


@dataclass
class RunReport:
    worker_class: str
    workers: int
    threads: int
    concurrency: int
    gzip: bool
    batch_size: int
    mean_message_bytes: float
    requests: int
    ok_requests: int
    statuses: dict[str, int]
    failures: dict[str, int]
    wall_seconds: float
    accepted_per_second: float
    stored_events: int
    expected_events: int
    derived_events: int
    stored_seconds: float
    stored_per_second: float
    latency_ms: dict[str, float]
    cpu_seconds: dict[str, float]
    machine_cpus: int
    machine_busy_seconds: float
    cpu_wall_seconds: float
    copy_rows: int = 0
    copy_seconds: float = 0.0
    copy_rows_per_second: float = 0.0
    copy_backend_cpu: float = 0.0
    error_samples: dict[str, str] = field(default_factory=dict)
    profile: SpyProfile = field(default_factory=SpyProfile)

    @property
    def meets_target(self) -> bool:
        return self.stored_per_second >= TARGET_EVENTS_PER_SECOND and self.latency_ms["p99"] < TARGET_P99_MS


def probe_intake(address: tuple[str, int]) -> int:
    """The status of an unauthenticated empty batch: 401 means the intake is there, 404 that it is not."""
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request("POST", BATCH_PATH, b'{"batch":[]}', {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def run_once(args: argparse.Namespace, services: Services, worker_class: str, workload: Workload) -> RunReport:
    server_url = services.database_url
    log(f"fresh database {args.db_name}: drop, create, migrate")
    target = prepare_database(server_url, args.db_name)
    env = django_env(target.url, **{**services.server_env(), **dict(args.server_env)})
    if args.rate_limit is not None:
        env["INTAKE_RATE_LIMIT_PER_SECOND"] = str(args.rate_limit)
    threads = args.threads if worker_class == "gthread" else 1
    server = Gunicorn(
        env=env,
        workers=args.workers,
        worker_class=worker_class,
        threads=threads,
        log_path=OUT_DIR / f"gunicorn-{worker_class}.log",
    )
    log(f"gunicorn: {args.workers} x {worker_class}" + (f" ({threads} threads)" if threads > 1 else ""))
    with server, psycopg.connect(target.url) as conn:
        conn.autocommit = True
        status = probe_intake(server.address)
        if status == 404:
            raise BenchError(f"the intake is not there: POST {BATCH_PATH} answered 404 (try --copy-only)")
        counter = itertools.count()  # batch numbers, shared by warm-up and load: every message id is new

        def load(duration: float) -> LoadResult:
            return run_load(
                workload,
                address=server.address,
                write_key=target.write_key,
                concurrency=args.concurrency,
                duration=duration,
                counter=counter,
                max_batch=args.max_batches,
                use_gzip=args.gzip,
            )

        if args.warmup > 0:
            log(f"warm-up: {args.warmup:.0f}s")
            warm = load(args.warmup)
            if warm.ok == 0:
                raise BenchError(
                    f"no batch accepted during warm-up: statuses {dict(warm.statuses)} failures {dict(warm.failures)} "
                    f"samples {warm.samples}\n{server.log_tail()}"
                )
        before = count_events(conn, target.workspace_id, workload.id_prefix)

        def groups() -> dict[str, list[int]]:
            return {
                "gunicorn workers": [server.master_pid(), *server.worker_pids()],
                **postgres_pids(meter_conn, database_name(target.url)),
                "redis (broker, cache)": [services.redis_pid] if services.redis_pid else [],
            }

        meter_conn = psycopg.connect(target.url, autocommit=True)
        meter = CpuMeter(groups)
        spies = []
        if args.py_spy:
            spies = start_py_spy(server.worker_pids(), args.duration, OUT_DIR / "py-spy", idle=args.py_spy == "wall")
        log(f"load: {args.concurrency} clients for {args.duration:.0f}s (at most {args.max_batches} batches)")
        started = time.perf_counter()
        meter.start()
        result = load(args.duration)
        expected = before.ours + result.ok * workload.batch_size
        stored, stored_seconds = wait_until_stored(
            conn, target.workspace_id, workload.id_prefix, expected=expected, since=started, timeout=args.drain_timeout
        )
        cpu = meter.stop()
        meter_conn.close()
        cpu["bench client (this process)"] = result.client_cpu
        profile = SpyProfile()
        if spies:
            files = []
            for proc, path in spies:
                try:
                    _, err = proc.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    _, err = proc.communicate()
                if proc.returncode != 0 and not path.exists():
                    log(f"py-spy failed: {err.decode(errors='replace').strip()[:300]}")
                files.append(path)
            profile = summarize_py_spy(files, args.profile_top)
            # py-spy drops the samples of threads it sees idle; a thread blocked in send() or poll()
            # inside psycopg can still count as busy, so "cpu" is an upper bound for those frames.
            profile.mode = "idle threads dropped" if args.py_spy == "cpu" else "wall time, waits included"
            log(f"py-spy: {profile.samples} samples; collapsed stacks in {OUT_DIR / 'py-spy'} (speedscope opens them)")

        copy = CopyResult(0, 0.0, 0)
        if not args.skip_copy:
            conn.autocommit = False
            columns = event_columns(conn)
            limit = stored.all if args.copy_rows == 0 else min(args.copy_rows, stored.all)
            if limit > 0:
                log(f"COPY yardstick: {limit} stored events into a copy of profiles_event")
                copy = copy_baseline(conn, columns, export_stored_events(conn, columns, limit), limit)

    lat = result.latencies
    stored_new = stored.ours - before.ours
    report = RunReport(
        worker_class=worker_class,
        workers=args.workers,
        threads=threads,
        concurrency=args.concurrency,
        gzip=args.gzip,
        batch_size=workload.batch_size,
        mean_message_bytes=workload.mean_message_bytes,
        requests=len(lat) + sum(result.failures.values()),
        ok_requests=result.ok,
        statuses={str(k): v for k, v in sorted(result.statuses.items())},
        failures=dict(result.failures),
        wall_seconds=result.wall,
        accepted_per_second=result.ok * workload.batch_size / result.wall,
        stored_events=stored_new,
        derived_events=stored.all - before.all - stored_new,
        expected_events=result.ok * workload.batch_size,
        stored_seconds=stored_seconds,
        stored_per_second=stored_new / stored_seconds if stored_seconds else 0.0,
        latency_ms={
            name: 1000 * percentile(lat, q) for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
        }
        | {"mean": 1000 * sum(lat) / len(lat) if lat else 0.0},
        cpu_seconds=cpu,
        machine_cpus=meter.machine_cpus,
        machine_busy_seconds=meter.machine_busy,
        cpu_wall_seconds=meter.wall,
        copy_rows=copy.rows,
        copy_seconds=copy.seconds,
        copy_rows_per_second=copy.rows_per_second,
        copy_backend_cpu=copy.backend_cpu,
        error_samples=result.samples,
        profile=profile,
    )
    if not args.keep_db:
        drop_database(server_url, args.db_name)
    return report


def print_report(report: RunReport) -> None:
    wall_for_cpu = report.cpu_wall_seconds
    server = f"gunicorn {report.workers} x {report.worker_class}"
    if report.worker_class == "gthread":
        server += f" ({report.threads} threads)"
    print_table(
        f"Intake: {server}, {report.concurrency} clients, batches of {report.batch_size} "
        f"(~{report.mean_message_bytes:,.0f} B/event){', gzip' if report.gzip else ''}",
        [
            ("requests sent", fmt_int(report.requests)),
            ("  200 OK", fmt_int(report.ok_requests)),
            *((f"  HTTP {status}", fmt_int(n)) for status, n in report.statuses.items() if status != "200"),
            *((f"  {name}", fmt_int(n)) for name, n in report.failures.items()),
            ("wall time (s)", f"{report.wall_seconds:.1f}"),
            ("events/s accepted (200s x batch / wall)", fmt_int(report.accepted_per_second)),
            (
                "events stored (counted in profiles_event)",
                f"{fmt_int(report.stored_events)} of {fmt_int(report.expected_events)} accepted",
            ),
            ("  plus events the intake derived (e.g. $session_started)", fmt_int(report.derived_events)),
            ("events/s stored (count / time until stored)", fmt_int(report.stored_per_second)),
            *((f"latency {name} (ms)", f"{value:.1f}") for name, value in report.latency_ms.items()),
            (
                "target",
                f">= {TARGET_EVENTS_PER_SECOND:,} events/s stored, p99 < {TARGET_P99_MS:.0f} ms: "
                + ("met" if report.meets_target else "NOT met"),
            ),
        ],
    )
    for status, sample in report.error_samples.items():
        print(f"  first HTTP {status} body: {sample}")
    if report.cpu_seconds:
        busy = report.machine_busy_seconds
        rows = []
        for group, seconds in sorted(report.cpu_seconds.items(), key=lambda item: -item[1]):
            per_event = 1e6 * seconds / report.stored_events if report.stored_events else 0.0
            rows.append(
                (
                    group,
                    f"{seconds:.1f}",
                    f"{seconds / wall_for_cpu:.2f}",
                    f"{100 * seconds / busy:.0f}%" if busy else "-",
                    f"{per_event:.0f}",
                )
            )
        ours = sum(report.cpu_seconds.values())
        rows.append(
            (
                "other (rest of the machine)",
                f"{max(0.0, busy - ours):.1f}",
                f"{max(0.0, busy - ours) / wall_for_cpu:.2f}",
                f"{100 * max(0.0, busy - ours) / busy:.0f}%" if busy else "-",
                "",
            )
        )
        rows.append(("machine busy", f"{busy:.1f}", f"{busy / wall_for_cpu:.2f} of {report.machine_cpus}", "100%", ""))
        print_table("Where the CPU went", rows, headers=("process group", "cpu s", "cores", "share", "µs/event"))
        if report.stored_events:
            server_cpu = sum(
                v for k, v in report.cpu_seconds.items() if k.startswith(("gunicorn", "postgres", "redis"))
            )
            per_event = server_cpu / report.stored_events
            ceiling = report.machine_cpus / per_event
            print(
                f"server (gunicorn, PostgreSQL, Redis): {1e6 * per_event:.0f} µs of CPU per event; with all "
                f"{report.machine_cpus} cores to themselves: a ceiling of ~{ceiling:,.0f} events/s"
            )
        other_cores = max(0.0, busy - ours) / wall_for_cpu
        if other_cores > 0.2:
            print(
                f"WARNING: other processes kept {other_cores:.2f} cores busy during the run: these figures "
                "understate what the machine can do; rerun when it is quiet (CPU per event suffers less, but some)."
            )
    if report.copy_rows:
        ratio = report.stored_per_second / report.copy_rows_per_second if report.copy_rows_per_second else 0.0
        backends = report.cpu_seconds.get("postgres backends", 0.0)
        print_table(
            "Yardstick: plain COPY of the same events into a copy of profiles_event",
            [
                ("rows copied", fmt_int(report.copy_rows)),
                ("seconds (to commit)", f"{report.copy_seconds:.2f}"),
                ("COPY rows/s", fmt_int(report.copy_rows_per_second)),
                ("intake stored events/s", fmt_int(report.stored_per_second)),
                ("intake / COPY", f"{ratio:.1%}"),
                ("COPY backend CPU per row (µs)", f"{1e6 * report.copy_backend_cpu / report.copy_rows:.0f}"),
                ("intake PostgreSQL backends CPU per event (µs)", f"{1e6 * backends / report.stored_events:.0f}")
                if report.stored_events
                else ("intake PostgreSQL backends CPU per event (µs)", "-"),
            ],
        )
    if report.profile.samples:
        print_table(
            f"py-spy: hottest functions in the workers ({report.profile.samples:,} samples, {report.profile.mode})",
            [(name, f"{own:.1f}%", f"{incl:.1f}%") for name, own, incl in report.profile.hottest],
            headers=("function (file)", "self", "total"),
        )
        print_table(
            "py-spy: the project's own functions, including what they call",
            [(name, f"{share:.1f}%") for name, share in report.profile.project],
            headers=("function (file)", "total"),
        )


def run_copy_only(args: argparse.Namespace, server_url: str, workload: Workload) -> CopyResult:
    log(f"fresh database {args.db_name}: drop, create, migrate")
    target = prepare_database(server_url, args.db_name)
    rows = args.copy_rows or 200_000
    with psycopg.connect(target.url) as conn:
        columns = event_columns(conn)
        log(f"building {rows} event rows from the workload")
        data = synthesize_events(target, workload, columns, rows)
        conn.commit()
        log("COPY into a copy of profiles_event")
        result = copy_baseline(conn, columns, data, rows)
    if not args.keep_db:
        drop_database(server_url, args.db_name)
    print_table(
        "Yardstick only: plain COPY of the workload's events into a copy of profiles_event",
        [
            ("rows copied", fmt_int(result.rows)),
            ("MB", f"{result.bytes / 1e6:.1f}"),
            ("seconds (to commit)", f"{result.seconds:.2f}"),
            ("COPY rows/s", fmt_int(result.rows_per_second)),
            ("COPY backend CPU per row (µs)", f"{1e6 * result.backend_cpu / result.rows:.0f}"),
        ],
    )
    return result


# --- command line --------------------------------------------------------------------------------------


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, but not the empty ones (None, False) that say nothing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    cpus = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description=(
            "Benchmark the event intake end to end: gunicorn serving config.wsgi against a fresh PostgreSQL "
            "database, concurrent clients posting Segment-style /v1/batch requests, then events/s accepted and "
            "stored, latency percentiles, errors by status, CPU per process group, and the rows/s of a plain "
            "COPY of the same events for comparison. Loopback only; stops by itself and stops what it started."
        ),
        epilog=(
            "PostgreSQL: --database-url, else $DATABASE_URL, else the embedded server of a running ./run, else one "
            "started as ./run would (and stopped afterwards). Only the server is used: the benchmark drops and "
            "recreates its own database (--db-name) there. Redis (Celery broker, cache): $CELERY_BROKER_URL and "
            "$CACHE_URL, else an embedded one for the run. Results vary with other load on the machine: see the "
            "'other' row. Example: DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres "
            ".venv/bin/python -m bench.ingest. More in docs/bench-ingest.md."
        ),
        formatter_class=_HelpFormatter,
    )
    run = parser.add_argument_group("load")
    run.add_argument("--duration", type=float, default=60.0, help="seconds of measured load")
    run.add_argument("--max-batches", type=int, default=200_000, help="stop after this many batches in all")
    run.add_argument("--warmup", type=float, default=5.0, help="seconds of unmeasured load first (0: none)")
    run.add_argument(
        "--concurrency",
        "-c",
        type=int,
        help="client threads, one keep-alive connection each (default: 2 x workers, so none ever waits for work)",
    )
    run.add_argument("--gzip", action="store_true", help="send bodies with Content-Encoding: gzip (level 1)")
    srv = parser.add_argument_group("server")
    # Gunicorn's own rule for sync workers: each spends part of a request waiting on PostgreSQL
    # (its commit, a busy person's lock), so 2 x cores + 1 keep the cores busy. Measured here with
    # 2 cores: 3 workers left ~8% of the CPU idle, 5 did not.
    srv.add_argument("--workers", "-w", type=int, default=2 * cpus + 1, help="gunicorn workers")
    srv.add_argument(
        "--worker-class",
        "-k",
        default="sync",
        help="gunicorn worker class, or a comma list to compare (sync,gthread): one run each",
    )
    srv.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    srv.add_argument(
        "--rate-limit",
        type=int,
        default=None,
        help="INTAKE_RATE_LIMIT_PER_SECOND for the server (default: the settings' default)",
    )
    srv.add_argument(
        "--env",
        dest="server_env",
        metavar="NAME=VALUE",
        action="append",
        type=_env_pair,
        default=[],
        help="an environment variable for the server, to try a setting without editing the project "
        "(repeatable; e.g. DB_CONN_MAX_AGE=0, or DJANGO_SETTINGS_MODULE=mysettings with PYTHONPATH=...)",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--seed", type=int, default=42, help="seed of the generated people and events")
    data.add_argument("--users", type=int, default=20_000, help="signed-in people (user id + anonymous id)")
    data.add_argument("--anonymous", type=int, default=5_000, help="anonymous-only visitors")
    data.add_argument("--distinct-batches", type=int, default=2000, help="distinct pre-encoded batch bodies (cycled)")
    data.add_argument("--batch-size", type=int, default=100, help="messages per request")
    db = parser.add_argument_group("database")
    db.add_argument("--database-url", help="PostgreSQL server to use (default: $DATABASE_URL)")
    db.add_argument("--db-name", default="engage_bench", help="benchmark database, dropped and recreated each run")
    db.add_argument("--keep-db", action="store_true", help="keep the benchmark database afterwards for inspection")
    db.add_argument(
        "--drain-timeout", type=float, default=30.0, help="seconds to wait for accepted events to be stored"
    )
    yard = parser.add_argument_group("COPY yardstick")
    yard.add_argument("--skip-copy", action="store_true", help="do not measure the COPY yardstick")
    yard.add_argument(
        "--copy-only",
        action="store_true",
        help="no server: only COPY the workload's events (checks the harness without an intake)",
    )
    yard.add_argument("--copy-rows", type=int, default=200_000, help="events copied for the yardstick (0: all stored)")
    prof = parser.add_argument_group("profiling")
    prof.add_argument(
        "--py-spy",
        nargs="?",
        const="cpu",
        choices=["cpu", "wall"],
        help="record every worker with py-spy during the load: where CPU goes (cpu, the default), or where "
        "request time goes, waiting on PostgreSQL included (wall)",
    )
    prof.add_argument("--profile-top", type=int, default=25, help="functions listed from the py-spy profile")
    out = parser.add_argument_group("output")
    out.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.concurrency is None:
        args.concurrency = 2 * args.workers
    for name in ("duration", "concurrency", "workers", "threads", "batch_size", "distinct_batches", "max_batches"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    args.worker_classes = [name.strip() for name in args.worker_class.split(",") if name.strip()]
    unknown = set(args.worker_classes) - {"sync", "gthread"}
    if unknown:
        parser.error(f"--worker-class: only sync and gthread are measured (got {', '.join(sorted(unknown))})")
    return args


def run(args: argparse.Namespace, services: Services) -> int:
    server_url = services.database_url
    log(f"generating {args.distinct_batches} batches of {args.batch_size} events (seed {args.seed})")
    workload = make_workload(
        seed=args.seed,
        users=args.users,
        anonymous=args.anonymous,
        batches=args.distinct_batches,
        batch_size=args.batch_size,
    )
    log(f"~{workload.mean_message_bytes:,.0f} bytes per event on average")
    if args.copy_only:
        copy = run_copy_only(args, server_url, workload)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"copy": asdict(copy)}, indent=2))
        return 0
    reports = []
    for worker_class in args.worker_classes:
        report = run_once(args, services, worker_class, workload)
        print_report(report)
        reports.append(report)
    if len(reports) > 1:
        best = max(reports, key=lambda r: (r.meets_target, r.stored_per_second))
        print_table(
            "Worker classes compared",
            [
                (
                    r.worker_class,
                    fmt_int(r.stored_per_second),
                    f"{r.latency_ms['p99']:.0f}",
                    "yes" if r.meets_target else "no",
                )
                for r in reports
            ],
            headers=("class", "events/s stored", "p99 ms", "target met"),
        )
        print(f"best: {best.worker_class}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in reports], indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    exit_cleanly_on_sigterm()
    try:
        with backing_services(args.database_url) as services:
            check_loopback(services.database_url)
            return run(args, services)
    except BenchError as exc:
        print(f"bench.ingest: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench.ingest: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
