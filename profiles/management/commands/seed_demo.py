"""Load the demo: an admin login, a "Demo" workspace with four apps, and ~200 people whose last 90
days of app use arrive through the intake exactly as SDK traffic would.

Idempotent: a demo that is already complete is left alone; one interrupted halfway is completed
(every message has a fixed id, so what was stored before is not stored twice). The data is the same
on every run (a seeded generator), with times relative to now.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import random
import secrets
import unicodedata
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from profiles.models import App, Event, Platform, Workspace
from profiles.services.ingest import ingest_batch

DEMO_SLUG = "demo"
ADMIN_USERNAME = "admin"
BATCH_SIZE = 500  # the intake's batch limit
SEED = 20240601
HISTORY_DAYS = 90
MESSAGE_ID_PREFIX = "demo-"

APPS = (
    ("Demo iOS", Platform.IOS),
    ("Demo Android", Platform.ANDROID),
    ("Demo Web", Platform.WEB),
    ("Demo Server", Platform.SERVER),
)


@dataclass(frozen=True)
class City:
    city: str
    region: str
    country: str
    time_zone: str
    locale: str
    latitude: float
    longitude: float
    currency: str
    calling_code: str
    weight: int


CITIES = (
    City("New York", "New York", "US", "America/New_York", "en-US", 40.7128, -74.0060, "USD", "1", 14),
    City("San Francisco", "California", "US", "America/Los_Angeles", "en-US", 37.7749, -122.4194, "USD", "1", 10),
    City("Chicago", "Illinois", "US", "America/Chicago", "en-US", 41.8781, -87.6298, "USD", "1", 8),
    City("Austin", "Texas", "US", "America/Chicago", "en-US", 30.2672, -97.7431, "USD", "1", 6),
    City("Jackson", "Mississippi", "US", "America/Chicago", "en-US", 32.2988, -90.1848, "USD", "1", 6),
    City("Miami", "Florida", "US", "America/New_York", "es-US", 25.7617, -80.1918, "USD", "1", 5),
    City("Toronto", "Ontario", "CA", "America/Toronto", "en-CA", 43.6532, -79.3832, "CAD", "1", 5),
    City("London", "England", "GB", "Europe/London", "en-GB", 51.5074, -0.1278, "GBP", "44", 9),
    City("Paris", "Île-de-France", "FR", "Europe/Paris", "fr-FR", 48.8566, 2.3522, "EUR", "33", 6),
    City("Berlin", "Berlin", "DE", "Europe/Berlin", "de-DE", 52.5200, 13.4050, "EUR", "49", 6),
    City("Madrid", "Madrid", "ES", "Europe/Madrid", "es-ES", 40.4168, -3.7038, "EUR", "34", 4),
    City("São Paulo", "São Paulo", "BR", "America/Sao_Paulo", "pt-BR", -23.5505, -46.6333, "BRL", "55", 5),
    City("Tokyo", "Tokyo", "JP", "Asia/Tokyo", "ja-JP", 35.6762, 139.6503, "JPY", "81", 4),
    City("Sydney", "New South Wales", "AU", "Australia/Sydney", "en-AU", -33.8688, 151.2093, "AUD", "61", 4),
    City("Mumbai", "Maharashtra", "IN", "Asia/Kolkata", "en-IN", 19.0760, 72.8777, "INR", "91", 4),
)
# Rough conversion of catalogue prices (USD) into each city's currency.
CURRENCY_RATES = {"USD": 1, "CAD": 1.35, "GBP": 0.8, "EUR": 0.92, "BRL": 5, "JPY": 150, "AUD": 1.5, "INR": 83}

FIRST_NAMES = (
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Amelia",
    "Oliver",
    "Ava",
    "Elijah",
    "Sophia",
    "Mateo",
    "Isabella",
    "Lucas",
    "Mia",
    "Levi",
    "Chloé",
    "Hugo",
    "Léa",
    "Jonas",
    "Lena",
    "Lucía",
    "Martín",
    "Ana",
    "João",
    "Yuki",
    "Haruto",
    "Aarav",
    "Priya",
    "Zoe",
    "Ethan",
    "Grace",
    "Maya",
    "Leo",
    "Nora",
    "Sam",
    "Aisha",
    "Omar",
    "Chen",
    "Ingrid",
)
LAST_NAMES = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Garcia",
    "Miller",
    "Davis",
    "Martinez",
    "Lopez",
    "Wilson",
    "Taylor",
    "Thomas",
    "Moore",
    "Martin",
    "Lee",
    "Clark",
    "Lewis",
    "Walker",
    "Dubois",
    "Bernard",
    "Müller",
    "Schmidt",
    "Fernández",
    "Silva",
    "Santos",
    "Tanaka",
    "Sato",
    "Patel",
    "Sharma",
    "O'Brien",
    "Nguyen",
    "Kim",
    "Okafor",
)


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    category: str
    brand: str
    price: float


PRODUCTS = (
    Product("SKU-1001", "Trail Running Shoes", "Shoes", "Northpeak", 129.0),
    Product("SKU-1002", "Everyday Sneakers", "Shoes", "Urbanite", 89.0),
    Product("SKU-1003", "Leather Boots", "Shoes", "Ironwood", 189.0),
    Product("SKU-2001", "Merino T-Shirt", "Apparel", "Northpeak", 49.0),
    Product("SKU-2002", "Rain Jacket", "Apparel", "Stormline", 159.0),
    Product("SKU-2003", "Fleece Hoodie", "Apparel", "Urbanite", 69.0),
    Product("SKU-2004", "Yoga Leggings", "Apparel", "Flowfit", 59.0),
    Product("SKU-3001", "Daypack 22L", "Bags", "Northpeak", 79.0),
    Product("SKU-3002", "Weekender Duffel", "Bags", "Ironwood", 139.0),
    Product("SKU-4001", "Insulated Bottle", "Accessories", "Stormline", 29.0),
    Product("SKU-4002", "Sport Watch", "Electronics", "Pulse", 249.0),
    Product("SKU-4003", "Wireless Earbuds", "Electronics", "Pulse", 119.0),
    Product("SKU-4004", "Sunglasses", "Accessories", "Urbanite", 99.0),
    Product("SKU-5001", "Camping Stove", "Outdoor", "Northpeak", 74.0),
    Product("SKU-5002", "Two-Person Tent", "Outdoor", "Stormline", 299.0),
    Product("SKU-5003", "Sleeping Bag", "Outdoor", "Northpeak", 179.0),
)
CATEGORIES = sorted({product.category for product in PRODUCTS})

# First touch: where the person came from (utm_* on the profile).
ACQUISITION = (
    {"source": "facebook", "medium": "cpc", "name": "spring_sale", "content": "carousel_a"},
    {"source": "google", "medium": "cpc", "name": "brand_search", "term": "outdoor gear"},
    {"source": "instagram", "medium": "social", "name": "influencer_summer"},
    {"source": "newsletter", "medium": "email", "name": "weekly_digest"},
    {"source": "tiktok", "medium": "social", "name": "app_launch"},
    {"source": "partner_blog", "medium": "referral", "name": "gear_guide"},
)

DEVICE_MODELS: dict[str, tuple[tuple[str, str, str], ...]] = {
    Platform.IOS: (("Apple", "iPhone15,2", "17.5"), ("Apple", "iPhone14,5", "17.4"), ("Apple", "iPhone16,1", "18.0")),
    Platform.ANDROID: (("Google", "Pixel 8", "14"), ("samsung", "SM-S921B", "14"), ("OnePlus", "CPH2449", "13")),
}
BROWSERS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
)
LIBRARIES: dict[str, dict[str, str]] = {
    Platform.IOS: {"name": "analytics-ios", "version": "4.1.8"},
    Platform.ANDROID: {"name": "analytics-android", "version": "4.11.3"},
    Platform.WEB: {"name": "analytics.js", "version": "5.2.0"},
    Platform.SERVER: {"name": "analytics-python", "version": "2.3.2"},
}
APP_FOR_PLATFORM: dict[str, str] = {
    Platform.IOS: "Demo iOS",
    Platform.ANDROID: "Demo Android",
    Platform.WEB: "Demo Web",
}
APP_VERSIONS = (("3.2.0", "320"), ("3.3.1", "331"), ("3.4.0", "340"))


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().replace("'", "")


def _iso(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class DemoMessage:
    app: str  # one of APPS' names
    at: datetime
    body: dict[str, Any]


@dataclass
class Device:
    platform: str
    anonymous_id: str
    context: dict[str, Any]
    push_token: str = ""


@dataclass
class Person:
    """One generated person and the messages their apps sent."""

    number: int
    city: City
    user_id: str | None
    traits: dict[str, Any]
    messages: list[DemoMessage] = field(default_factory=list)
    sequence: int = 0

    def message_id(self) -> str:
        self.sequence += 1
        return f"{MESSAGE_ID_PREFIX}{self.number:04d}-{self.sequence:04d}"


class DemoGenerator:
    """Builds the demo's messages from a seeded generator: the same people, journeys and ids on
    every run; only the times move with ``now``."""

    def __init__(self, *, people: int, now: datetime) -> None:
        self.rng = random.Random(SEED)
        self.people = people
        self.now = now

    def messages(self) -> list[DemoMessage]:
        out: list[DemoMessage] = []
        for number in range(1, self.people + 1):
            out.extend(self._person(number).messages)
        return out

    # -- one person -----------------------------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _person(self, number: int) -> Person:
        rng = self.rng
        city = rng.choices(CITIES, weights=[c.weight for c in CITIES])[0]
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        known = rng.random() < 0.75
        person = Person(number=number, city=city, user_id=f"user-{10000 + number}" if known else None, traits={})
        if known:
            person.traits = self._traits(person, first, last)

        primary = self._device(person, rng.choices((Platform.IOS, Platform.ANDROID, Platform.WEB), (40, 35, 25))[0])
        start = self.now - timedelta(days=rng.uniform(1, HISTORY_DAYS), hours=rng.uniform(0, 12))
        sessions = self._session_times(person, start, count=max(1, int(rng.paretovariate(1.3) * 2)))
        if not sessions:
            return person
        signup_at = rng.randrange(0, min(3, len(sessions))) if known else None
        acquired = rng.random() < 0.5
        for index, moment in enumerate(sessions):
            if index == 1 and primary.platform != Platform.WEB and rng.random() < 0.6:
                primary.push_token = self._push_token(primary.platform)
            identified = signup_at is not None and index >= signup_at
            campaign = rng.choice(ACQUISITION) if acquired and index == 0 else None
            moment = self._session(person, primary, moment, identified=identified, campaign=campaign)
            if signup_at == index:
                self._identify(person, primary, moment + timedelta(seconds=20), person.traits, event="Signed Up")

        if signup_at is not None:
            self._second_browser(person, sessions[signup_at])
            self._server_calls(person, sessions[signup_at + 1 :])
        return person

    def _traits(self, person: Person, first: str, last: str) -> dict[str, Any]:
        rng = self.rng
        city = person.city
        birthday = (self.now - timedelta(days=rng.randint(13 * 365, 68 * 365))).date()
        traits: dict[str, Any] = {
            "firstName": first,
            "lastName": last,
            "email": f"{_ascii(first)}.{_ascii(last)}{person.number}@example.{rng.choice(('com', 'org', 'net'))}",
            "birthday": birthday.isoformat(),
            "gender": rng.choices(("female", "male", "other", "prefer_not_to_say"), (48, 46, 3, 3))[0],
            "address": {"city": city.city, "state": city.region, "country": city.country},
            "favorite_category": rng.choice(CATEGORIES),
            "loyalty_tier": rng.choices(("bronze", "silver", "gold"), (60, 30, 10))[0],
            "plan": rng.choices(("free", "plus"), (80, 20))[0],
            "interests": sorted(rng.sample(("running", "hiking", "camping", "yoga", "travel", "tech"), k=2)),
            "newsletter_opt_in": rng.random() < 0.6,
            "shoe_size": rng.choice((37, 38, 39, 40, 41, 42, 43, 44, 45)),
        }
        if rng.random() < 0.7:
            digits = "".join(str(rng.randint(0, 9)) for _ in range(9 if city.calling_code != "1" else 4))
            traits["phone"] = f"+1212555{digits}" if city.calling_code == "1" else f"+{city.calling_code}6{digits}"
        if rng.random() < 0.5:
            traits["email_subscribe"] = rng.choices(("opted_in", "unsubscribed"), (85, 15))[0]
        return traits

    def _device(self, person: Person, platform: str) -> Device:
        rng = self.rng
        city = person.city
        version, build = rng.choice(APP_VERSIONS)
        context: dict[str, Any] = {
            "library": LIBRARIES[platform],
            "locale": city.locale,
            "timezone": city.time_zone,
            "ip": f"203.0.113.{rng.randint(1, 254)}",
        }
        if rng.random() < 0.5:  # location permission granted
            context["location"] = {
                "city": city.city,
                "region": city.region,
                "country": city.country,
                "latitude": round(city.latitude + rng.uniform(-0.05, 0.05), 5),
                "longitude": round(city.longitude + rng.uniform(-0.05, 0.05), 5),
            }
        if platform == Platform.WEB:
            context["userAgent"] = rng.choice(BROWSERS)
            context["screen"] = {"width": 1440, "height": 900}
        else:
            manufacturer, model, os_version = rng.choice(DEVICE_MODELS[platform])
            context["app"] = {
                "name": "Trailhead Shop",
                "version": version,
                "build": build,
                "namespace": "com.example.trailhead",
            }
            context["device"] = {
                "id": self._uuid(),
                "manufacturer": manufacturer,
                "model": model,
                "type": platform,
                "adTrackingEnabled": rng.random() < 0.4,
            }
            context["os"] = {"name": "iOS" if platform == Platform.IOS else "Android", "version": os_version}
            context["network"] = {"wifi": rng.random() < 0.6, "carrier": rng.choice(("Verizon", "Vodafone", "O2"))}
        return Device(platform=platform, anonymous_id=self._uuid(), context=context)

    def _push_token(self, platform: str) -> str:
        if platform == Platform.IOS:
            return "".join(self.rng.choices("0123456789abcdef", k=64))  # an APNs device token
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        return "".join(self.rng.choices(alphabet, k=22)) + ":APA91b" + "".join(self.rng.choices(alphabet, k=134))

    def _session_times(self, person: Person, start: datetime, *, count: int) -> list[datetime]:
        """``count`` session starts between ``start`` and now, at waking hours in the person's zone."""
        zone = ZoneInfo(person.city.time_zone)
        span = (self.now - start).total_seconds()
        times = []
        for _ in range(min(count, 40)):
            moment = (start + timedelta(seconds=self.rng.uniform(0, span))).astimezone(zone)
            hour = self.rng.choices(range(7, 24), weights=(2, 3, 3, 2, 2, 3, 3, 2, 2, 2, 3, 4, 5, 6, 5, 3, 2))[0]
            moment = moment.replace(hour=hour, minute=self.rng.randrange(60), second=self.rng.randrange(60))
            if moment < self.now - timedelta(minutes=30):
                times.append(moment)
        return sorted(times)

    # -- messages ---------------------------------------------------------------------------------------

    def _add(self, person: Person, app: str, at: datetime, body: dict[str, Any]) -> None:
        body = {**body, "messageId": person.message_id(), "timestamp": _iso(at)}
        person.messages.append(DemoMessage(app=app, at=at, body=body))

    def _send(
        self,
        person: Person,
        device: Device,
        at: datetime,
        kind: str,
        *,
        identified: bool,
        campaign: dict[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        """A call from an SDK on ``device``: its anonymous id (and the user id once signed in) and
        the context it adds to every call."""
        context = copy.deepcopy(device.context)
        if device.push_token:
            context["device"]["token"] = device.push_token
        if campaign is not None:
            context["campaign"] = campaign
        if kind == "page":
            context["page"] = fields["properties"]
        ids = {"anonymousId": device.anonymous_id, **({"userId": person.user_id} if identified else {})}
        self._add(person, APP_FOR_PLATFORM[device.platform], at, {"type": kind, **ids, **fields, "context": context})

    def _server(self, person: Person, at: datetime, kind: str, **fields: Any) -> None:
        """A call from the brand's back end: the user id only, no device."""
        body = {"type": kind, "userId": person.user_id, **fields, "context": {"library": LIBRARIES[Platform.SERVER]}}
        self._add(person, "Demo Server", at, body)

    # -- journeys ---------------------------------------------------------------------------------------

    def _session(
        self, person: Person, device: Device, at: datetime, *, identified: bool, campaign: dict[str, Any] | None
    ) -> datetime:
        """One visit: an app open (or landing page), a few screens, products viewed, maybe a cart
        and an order. Returns the time of its last message."""
        rng = self.rng
        send = functools.partial(self._send, person, device, identified=identified, campaign=campaign)
        web = device.platform == Platform.WEB
        currency = person.city.currency
        rate = CURRENCY_RATES[currency]

        def screen(at: datetime, name: str, path: str) -> None:
            if web:
                page = {"path": path, "url": f"https://shop.example.com{path}", "title": f"{name} | Trailhead"}
                send(at, "page", name=name, properties=page)
            else:
                send(at, "screen", name=name, properties={})

        if not web:
            opened = {"from_background": rng.random() < 0.3, "version": device.context["app"]["version"]}
            send(at, "track", event="Application Opened", properties=opened)
        at += timedelta(seconds=rng.randint(1, 5))
        screen(at, "Home", "/")
        cart: list[tuple[Product, int]] = []
        for _ in range(rng.randint(1, 6)):
            at += timedelta(seconds=rng.randint(5, 120))
            if rng.random() < 0.3:
                name = rng.choice(("Search", "Category"))
                screen(at, name, "/search" if name == "Search" else "/c/outdoor")
                continue
            product = rng.choice(PRODUCTS)
            fields = {
                "product_id": product.product_id,
                "sku": product.product_id,
                "name": product.name,
                "category": product.category,
                "brand": product.brand,
                "price": round(product.price * rate, 2),
                "currency": currency,
            }
            screen(at, "Product" if web else "Product Detail", f"/p/{product.product_id.lower()}")
            send(at + timedelta(seconds=1), "track", event="Product Viewed", properties=fields)
            if rng.random() < 0.35:
                at += timedelta(seconds=rng.randint(10, 60))
                quantity = rng.choices((1, 2, 3), (80, 15, 5))[0]
                cart.append((product, quantity))
                added = {**fields, "quantity": quantity, "cart_id": f"cart-{person.number}-{person.sequence}"}
                send(at, "track", event="Product Added", properties=added)
        # Some carts are bought at once, most are abandoned (what a reminder campaign is for).
        if cart and rng.random() < 0.45:
            at += timedelta(seconds=rng.randint(30, 300))
            screen(at, "Checkout", "/checkout")
            products = [
                {"product_id": p.product_id, "sku": p.product_id, "name": p.name, "category": p.category,
                 "price": round(p.price * rate, 2), "quantity": q}
                for p, q in cart
            ]  # fmt: skip
            revenue = round(sum(round(p.price * rate, 2) * q for p, q in cart), 2)
            order = {
                "order_id": f"ord-{person.number:04d}-{person.sequence:04d}",
                "revenue": revenue,
                "total": revenue,
                "currency": currency,
                "products": products,
            }
            at += timedelta(seconds=rng.randint(20, 90))
            send(at, "track", event="Order Completed", properties=order)
        elif rng.random() < 0.3:
            at += timedelta(seconds=rng.randint(5, 60))
            screen(at, "Account", "/account")
        return at

    def _identify(self, person: Person, device: Device, at: datetime, traits: dict[str, Any], *, event: str) -> None:
        """Sign-up or log-in: the SDK sends userId with the anonymousId it used so far, which ties
        (or merges) the anonymous profile into the known one."""
        self._send(person, device, at, "identify", identified=True, traits=traits)
        method = self.rng.choice(("email", "apple", "google"))
        self._send(person, device, at + timedelta(seconds=2), "track", identified=True, event=event,
                   properties={"method": method})  # fmt: skip

    def _second_browser(self, person: Person, signed_up_at: datetime) -> None:
        """Three in ten known people also browse the web store anonymously and log in there a day
        or two later: the anonymous browser profile, stored by then, merges into theirs (most by
        the identify call, some by a server-side alias call)."""
        rng = self.rng
        earliest, latest = signed_up_at + timedelta(hours=6), self.now - timedelta(days=3)
        if rng.random() >= 0.3 or earliest >= latest:
            return
        browser = self._device(person, Platform.WEB)
        browsed_at = earliest + (latest - earliest) * rng.random()
        for _ in range(rng.randint(1, 2)):
            browsed_at = self._session(person, browser, browsed_at, identified=False, campaign=None)
            browsed_at += timedelta(hours=rng.uniform(3, 20))
        login_at = browsed_at + timedelta(days=rng.uniform(1, 2))
        if login_at > self.now - timedelta(hours=1):
            return  # still browsing anonymously
        if rng.random() < 0.8:
            self._identify(person, browser, login_at, {"email": person.traits["email"]}, event="Signed In")
            self._session(person, browser, login_at + timedelta(minutes=1), identified=True, campaign=None)
        else:
            self._server(person, login_at, "alias", previousId=browser.anonymous_id)

    def _server_calls(self, person: Person, sessions: list[datetime]) -> None:
        """The brand's back end: loyalty points after every third session, and the balance as a trait."""
        points = 0
        for moment in sessions[::3]:
            earned = self.rng.choice((10, 25, 50, 100))
            points += earned
            at = moment + timedelta(minutes=self.rng.randint(1, 20))
            if at > self.now:
                continue
            self._server(person, at, "track", event="Loyalty Points Earned",
                         properties={"points": earned, "balance": points})  # fmt: skip
            self._server(person, at + timedelta(seconds=1), "identify", traits={"loyalty_points": points})


def batches(messages: list[DemoMessage], *, now: datetime) -> list[tuple[str, list[dict[str, Any]]]]:
    """Group messages per day and app, oldest day first and time-ordered within, in batches the
    intake accepts: identity resolution then happens in (day-)time order across apps."""
    grouped: dict[tuple[int, str], list[DemoMessage]] = defaultdict(list)
    for message in messages:
        grouped[((now - message.at).days, message.app)].append(message)
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for age, app in sorted(grouped, key=lambda key: (-key[0], key[1])):
        day = sorted(grouped[(age, app)], key=lambda message: (message.at, message.body["messageId"]))
        out.extend((app, [m.body for m in day[i : i + BATCH_SIZE]]) for i in range(0, len(day), BATCH_SIZE))
    return out


class Command(BaseCommand):
    help = (
        "Create the admin login (if there is no superuser) and load the demo workspace through the intake. "
        "Safe to re-run: a complete demo is left alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--people", type=int, default=200, help="How many people to generate (default 200).")
        parser.add_argument("--summary-file", type=Path, help="Write the login and write keys here as JSON.")
        parser.add_argument(
            "--password-file",
            type=Path,
            help="Where the generated admin password is kept (default: <ENGAGE_DATA_DIR>/admin-password).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password_file: Path = options["password_file"] or Path(settings.DATA_DIR) / "admin-password"
        username, password = self._ensure_admin(password_file)
        workspace, apps = self._ensure_workspace(username)
        self._load(workspace, apps, people=options["people"])
        # The example campaigns (campaigns app), after the data: the demo's history triggers none.
        call_command("seed_demo_campaigns", workspace=workspace.slug, stdout=self.stdout)
        summary = {
            "username": username,
            "password": password,
            "write_keys": [
                {"workspace": workspace.name, "app": app.name, "platform": app.platform, "write_key": app.write_key}
                for app in apps.values()
            ],
        }
        if options["summary_file"] is not None:
            _write_private(options["summary_file"], json.dumps(summary, indent=2) + "\n")
            return
        self.stdout.write(f"Admin login: {username} / {password or '(your own password)'}")
        for app in apps.values():
            self.stdout.write(f"  {app.name:<14} write key {app.write_key}")

    def _ensure_admin(self, password_file: Path) -> tuple[str, str | None]:
        """The superuser to log in with, and its password if it is the one kept in ``password_file``
        (a superuser someone created by hand keeps its own password, which is not ours to print)."""
        user_model = get_user_model()
        password = password_file.read_text().strip() if password_file.exists() else None
        admin: AbstractBaseUser | None = user_model.objects.filter(username=ADMIN_USERNAME, is_superuser=True).first()
        if admin is None and not user_model.objects.filter(is_superuser=True).exists():
            if password is None:
                password = secrets.token_urlsafe(12)
                _write_private(password_file, password + "\n")
            admin = user_model.objects.create_superuser(
                username=ADMIN_USERNAME, email="admin@example.com", password=password
            )
            self.stdout.write(f"Created superuser {ADMIN_USERNAME!r}")
        if admin is None:
            existing = user_model.objects.filter(is_superuser=True).order_by("pk").first()
            assert existing is not None
            return existing.get_username(), None
        return admin.get_username(), password if password and admin.check_password(password) else None

    def _ensure_workspace(self, username: str) -> tuple[Workspace, dict[str, App]]:
        with transaction.atomic():
            workspace, _ = Workspace.objects.get_or_create(
                slug=DEMO_SLUG, defaults={"name": "Demo", "default_time_zone": "America/New_York"}
            )
            workspace.members.add(get_user_model().objects.get(username=username))
            apps = {}
            for name, platform in APPS:
                app, _ = App.objects.get_or_create(workspace=workspace, name=name, defaults={"platform": platform})
                apps[name] = app
        return workspace, apps

    def _load(self, workspace: Workspace, apps: dict[str, App], *, people: int) -> None:
        # The demo's clock is the workspace's creation time, not this run's: the generator's draws
        # depend on "now", and a later run (a restart completing an interrupted load) must produce
        # exactly the same messages under the same ids, or it would mix two different worlds.
        now = workspace.created_at.replace(second=0, microsecond=0)
        plan = batches(DemoGenerator(people=people, now=now).messages(), now=now)
        total = sum(len(batch) for _, batch in plan)
        # Every intake call is stored as an event under its message id: the demo is complete when
        # all of its ids are there. A load cut short is completed; the intake skips the ids it has.
        if Event.objects.filter(workspace=workspace, message_id__startswith=MESSAGE_ID_PREFIX).count() >= total:
            self.stdout.write("Demo data already loaded")
            return
        self.stdout.write(f"Loading the demo: {people} people, {total} messages in {len(plan)} batches")
        stored = duplicates = 0
        for app_name, batch in plan:
            result = ingest_batch(app=apps[app_name], messages=batch)
            if result.rejected:
                rejection = result.rejected[0]
                raise RuntimeError(
                    f"the intake rejected demo message {batch[rejection.index]['messageId']}: {rejection.message}"
                )
            stored += result.stored
            duplicates += result.duplicates
        self.stdout.write(f"Demo loaded: {stored} messages stored ({duplicates} were already there)")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
