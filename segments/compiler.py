"""Compile a segment definition into one parameterised SQL boolean over a profile row.

Both evaluators use this compiler, so they cannot drift apart:

- the **set evaluator** (``mode="set"``) puts the expression in the WHERE clause of one query over
  ``profiles_profile`` (count or member ids). Behaviour is read through ``EXISTS`` over grouped
  subqueries that never refer to the outer row, so PostgreSQL turns them into hash semi/anti joins
  over the rollup (one pass each), never a probe per profile;
- the **single-profile check** (``mode="single"``) evaluates the same expression for one row. The
  only difference: each grouped subquery also carries ``profile_id = <the row's id>``, so it reads
  a handful of index entries instead of the whole rollup. The extra predicate is implied by the
  outer ``g.profile_id = p.id`` anyway, so the meaning is identical.

Every value goes in as a query parameter; column names and aliases come only from fixed tables in
``segments.definition``. Every condition compiles to a non-NULL boolean (NULL comparisons become
false), so ``none`` groups and negated operators behave as a marketer expects: "country is not US"
includes people whose country is unknown.

Relative times ("in the last 7 days", "age 13-19", "birthday within 7 days") are resolved in
Python from one ``now`` per evaluation, so the database clock is never read and both evaluators,
and frozen-time tests, agree. Days are UTC days.
"""

# The f-strings below interpolate only table aliases this module generates; values always travel
# as parameters, so bandit's string-built-SQL warning does not apply here.
# ruff: noqa: S608
from __future__ import annotations

import calendar
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from django.utils import timezone

from .definition import (
    AgeCondition,
    AttributeCondition,
    BirthdayCondition,
    Comparison,
    Condition,
    CustomAttributeCondition,
    DefinitionError,
    EventCountCondition,
    EventTimeCondition,
    Group,
    LifecycleStageCondition,
    MoneySpentCondition,
    NearCondition,
    Node,
    Problem,
    PropertyFilter,
    PurchaseCountCondition,
    PurchaseTimeCondition,
    PushEnabledCondition,
    SegmentCondition,
    Window,
    parse_definition,
)
from .models import LifecycleSettings, Segment

Mode = Literal["set", "single"]

EARTH_RADIUS_KM = 6371.0088
_NULLABLE_STRING_COLUMNS = frozenset({"external_id"})
# Columns every writer stores in one case: ISO codes and choices, canonicalised by
# profiles.traits.normalize_traits (the intake, the REST API, imports and the admin form all go
# through it). Equality and membership compare them exactly with the marketer's value put in that
# case, which keeps the comparison case-insensitive without lowering the column on every row (and
# lets an index serve it). Other string columns are lowered on both sides.
_CANONICAL_CASE = {
    "country": str.upper,
    "language": str.lower,
    "platform": str.lower,
    "gender": str.lower,
    "email_subscription": str.lower,
    "push_subscription": str.lower,
    "sms_subscription": str.lower,
}
_JSON_READERS = {
    "string": "segments_json_text",
    "number": "segments_json_number",
    "boolean": "segments_json_boolean",
    "datetime": "segments_json_time",
    "array": "segments_json_array",
}


# --- SQL fragments -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sql:
    """A piece of SQL with its parameters, in placeholder order. ``repeats``: a subquery of
    profile ids that may list a person more than once (once per day of a rollup)."""

    text: str
    params: tuple[Any, ...] = ()
    repeats: bool = False


TRUE = Sql("TRUE")
FALSE = Sql("FALSE")


def q(template: str, *parts: Any) -> Sql:
    """Fill each ``{}`` of ``template`` with the next part: an ``Sql`` fragment is inlined, any
    other value becomes a parameter. Templates never contain literal braces."""
    pieces = template.split("{}")
    if len(pieces) != len(parts) + 1:
        raise ValueError(f"template has {len(pieces) - 1} slots for {len(parts)} parts: {template!r}")
    text = [pieces[0]]
    params: list[Any] = []
    for part, piece in zip(parts, pieces[1:], strict=True):
        if isinstance(part, Sql):
            text.append(part.text)
            params.extend(part.params)
        else:
            text.append("%s")
            params.append(part)
        text.append(piece)
    return Sql("".join(text), tuple(params))


def join(separator: str, parts: Sequence[Sql]) -> Sql:
    return Sql(separator.join(part.text for part in parts), tuple(param for part in parts for param in part.params))


def _not_null(predicate: Sql) -> Sql:
    return q("COALESCE(({}), FALSE)", predicate)


# --- comparisons ---------------------------------------------------------------------------------


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _number_holds(comparison: Comparison, x: Decimal) -> bool:
    """Does the positive, un-negated ``comparison`` hold for ``x``? (For counts and money with no
    rows at all, where no SQL row exists to ask.)"""
    op, value = comparison.op, comparison.value
    result: bool
    if op == "between":
        result = Decimal(value[0]) <= x <= Decimal(value[1])
    else:
        v = Decimal(value)
        result = {"eq": x == v, "gt": x > v, "gte": x >= v, "lt": x < v, "lte": x <= v}[op]
    return result != comparison.negate


_ORDERING_SQL = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _ordering(expr: Sql, op: str, value: Any, cast: str = "") -> Sql:
    """``expr <op> value`` for the ordering operators and between (inclusive)."""
    if op == "between":
        return q(f"{{}} BETWEEN {{}}{cast} AND {{}}{cast}", expr, value[0], value[1])
    return q(f"{{}} {_ORDERING_SQL[op]} {{}}{cast}", expr, value)


def _lowered(values: Sequence[str]) -> Sql:
    # Lowered by PostgreSQL, like the column it is compared with, so case folding is one rule.
    return q("ARRAY(SELECT lower(x) FROM unnest({}::text[]) AS x)", list(values))


def _json_value(source: Sql, key: str, comparison: Comparison) -> Sql:
    """The value under ``key`` of a JSON object column, read as ``comparison`` expects.

    The readers (migration 0002) accept only values of the right JSON type; for a string read
    that means any scalar, as text. For equality with values that do not start with "[" or "{",
    plain ``->>`` means the same: it gives a scalar's text too, and an array's or object's JSON
    text, which starts with "[" or "{", can never equal such a value, lowered or not. It looks the
    key up once instead of twice and skips the type test, which costs a third of a scan of a
    million profiles."""
    if comparison.kind == "string" and comparison.op in ("eq", "one_of"):
        values = comparison.value if comparison.op == "one_of" else (comparison.value,)
        if not any(value.startswith(("[", "{")) for value in values):
            return q("({} ->> {}::text)", source, key)
    reader = _JSON_READERS[comparison.kind]
    return q(f"{reader}({{}} -> {{}}::text)", source, key)


