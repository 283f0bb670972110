"""Which variant (or the control group) a person gets in a campaign.

Deterministic per (campaign, person): the same person lands in the same variant every time they
qualify again, and in the control group for good if they were there once, without storing any
assignment. The split is over 10,000 buckets drawn from a hash of both ids, so it does not
correlate with the profile's own random bucket (which marketers use for holdouts of their own).

The hash is MD5 (not for security: for its being built into PostgreSQL too), so a launch can assign
variants inside its one ``INSERT ... SELECT`` with ``assignment_bucket_sql`` and land every person
exactly where ``assign_variant`` would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

BUCKETS = 10_000
CONTROL = "control"


@dataclass(frozen=True)
class Split:
    key: str
    percent: int


def assignment_bucket(campaign_id: int, profile_id: int) -> int:
    # The first 15 hex digits (60 bits) stay positive in a PostgreSQL bigint; see assignment_bucket_sql.
    digest = hashlib.md5(f"{campaign_id}:{profile_id}".encode(), usedforsecurity=False).hexdigest()
    return int(digest[:15], 16) % BUCKETS


def assignment_bucket_sql(campaign_id: str, profile_id: str) -> str:
    """``assignment_bucket`` as a SQL expression over two SQL expressions (column names or
    placeholders, never user input)."""
    # mod() rather than %: the expression goes into queries with %s placeholders.
    return (
        f"mod(('x' || substr(md5(({campaign_id})::text || ':' || ({profile_id})::text), 1, 15))::bit(60)::bigint,"
        f" {BUCKETS})"
    )


def assign_variant(*, campaign_id: int, profile_id: int, control_percent: int, variants: Sequence[Split]) -> str:
    """The key of the person's variant, or ``CONTROL``.

    ``control_percent`` of people are held out; the rest are split between the variants in
    proportion to their percentages (which need not add up to 100: 50/50 and 1/1 split alike).
    """
    if not 0 <= control_percent <= 100:
        raise ValueError(f"control_percent must be between 0 and 100; got {control_percent}")
    bucket = assignment_bucket(campaign_id, profile_id)
    control_buckets = control_percent * BUCKETS // 100
    if bucket < control_buckets:
        return CONTROL
    weights = [(split.key, split.percent) for split in variants if split.percent > 0]
    if not weights:
        raise ValueError("a campaign needs at least one variant with a percentage above 0")
    total = sum(percent for _, percent in weights)
    # Spread the remaining buckets over the variants by cumulative weight.
    position = (bucket - control_buckets) * total // (BUCKETS - control_buckets)
    running = 0
    for key, percent in weights:
        running += percent
        if position < running:
            return key
    return weights[-1][0]