def _array_includes(array: Sql, values: Sequence[str]) -> Sql:
    """Does the JSON array hold any of ``values``, compared case-insensitively as text?

    Written without a subquery over the elements (a correlated subplan per profile costs several
    microseconds each, and keeps the whole scan out of parallel workers): the array's JSON text is
    lowered and read back as JSON (lower() never produces a quote or a backslash, so it stays valid),
    then tested for containment of each lowered value. A string element matches a value that equals
    it in any case; a number or boolean element matches the value that spells it ("42", "true"),
    as it would compared as text."""
    needles: list[str] = []
    for value in values:
        needles.append(json.dumps([value], ensure_ascii=False))
        if _JSON_NUMBER.fullmatch(value):
            needles.append(f"[{value}]")
        elif value.lower() in ("true", "false"):
            needles.append(f"[{value.lower()}]")
    return q(
        "lower(({})::text)::jsonb @> ANY(ARRAY(SELECT lower(x)::jsonb FROM unnest({}::text[]) AS x))", array, needles
    )


_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,30})(?:\.[0-9]{1,30})?")


# --- the compiler --------------------------------------------------------------------------------


@dataclass
class Compiler:
    workspace_id: int
    now: datetime
    mode: Mode = "set"
    alias: str = "p"
    # True: every condition compiles to a definite boolean (never NULL), so the result may be used
    # anywhere, negated or selected. False: the result is only ever used as a WHERE clause (or read
    # with NULL meaning "no"); see ``definite``.
    definite_booleans: bool = True
    _aliases: int = 0
    _stack: list[int] = field(default_factory=list)
    _negations: int = 0
    # Behavioural conditions already computed once in the query's candidate list (see
    # ``candidates``): the id of the condition object -> the flag column that says whether the
    # candidate row is in that condition's set.
    _flags: dict[int, Sql] = field(default_factory=dict)
    # The expression for the profile's id, when the query reads the candidates rather than the
    # profile row (see ``count_query``); and whether compiling read any other profile column.
    id_expr: str = ""
    read_profile_columns: bool = False
    # The query will run with JIT off (``run_set_query``): see ``_event_members``.
    one_pass_recount: bool = False

    @property
    def today(self) -> date:
        return self.now.astimezone(UTC).date()

    @property
    def profile_id(self) -> Sql:
        return Sql(self.id_expr or f"{self.alias}.id")

    def column(self, name: str) -> Sql:
        self.read_profile_columns = True
        return Sql(f"{self.alias}.{name}")

    def fresh(self, prefix: str) -> str:
        self._aliases += 1
        return f"{prefix}{self._aliases}"

    # tree

    def node(self, node: Node) -> Sql:
        if isinstance(node, Group):
            return self.group(node)
        return self.condition(node)

    def group(self, group: Group) -> Sql:
        if group.kind == "none":
            # Written as AND of NOTs, so each negated EXISTS can become an anti join. "None of
            # (any of a, b)" is "none of a, b": the any group's children are taken in directly, as
            # NOT (a OR b) would hide each NOT EXISTS from that rewrite.
            with self.negated():
                parts = [self.node(child) for child in _none_children(group)]
            return q("({})", join(" AND ", [q("NOT {}", part) for part in parts])) if parts else TRUE
        parts = [self.node(child) for child in group.children]
        if group.kind == "all":
            return q("({})", join(" AND ", parts)) if parts else TRUE
        return q("({})", join(" OR ", parts)) if parts else FALSE

    @contextmanager
    def negated(self) -> Iterator[None]:
        """Compile what follows for use under a NOT."""
        self._negations += 1
        try:
            yield
        finally:
            self._negations -= 1

    @contextmanager
    def own_where(self) -> Iterator[None]:
        """Compile what follows for the WHERE clause of a subquery of its own (a NOT around the
        subquery does not reach inside it)."""
        negations, self._negations = self._negations, 0
        try:
            yield
        finally:
            self._negations = negations

    def definite(self, predicate: Sql) -> Sql:
        """``predicate`` as a definite boolean where that matters.

        A comparison with NULL (an unknown country, no date of birth) is NULL. In a WHERE clause
        NULL drops the row as FALSE would, and AND and OR keep that equivalence; only a NOT tells
        them apart (NOT NULL is still NULL). So the COALESCE that makes a condition FALSE instead
        of NULL is needed only under a NOT (or when the caller asked for definite booleans). Left
        out elsewhere, each comparison stays a separate qual that PostgreSQL costs on its own and
        checks cheapest first (a COALESCE around several comparisons is one opaque qual)."""
        if self.definite_booleans or self._negations:
            return _not_null(predicate)
        return predicate

    def condition(self, condition: Condition) -> Sql:
        flag = self._flags.get(id(condition))
        if flag is not None:
            return flag
        compile_ = getattr(self, f"_{type(condition).__name__}")
        result: Sql = compile_(condition)
        return result

    # comparisons on a scalar SQL expression

    def compare(self, expr: Sql, comparison: Comparison) -> Sql:
        """``comparison`` applied to ``expr`` (which may be NULL), as ``definite`` says."""
        if comparison.negate:
            return q("NOT {}", _not_null(self._positive(expr, comparison)))
        return self.definite(self._positive(expr, comparison))

    def _positive(self, expr: Sql, comparison: Comparison) -> Sql:
        kind, op, value = comparison.kind, comparison.op, comparison.value
        if kind == "string":
            if op == "exists":
                return q("{} <> ''", expr)
            if op == "eq":
                return q("lower({}) = lower({}::text)", expr, value)
            if op == "one_of":
                return q("lower({}) = ANY({})", expr, _lowered(value))
            if op == "contains":
                return q("strpos(lower({}), lower({}::text)) > 0", expr, value)
            if op == "starts_with":
                return q("starts_with(lower({}), lower({}::text))", expr, value)
        elif kind in ("number", "count"):
            if op == "exists":
                return q("{} IS NOT NULL", expr)
            return _ordering(expr, op, value, "::numeric")
        elif kind == "boolean":
            if op == "exists":
                return q("{} IS NOT NULL", expr)
            return q("{} = {}", expr, value)
        elif kind == "semver":
            if op == "exists":
                return q("{} IS NOT NULL", expr)
            if op == "between":
                return _ordering(q("segments_semver_key({})", expr), op, (list(value[0]), list(value[1])), "::bigint[]")
            return _ordering(q("segments_semver_key({})", expr), op, list(value), "::bigint[]")
        elif kind == "array":
            if op == "exists":
                return q("jsonb_array_length({}) > 0", expr)
            if op == "includes":
                return _array_includes(expr, value)
        elif kind == "date":
            return self._date(expr, op, value)
        elif kind == "datetime":
            return self._datetime(expr, op, value)
        raise DefinitionError([Problem("", f"cannot compile {op!r} on a {kind} value")])

    def _date(self, expr: Sql, op: str, value: Any) -> Sql:
        today = self.today
        if op == "exists":
            return q("{} IS NOT NULL", expr)
        if op == "before":
            return q("{} < {}", expr, value)
        if op == "after":
            return q("{} > {}", expr, value)
        if op == "on":
            return q("{} = {}", expr, value)
        if op == "between":
            return q("{} BETWEEN {} AND {}", expr, value[0], value[1])
        if op == "more_than_days_ago":
            return q("{} < {}", expr, today - timedelta(days=value))
        if op == "less_than_days_ago":
            return q("{} BETWEEN {} AND {}", expr, today - timedelta(days=value), today)
        if op == "within_next_days":
            return q("{} BETWEEN {} AND {}", expr, today, today + timedelta(days=value))
        raise DefinitionError([Problem("", f"cannot compile {op!r} on a date")])

    def _datetime(self, expr: Sql, op: str, value: Any) -> Sql:
        now = self.now
        if op == "exists":
            return q("{} IS NOT NULL", expr)
        is_day = not isinstance(value, datetime | tuple)
        if op == "before":
            return q("{} < {}", expr, _day_start(value) if is_day else value)
        if op == "after":
            return q("{} >= {}", expr, _day_start(value + timedelta(days=1))) if is_day else q("{} > {}", expr, value)
        if op == "on":
            return q("({} >= {} AND {} < {})", expr, _day_start(value), expr, _day_start(value + timedelta(days=1)))
        if op == "between":
            low, high = value
            if isinstance(low, datetime):
                return q("{} BETWEEN {} AND {}", expr, low, high)
            return q("({} >= {} AND {} < {})", expr, _day_start(low), expr, _day_start(high + timedelta(days=1)))
        if op == "more_than_days_ago":
            return q("{} < {}", expr, now - timedelta(days=value))
        if op == "less_than_days_ago":
            return q("{} BETWEEN {} AND {}", expr, now - timedelta(days=value), now)
        if op == "within_next_days":
            return q("{} BETWEEN {} AND {}", expr, now, now + timedelta(days=value))
        raise DefinitionError([Problem("", f"cannot compile {op!r} on a time")])

    # membership of a grouped subquery

    def _member_of(self, subquery: Sql) -> Sql:
        """``EXISTS`` over a subquery listing profile ids. The correlation sits outside the grouped
        subquery, so at the top level PostgreSQL plans a hash semi join (anti join under NOT)."""
        g = self.fresh("g")
        return q(f"EXISTS (SELECT 1 FROM ({{}}) AS {g} WHERE {g}.profile_id = {{}})", subquery, self.profile_id)

    def _scope(self, table_alias: str) -> Sql:
        """Rows of this workspace (the set evaluator: leads its indexes) or of this profile only
        (the single-profile check: leads the primary key or the profile's index instead)."""
        if self.mode == "single":
            return q(f" AND {table_alias}.profile_id = {{}}", self.profile_id)
        return q(f" AND {table_alias}.workspace_id = {{}}", self.workspace_id)

    def _aggregate(
        self, comparison: Comparison, members: Callable[[Comparison], Sql | None], zero: Decimal = Decimal(0)
    ) -> Sql:
        """ "The aggregate (count, sum) of a person's rows satisfies ``comparison``", where a person
        with no rows has the aggregate ``zero``. ``members(c)`` lists the people with rows whose
        aggregate satisfies ``c``, or None when nobody can.

        When zero satisfies the comparison (at most 2 times, less than $10), the people *without*
        rows qualify too, so it compiles as NOT (member of the negated comparison)."""
        if not _number_holds(comparison, zero):
            subquery = members(comparison)
            return self._member_of(subquery) if subquery is not None else FALSE
        negated = Comparison(comparison.kind, comparison.op, comparison.value, not comparison.negate)
        subquery = members(negated)
        return q("NOT {}", self._member_of(subquery)) if subquery is not None else TRUE

    def _aggregate_predicate(self, expr: Sql, comparison: Comparison) -> Sql:
        # Counts compare as bigint (what count() and SUM() of integers return), money as numeric.
        predicate = _ordering(
            expr, comparison.op, comparison.value, "::bigint" if comparison.kind == "count" else "::numeric"
        )
        return q("NOT ({})", predicate) if comparison.negate else predicate

    # profile attributes

    def _AttributeCondition(self, c: AttributeCondition) -> Sql:
        expr = self.column(c.column)
        canonical = _CANONICAL_CASE.get(c.column)
        if canonical is not None and c.comparison.op in ("eq", "one_of"):
            op, value = c.comparison.op, c.comparison.value
            predicate = (
                q("{} = {}::text", expr, canonical(value))
                if op == "eq"
                else q("{} = ANY({}::text[])", expr, [canonical(item) for item in value])
            )
            # The column is NOT NULL: the predicate is never NULL, and its negation is exact.
            return q("NOT ({})", predicate) if c.comparison.negate else q("({})", predicate)
        if c.column in _NULLABLE_STRING_COLUMNS:
            expr = q("COALESCE({}, '')", expr)
        if c.comparison.kind == "semver" and c.comparison.op == "exists":
            expr = q("NULLIF({}, '')", expr)
        return self.compare(expr, c.comparison)

    def _CustomAttributeCondition(self, c: CustomAttributeCondition) -> Sql:
        return self.compare(_json_value(self.column("custom_attributes"), c.key, c.comparison), c.comparison)

    def _AgeCondition(self, c: AgeCondition) -> Sql:
        # Whole years as of today (UTC), as date-of-birth bounds: "age >= A" is "born on or before
        # the day A years ago". Someone born on February 29 turns a year older on March 1 in
        # common years (and is 0 on the day of birth).
        dob = self.column("date_of_birth")
        op, value = c.comparison.op, c.comparison.value
        low: int | None
        high: int | None
        if op == "between":
            low, high = value
        else:
            low, high = {
                "eq": (value, value),
                "gt": (value + 1, None),
                "gte": (value, None),
                "lt": (None, value - 1),
                "lte": (None, value),
            }[op]
        parts = [q("{} IS NOT NULL", dob)]
        if low is not None:
            latest = self._born_by(low)
            parts.append(q("{} <= {}", dob, latest) if latest else FALSE)
        if high is not None:
            earliest = self._born_by(high + 1)
            if earliest is not None:
                parts.append(q("{} > {}", dob, earliest))
            if high < 0:
                parts.append(FALSE)
        if c.comparison.negate:
            return q("NOT {}", _not_null(join(" AND ", parts)))
        return self.definite(join(" AND ", parts))

    def _born_by(self, years: int) -> date | None:
        """The latest date of birth of someone at least ``years`` old today; None if nobody can be."""
        today = self.today
        year = today.year - years
        if year < 1:
            return None
        day = today.day
        if today.month == 2 and day == 29 and not calendar.isleap(year):
            day = 28
        return date(year, today.month, day)

    def _BirthdayCondition(self, c: BirthdayCondition) -> Sql:
        dob = self.column("date_of_birth")
        if c.op == "in_month":
            return self.definite(q("EXTRACT(MONTH FROM {}) = {}", dob, c.month))
        if c.op == "on":
            days = [c.month * 100 + c.day]
        else:
            days = birthday_month_days(self.today, 0 if c.op == "today" else c.days)
        return self.definite(
            q("(EXTRACT(MONTH FROM {}) * 100 + EXTRACT(DAY FROM {}))::integer = ANY({}::integer[])", dob, dob, days)
        )

    def _NearCondition(self, c: NearCondition) -> Sql:
        # Haversine distance from the last known coordinates. The latitude band (one degree of
        # latitude is the same length everywhere) discards most rows before the trigonometry.
        lat, lon = self.column("latitude"), self.column("longitude")
        band = math.degrees(c.radius_km / EARTH_RADIUS_KM) + 1e-9
        distance = q(
            "2 * {}::float8 * asin(least(1, sqrt("
            "power(sin(radians({} - {}::float8) / 2), 2)"
            " + cos(radians({}::float8)) * cos(radians({})) * power(sin(radians({} - {}::float8) / 2), 2))))",
            EARTH_RADIUS_KM,
            lat,
            c.latitude,
            c.latitude,
            lat,
            lon,
            c.longitude,
        )
        return self.definite(
            q(
                "{} BETWEEN {}::float8 AND {}::float8 AND {} IS NOT NULL AND {} <= {}::float8",
                lat,
                c.latitude - band,
                c.latitude + band,
                lon,
                distance,
                c.radius_km,
            )
        )

    def _PushEnabledCondition(self, c: PushEnabledCondition) -> Sql:
        d = self.fresh("d")
        exists = q(
            f"EXISTS (SELECT 1 FROM profiles_device {d} WHERE {d}.profile_id = {{}} AND {d}.push_enabled)",
            self.profile_id,
        )
        return exists if c.enabled else q("NOT {}", exists)

    def _LifecycleStageCondition(self, c: LifecycleStageCondition) -> Sql:
        first_seen, last_seen = self.column("first_seen"), self.column("last_seen")
        new_since = self._lifecycle_since("new_days", LifecycleSettings.DEFAULT_NEW_DAYS)
        active_since = self._lifecycle_since("lapsed_after_days", LifecycleSettings.DEFAULT_LAPSED_AFTER_DAYS)
        lapsed_since = self._lifecycle_since("churned_after_days", LifecycleSettings.DEFAULT_CHURNED_AFTER_DAYS)
        with self.negated() if c.negate else nullcontext():
            # "Not new" is a NOT of its own: first seen must be known and recent to be new.
            not_new = q("NOT {}", _not_null(q("{} >= {}", first_seen, new_since)))
            stages = {
                "new": self.definite(q("{} >= {}", first_seen, new_since)),
                "active": q("({} AND {})", not_new, self.definite(q("{} >= {}", last_seen, active_since))),
                "lapsed": q(
                    "({} AND {})",
                    not_new,
                    self.definite(q("{} < {} AND {} >= {}", last_seen, active_since, last_seen, lapsed_since)),
                ),
                "churned": q("({} AND {})", not_new, self.definite(q("{} < {}", last_seen, lapsed_since))),
            }
        predicate = q("({})", join(" OR ", [stages[stage] for stage in c.stages]))
        return q("NOT {}", predicate) if c.negate else predicate

    def _lifecycle_since(self, threshold: str, default: int) -> Sql:
        """``now`` minus the workspace's threshold in days, read by the query itself (an uncorrelated
        subquery, evaluated once) rather than by a query of its own: the single-profile check stays
        one round trip. Without a settings row, the default."""
        # One scalar subquery around the whole expression, so it is computed once (an InitPlan), not
        # subtracted again for every profile.
        return q(
            f"(SELECT {{}}::timestamptz - make_interval(days => COALESCE(max(ls.{threshold}), {{}}))"
            " FROM segments_lifecyclesettings ls WHERE ls.workspace_id = {})",
            self.now,
            default,
            self.workspace_id,
        )

    # behaviour: events

    def _EventCountCondition(self, c: EventCountCondition) -> Sql:
        return self._aggregate(c.comparison, self._event_count_members(c))

    def _event_count_members(self, c: EventCountCondition) -> Callable[[Comparison], Sql | None]:
        start, end = c.window.bounds(self.now)

        def members(comparison: Comparison) -> Sql | None:
            minimum = _smallest_positive_count(comparison)
            if minimum is None:
                return None
            if c.properties:
                return self._event_members_with_properties(c, start, end, comparison, minimum)
            if _holds_for_every_positive_count(comparison) and _rollup_decides_presence(start, end):
                return self._event_performers(c.event, start, end)
            return self._event_members(c.event, start, end, comparison)

        return members

    def _rollup_rows(self, r: str, event: str, start: datetime | None, end: datetime | None) -> Sql:
        """FROM/WHERE over the rollup rows of ``event`` on the days the window touches."""
        parts = [q(f"segments_eventdailycount {r} WHERE {r}.name = {{}}", event), self._scope(r)]
        if start is not None:
            parts.append(q(f" AND {r}.day >= {{}}", _first_day(start)))
        if end is not None:
            parts.append(q(f" AND {r}.day <= {{}}", _last_day(end)))
        return join("", parts)

    def _event_performers(self, event: str, start: datetime | None, end: datetime | None) -> Sql:
        """People who did ``event`` at least once in the window, from the rollup alone: a day's row
        has an event inside the window exactly when its last event is at or after the start and its
        first is before the end (when start and end are on different days; see
        ``_rollup_decides_presence``). No grouping and no recount; a person may be listed once per
        day, which the EXISTS around it does not mind."""
        r = self.fresh("r")
        parts = [q(f"SELECT {r}.profile_id FROM {{}}", self._rollup_rows(r, event, start, end))]
        if start is not None:
            parts.append(q(f" AND {r}.last_at >= {{}}", start))
        if end is not None:
            parts.append(q(f" AND {r}.first_at < {{}}", end))
        listed = join("", parts)
        return Sql(listed.text, listed.params, repeats=True)

    def _event_members(self, event: str, start: datetime | None, end: datetime | None, comparison: Comparison) -> Sql:
        """People whose count of ``event`` in the window satisfies ``comparison``.

        Grouped straight from the rollup rows of the days the window touches (so the planner
        estimates the groups from its statistics): a row whose events all fall inside the window
        counts in full, one whose events all fall outside counts nothing, and only a row of the
        window's first or last day with events on both sides of the boundary (about 1 in 250 on
        the benchmark) is recounted from that person's events of that day (an index range on
        (profile, timestamp)). Two shapes of the same count:

        - ``one_pass_recount`` (``count_query``, run with JIT off): one aggregate, the recount a
          correlated subquery in it that runs for the straddling rows only. The fastest shape (a
          third faster than the other on the benchmark's windowed counts) and the one a person
          writes by hand, but PostgreSQL costs the subquery as if it ran for every row: a plan
          costed in millions, which with JIT on spends 100-130 ms compiling a 100 ms query.
        - otherwise (queries others embed and run as they are): the recounts grouped on their own
          and added per person with a LEFT JOIN, costed as what it is.
        """
        r = self.fresh("r")
        rows = self._rollup_rows(r, event, start, end)
        if start is None and end is None:
            return q(
                f"SELECT {r}.profile_id FROM {{}} GROUP BY {r}.profile_id HAVING {{}}",
                rows,
                self._aggregate_predicate(Sql(f"SUM({r}.count)"), comparison),
            )
        if self.one_pass_recount:
            e = self.fresh("e")
            recount = join(" AND ", self._recount_bounds(e, r, start, end))
            # The count stays an integer, so SUM adds integers (a bigint SUM goes through numeric).
            count = q(
                f"SUM(CASE WHEN {{}} THEN {r}.count WHEN {{}} THEN 0"
                f" ELSE (SELECT count(*) FROM profiles_event {e} WHERE {{}})::integer END)",
                self._inside(r, start, end),
                self._outside(r, start, end),
                recount,
            )
            return q(
                f"SELECT {r}.profile_id FROM {{}} GROUP BY {r}.profile_id HAVING {{}}",
                rows,
                self._aggregate_predicate(count, comparison),
            )
        b, e, g, x = self.fresh("b"), self.fresh("e"), self.fresh("g"), self.fresh("x")
        boundary_days = [day for day in (_first_day(start) if start else None, _last_day(end) if end else None) if day]
        # No filter on first/last time beside the day range: the planner would cost it as if
        # independent of the day and underestimate the rows tenfold; rows wholly outside the
        # window add 0.
        whole_days = q(
            f"SELECT {r}.profile_id, SUM(CASE WHEN {{}} THEN {r}.count ELSE 0 END) AS n FROM {{}}"
            f" GROUP BY {r}.profile_id",
            self._inside(r, start, end),
            rows,
        )
        boundary = q(
            f"SELECT {b}.profile_id, count(*) AS n FROM segments_eventdailycount {b} JOIN profiles_event {e} ON {{}}"
            f" WHERE {b}.name = {{}}{{}} AND {b}.day = ANY({{}}::date[]) AND NOT ({{}}) AND NOT ({{}})"
            f" GROUP BY {b}.profile_id",
            join(" AND ", self._recount_bounds(e, b, start, end)),
            event,
            self._scope(b),
            boundary_days,
            self._inside(b, start, end),
            self._outside(b, start, end),
        )
        return q(
            f"SELECT {g}.profile_id FROM ({{}}) AS {g} LEFT JOIN ({{}}) AS {x} ON {x}.profile_id = {g}.profile_id"
            " WHERE {}",
            whole_days,
            boundary,
            self._aggregate_predicate(Sql(f"({g}.n + COALESCE({x}.n, 0))"), comparison),
        )

    @staticmethod
    def _recount_bounds(e: str, r: str, start: datetime | None, end: datetime | None) -> list[Sql]:
        """The events ``e`` of the rollup row ``r`` (its person, event and day) inside the window."""
        bounds = [
            Sql(f"{e}.profile_id = {r}.profile_id AND {e}.name = {r}.name"),
            Sql(f"{e}.timestamp >= ({r}.day::timestamp AT TIME ZONE 'UTC')"),
            Sql(f"{e}.timestamp < (({r}.day + 1)::timestamp AT TIME ZONE 'UTC')"),
        ]
        if start is not None:
            bounds.append(q(f"{e}.timestamp >= {{}}", start))
        if end is not None:
            bounds.append(q(f"{e}.timestamp < {{}}", end))
        return bounds

    @staticmethod
    def _inside(r: str, start: datetime | None, end: datetime | None) -> Sql:
        """The rollup row's events all fall inside the window."""
        parts = [TRUE]
        if start is not None:
            parts.append(q(f"{r}.first_at >= {{}}", start))
        if end is not None:
            parts.append(q(f"{r}.last_at < {{}}", end))
        return join(" AND ", parts)

    @staticmethod
    def _outside(r: str, start: datetime | None, end: datetime | None) -> Sql:
        """The rollup row's events all fall outside the window."""
        parts = [FALSE]
        if start is not None:
            parts.append(q(f"{r}.last_at < {{}}", start))
        if end is not None:
            parts.append(q(f"{r}.first_at >= {{}}", end))
        return join(" OR ", parts)

    def _event_members_with_properties(
        self, c: EventCountCondition, start: datetime | None, end: datetime | None, comparison: Comparison, minimum: int
    ) -> Sql:
        # Property values live only on the events: the rollup narrows the people to those who did
        # the event at least ``minimum`` times on the window's days, then their own events are
        # counted through the (profile, timestamp) index.
        r, m, e = self.fresh("r"), self.fresh("m"), self.fresh("e")
        candidates = q(
            f"SELECT {r}.profile_id FROM {{}} GROUP BY {r}.profile_id HAVING SUM({r}.count) >= {{}}",
            self._rollup_rows(r, c.event, start, end),
            minimum,
        )
        filters = [q(f"{e}.profile_id = {m}.profile_id AND {e}.name = {{}}", c.event)]
        if start is not None:
            filters.append(q(f"{e}.timestamp >= {{}}", start))
        if end is not None:
            filters.append(q(f"{e}.timestamp < {{}}", end))
        with self.own_where():
            filters.extend(self._property(Sql(f"{e}.properties"), prop) for prop in c.properties)
        count = q(f"(SELECT count(*) FROM profiles_event {e} WHERE {{}})", join(" AND ", filters))
        return q(
            f"SELECT {m}.profile_id FROM ({{}}) AS {m} WHERE {{}}",
            candidates,
            self._aggregate_predicate(count, comparison),
        )

    def _property(self, properties: Sql, prop: PropertyFilter) -> Sql:
        return self.compare(_json_value(properties, prop.key, prop.comparison), prop.comparison)

    def _EventTimeCondition(self, c: EventTimeCondition) -> Sql:
        r = self.fresh("r")
        rows = self._rollup_rows(r, c.event, None, None)
        aggregate = Sql(f"min({r}.first_at)" if c.which == "first" else f"max({r}.last_at)")
        return self._time_of_rows(r, rows, aggregate, c.comparison)

    def _time_of_rows(self, alias: str, rows: Sql, aggregate: Sql, comparison: Comparison) -> Sql:
        if comparison.op == "exists":
            member = self._member_of(q(f"SELECT {alias}.profile_id FROM {{}}", rows))
            return q("NOT {}", member) if comparison.negate else member
        return self._member_of(
            q(
                f"SELECT {alias}.profile_id FROM {{}} GROUP BY {alias}.profile_id HAVING {{}}",
                rows,
                self._positive(aggregate, comparison),
            )
        )

    # behaviour: purchases

    def _purchase_rows(self, u: str, window: Window, products: tuple[str, ...], currency: str = "") -> Sql:
        parts = [Sql(f"profiles_purchase {u} WHERE TRUE"), self._scope(u)]
        start, end = window.bounds(self.now)
        if start is not None:
            parts.append(q(f" AND {u}.timestamp >= {{}}", start))
        if end is not None:
            parts.append(q(f" AND {u}.timestamp < {{}}", end))
        if products:
            parts.append(q(f" AND {u}.product_id = ANY({{}}::text[])", list(products)))
        if currency:
            parts.append(q(f" AND upper({u}.currency) = {{}}", currency))
        return join("", parts)

    def _PurchaseCountCondition(self, c: PurchaseCountCondition) -> Sql:
        return self._aggregate(c.comparison, self._purchase_count_members(c))

    def _purchase_count_members(self, c: PurchaseCountCondition) -> Callable[[Comparison], Sql | None]:
        def members(comparison: Comparison) -> Sql | None:
            if _smallest_positive_count(comparison) is None:
                return None
            u = self.fresh("u")
            return q(
                f"SELECT {u}.profile_id FROM {{}} GROUP BY {u}.profile_id HAVING {{}}",
                self._purchase_rows(u, c.window, c.products),
                self._aggregate_predicate(Sql("count(*)"), comparison),
            )

        return members

    def _MoneySpentCondition(self, c: MoneySpentCondition) -> Sql:
        return self._aggregate(c.comparison, self._money_spent_members(c))

    def _money_spent_members(self, c: MoneySpentCondition) -> Callable[[Comparison], Sql | None]:
        def members(comparison: Comparison) -> Sql | None:
            u = self.fresh("u")
            return q(
                f"SELECT {u}.profile_id FROM {{}} GROUP BY {u}.profile_id HAVING {{}}",
                self._purchase_rows(u, c.window, c.products, c.currency),
                self._aggregate_predicate(Sql(f"SUM({u}.price * {u}.quantity)"), comparison),
            )

        return members

    def membership(self, condition: Condition) -> Sql | None:
        """For a behavioural condition that only people with rows can meet (did E at least 3 times,
        spent over $100), the subquery listing them (a person may be listed more than once); None
        for any other condition."""
        members: Callable[[Comparison], Sql | None]
        if isinstance(condition, EventCountCondition):
            members = self._event_count_members(condition)
        elif isinstance(condition, PurchaseCountCondition):
            members = self._purchase_count_members(condition)
        elif isinstance(condition, MoneySpentCondition):
            members = self._money_spent_members(condition)
        else:
            return None
        if _number_holds(condition.comparison, Decimal(0)):
            return None  # people without rows qualify too
        return members(condition.comparison)

    def _PurchaseTimeCondition(self, c: PurchaseTimeCondition) -> Sql:
        u = self.fresh("u")
        rows = self._purchase_rows(u, Window(), ())
        aggregate = Sql(f"min({u}.timestamp)" if c.which == "first" else f"max({u}.timestamp)")
        return self._time_of_rows(u, rows, aggregate, c.comparison)

    # candidates: OR of behaviours

    def candidates(self, root: Group, alias: str = "c") -> Candidates | None:
        """The only people who can match ``root``, when its behavioural conditions say so: a
        subquery of ``profile_id`` with one flag column per such condition, each behaviour set
        computed once; ``None`` when the tree offers no such list (every condition in it may hold
        for people without rows). Afterwards, this compiler compiles each of those conditions as
        its flag (``alias.fN``), so the tree must be compiled over rows joined to the candidates.

        "(US and 3+ sessions in 14 days) or (France and 5+ views in 30 days)" can only match
        people in one of the two behaviour sets. Written as an OR of EXISTS over every profile,
        PostgreSQL can only probe two hashed subplans for each of a million profiles; read from
        the union of the two sets (tens of thousands of people), with a flag per set, the rest of
        the tree is checked on those people alone."""
        formula = self._necessary(root)
        if formula is None:
            return None
        leaves: list[tuple[Condition, Sql]] = []
        _collect_leaves(formula, leaves)
        u = self.fresh("u")
        union = join(
            " UNION ALL ",
            [q(f"SELECT m.profile_id, {n} AS k FROM ({{}}) AS m", members) for n, (_, members) in enumerate(leaves)],
        )
        flags = [Sql(f"bool_or({u}.k = {n}) AS f{n}") for n in range(len(leaves))]
        having = _formula_sql(formula, {id(leaf): Sql(f"bool_or({u}.k = {n})") for n, (leaf, _) in enumerate(leaves)})
        for n, (leaf, _) in enumerate(leaves):
            self._flags[id(leaf)] = Sql(f"{alias}.f{n}")
        query = q(
            f"SELECT {u}.profile_id, {{}} FROM ({{}}) AS {u} GROUP BY {u}.profile_id HAVING {{}}",
            join(", ", flags),
            union,
            having,
        )
        return Candidates(query, f"{u}.profile_id", _has_or(formula), union)

    def _necessary(self, node: Node) -> _Formula | None:
        """A formula over behavioural conditions that ``node`` implies (every member of ``node``
        is in the sets it names), or None when no such formula is known."""
        if isinstance(node, Group):
            if node.kind == "none":
                return None
            parts = [self._necessary(child) for child in node.children]
            if node.kind == "all":
                known = [part for part in parts if part is not None]
                return _Formula("and", tuple(known)) if known else None
            if not parts or any(part is None for part in parts):
                return None
            return _Formula("or", tuple(part for part in parts if part is not None))
        if isinstance(node, SegmentCondition):
            return None
        members = self.membership(node)
        return _Formula("leaf", (), node, members) if members is not None else None

    # other segments

    def _SegmentCondition(self, c: SegmentCondition) -> Sql:
        if c.segment_id in self._stack:
            raise DefinitionError([Problem(c.path, f"segment #{c.segment_id} refers back to itself")])
        found = Segment.objects.filter(workspace_id=self.workspace_id, pk=c.segment_id).values_list(
            "definition", flat=True
        )
        definition = next(iter(found), None)
        if definition is None:
            raise DefinitionError([Problem(c.path, f"segment #{c.segment_id} does not exist in this workspace")])
        try:
            root = parse_definition(definition)
        except DefinitionError as error:
            raise DefinitionError([Problem(c.path, f"segment #{c.segment_id} is invalid: {error}")]) from None
        self._stack.append(c.segment_id)
        try:
            return self.group(root)
        finally:
            self._stack.pop()


@dataclass(frozen=True)
class _Formula:
    """AND / OR of behavioural conditions (leaves, each with the subquery listing its people)."""

    kind: Literal["and", "or", "leaf"]
    parts: tuple[_Formula, ...] = ()
    leaf: Condition | None = None
    members: Sql | None = None


@dataclass(frozen=True)
class Candidates:
    """See ``Compiler.candidates``: the subquery, its id column, whether the formula that chose
    the candidates has an OR (a tree whose behaviour sets are only ANDed already plans as semi
    joins over the profiles), and the plain union of the sets (a row per set member, for the
    planner's estimate of how many there are)."""

    query: Sql
    key: str
    has_or: bool
    union: Sql


def _has_or(formula: _Formula) -> bool:
    return formula.kind == "or" or any(_has_or(part) for part in formula.parts)


def _collect_leaves(formula: _Formula, found: list[tuple[Condition, Sql]]) -> None:
    if formula.leaf is not None and formula.members is not None:
        found.append((formula.leaf, formula.members))
    for part in formula.parts:
        _collect_leaves(part, found)


def _formula_sql(formula: _Formula, flags: dict[int, Sql]) -> Sql:
    if formula.leaf is not None:
        return flags[id(formula.leaf)]
    return q(
        "({})", join(" AND " if formula.kind == "and" else " OR ", [_formula_sql(p, flags) for p in formula.parts])
    )


def _none_children(group: Group) -> list[Node]:
    """The children of a "none" group, with those of "any" groups among them taken in directly."""
    children: list[Node] = []
    for child in group.children:
        if isinstance(child, Group) and child.kind == "any":
            children.extend(_none_children(Group(child.path, "none", child.children)))
        else:
            children.append(child)
    return children


def _first_day(start: datetime) -> date:
    return start.astimezone(UTC).date()


def _last_day(end: datetime) -> date:
    """The UTC day of the last instant before the (exclusive) ``end``."""
    return (end - timedelta(microseconds=1)).astimezone(UTC).date()


def _holds_for_every_positive_count(comparison: Comparison) -> bool:
    """Does ``comparison`` hold for every count >= 1 (it is "at least once")? Past the largest
    threshold every comparison is constant, so a short scan decides it."""
    value = comparison.value
    largest = max(value) if isinstance(value, tuple) else value
    return all(_number_holds(comparison, Decimal(n)) for n in range(1, int(largest) + 3))


def _rollup_decides_presence(start: datetime | None, end: datetime | None) -> bool:
    """Can the rollup alone say whether someone did an event in the window? Yes unless the window
    starts and ends inside the same day: a row of that day with events before the start and after
    the end may or may not have one in between."""
    return start is None or end is None or _first_day(start) != _last_day(end)


def _smallest_positive_count(comparison: Comparison) -> int | None:
    """The smallest count >= 1 that satisfies ``comparison``, or None when none does. Past the
    largest threshold every comparison is constant, so a short scan decides it."""
    value = comparison.value
    largest = max(value) if isinstance(value, tuple) else value
    for n in range(1, int(largest) + 3):
        if _number_holds(comparison, Decimal(n)):
            return n
    return None


def birthday_month_days(today: date, days: int) -> list[int]:
    """Birthdays (as month * 100 + day) celebrated from ``today`` to ``today + days`` inclusive.
    People born on February 29 celebrate on March 1 in common years."""
    found: list[int] = []
    for offset in range(days + 1):
        day = today + timedelta(days=offset)
        found.append(day.month * 100 + day.day)
        if day.month == 3 and day.day == 1 and not calendar.isleap(day.year):
            found.append(229)
    return sorted(set(found))


# --- entry points --------------------------------------------------------------------------------


def compile_where(
    definition: Group | dict[str, Any],
    *,
    workspace_id: int,
    now: datetime | None = None,
    mode: Mode = "set",
    alias: str = "p",
    segment_id: int | None = None,
    definite: bool = True,
) -> Sql:
    """The definition as a boolean SQL expression over the profile row ``alias``.

    With ``definite`` (the default) it is never NULL, so it may be negated, selected or combined
    freely. ``definite=False`` is for a caller that uses it only as a WHERE clause, or reads NULL
    as "not in the segment": it may then be NULL where it would be FALSE, which lets PostgreSQL
    check its comparisons one by one, cheapest first (see ``Compiler.definite``)."""
    root = definition if isinstance(definition, Group) else parse_definition(definition)
    compiler = Compiler(
        workspace_id=workspace_id, now=now or timezone.now(), mode=mode, alias=alias, definite_booleans=definite
    )
    if segment_id is not None:
        compiler._stack.append(segment_id)
    return compiler.group(root)


def count_query(
    definition: Group | dict[str, Any],
    *,
    workspace_id: int,
    now: datetime | None = None,
    segment_id: int | None = None,
    candidates_by_key: bool = True,
) -> Sql:
    """``SELECT count(*)`` of the people a definition matches, in the cheapest exact form.

    A definition that is one behavioural condition only people with rows can meet ("did E at
    least 3 times in 30 days", "spent $200 in 90 days") is counted from that condition's people
    alone, without a pass over the profiles: every rollup row and purchase belongs to a profile
    of its own workspace (foreign keys on the events and purchases, which the intake and merges
    write with their profile's workspace; the rollup is derived from the events).

    Otherwise, when the tree's behaviour says who can match (``Compiler.candidates``), the
    candidates are counted: by themselves if nothing else in the tree reads a profile column
    ("added to cart but did not buy", "opened the app 5+ times, never purchased"); joined to
    their profiles, read by primary key, when an OR of behaviours needs them ("US and 3+
    sessions, or France and 5+ views") and ``candidates_by_key`` (the caller's judgement that the
    candidates are few: see ``candidates_probe``). Anything else counts the profiles the full
    expression matches.

    Run it through ``segments.selectors.run_set_query``: it is compiled for JIT off (see
    ``Compiler._event_members``)."""
    plan = _count_plan(definition, workspace_id=workspace_id, now=now, segment_id=segment_id)
    compiler, root, candidates = plan.compiler, plan.root, plan.candidates
    if plan.members is not None:
        if not plan.members.repeats:  # already one row per person (grouped)
            return q("SELECT count(*) FROM ({}) AS members", plan.members)
        return q("SELECT count(*) FROM (SELECT DISTINCT m.profile_id FROM ({}) AS m) AS members", plan.members)
    if candidates is not None and not plan.reads_profiles:
        # Checked on the candidates alone: as a person would write "did A but never B", with no
        # pass over the profiles, which the candidates all belong to (as above).
        compiler.id_expr = "c.profile_id"
        return q("SELECT count(*) FROM ({}) AS c WHERE {}", candidates.query, compiler.group(root))
    if candidates is not None and candidates.has_or and candidates_by_key:
        # In id order, the profiles are read by primary key in the order of the table, page after
        # page, rather than at random (about twice as fast when the table is larger than shared
        # buffers).
        return q(
            f"SELECT count(*) FROM ({{}} ORDER BY {candidates.key}) AS c"
            " JOIN profiles_profile p ON p.id = c.profile_id WHERE p.workspace_id = {} AND {}",
            candidates.query,
            workspace_id,
            compiler.group(root),
        )
    compiler._flags.clear()
    return q(
        "SELECT count(*) FROM profiles_profile p WHERE p.workspace_id = {} AND {}", workspace_id, compiler.group(root)
    )


def candidates_probe(
    definition: Group | dict[str, Any], *, workspace_id: int, now: datetime | None = None, segment_id: int | None = None
) -> Sql | None:
    """When ``count_query`` would read the candidates' profiles by primary key, the union of their
    behaviour sets (a row per member, and per day for "at least once" sets), whose size the
    planner can estimate from the rollup's statistics; None otherwise. By key, each candidate
    costs a few microseconds; a pass over the profiles costs a fraction of one per profile, so past
    a share of the table the pass is cheaper (see ``segments.selectors``)."""
    plan = _count_plan(definition, workspace_id=workspace_id, now=now, segment_id=segment_id)
    if plan.candidates is not None and plan.candidates.has_or and plan.reads_profiles:
        return plan.candidates.union
    return None


@dataclass
class _CountPlan:
    compiler: Compiler
    root: Group
    members: Sql | None = None
    candidates: Candidates | None = None
    reads_profiles: bool = True


def _count_plan(
    definition: Group | dict[str, Any], *, workspace_id: int, now: datetime | None, segment_id: int | None
) -> _CountPlan:
    root = definition if isinstance(definition, Group) else parse_definition(definition)
    compiler = Compiler(
        workspace_id=workspace_id, now=now or timezone.now(), definite_booleans=False, one_pass_recount=True
    )
    if segment_id is not None:
        compiler._stack.append(segment_id)
    plan = _CountPlan(compiler, root)
    only = root.children[0] if root.kind == "all" and len(root.children) == 1 else None
    if only is not None and not isinstance(only, Group):
        plan.members = compiler.membership(only)
        if plan.members is not None:
            return plan
    plan.candidates = compiler.candidates(root)
    if plan.candidates is not None:
        # Compiled once over the candidates alone, to learn whether the tree reads the profile.
        compiler.id_expr, compiler.read_profile_columns = "c.profile_id", False
        compiler.group(root)
        compiler.id_expr = ""
        plan.reads_profiles = compiler.read_profile_columns
    return plan


def members_query(segment: Segment, *, now: datetime | None = None) -> Sql:
    """``SELECT p.id FROM profiles_profile p WHERE <in segment>`` (the set evaluator)."""
    where = compile_where(
        segment.definition, workspace_id=segment.workspace_id, now=now, segment_id=segment.pk, definite=False
    )
    return q("SELECT p.id FROM profiles_profile p WHERE p.workspace_id = {} AND {}", segment.workspace_id, where)


def single_profile_query(segment: Segment, *, profile_id: int, now: datetime | None = None) -> Sql:
    """One row with one boolean (NULL meaning no), or no row if the profile is not in the
    segment's workspace."""
    where = compile_where(
        segment.definition,
        workspace_id=segment.workspace_id,
        now=now,
        mode="single",
        segment_id=segment.pk,
        definite=False,
    )
    return q(
        "SELECT {} FROM profiles_profile p WHERE p.id = {} AND p.workspace_id = {}",
        where,
        profile_id,
        segment.workspace_id,
    )
