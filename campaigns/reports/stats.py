"""Comparing a variant's conversion rate with the control group's: the uplift, its 95% confidence
interval and its significance. Pure functions over counts, no database.

- **Difference** in conversion rate (variant minus control, in percentage points) with **Newcombe's
  hybrid score interval** (Newcombe 1998, "method 10": built from the two Wilson score intervals).
  Unlike the Wald interval it stays inside [-1, 1] and keeps close to its nominal 95% coverage for
  small groups and rates near 0 or 1, which is where campaigns live (conversion rates of a few %).
- **Relative uplift** (variant rate / control rate - 1) with the **Katz log interval** for the ratio
  of two proportions; undefined while either group has no conversion.
- **Significance**: the two-sided **two-proportion z-test** with the pooled rate. The result is
  called significant when p < 0.05 (then, up to the edge cases of the two methods, the difference
  interval excludes 0).
- **Not enough data yet** while a group has fewer than ``MIN_GROUP`` people, or fewer than
  ``MIN_OUTCOMES`` conversions or non-conversions in the two groups (the usual condition for the
  normal approximation behind the z-test): the numbers are shown, the verdict is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The 97.5th percentile of the standard normal distribution: two-sided 95%.
Z95 = 1.959963984540054
MIN_GROUP = 30
MIN_OUTCOMES = 5
ALPHA = 0.05


def rate(successes: int, trials: int) -> float | None:
    return successes / trials if trials else None


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a proportion (Wilson 1927)."""
    if trials <= 0:
        raise ValueError("a proportion needs at least one trial")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(x1: int, n1: int, x0: int, n0: int, z: float = Z95) -> tuple[float, float]:
    """Newcombe's hybrid score interval for the difference p1 - p0 of two independent proportions."""
    p1, p0 = x1 / n1, x0 / n0
    l1, u1 = wilson_interval(x1, n1, z)
    l0, u0 = wilson_interval(x0, n0, z)
    difference = p1 - p0
    low = difference - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = difference + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return low, high


def ratio_interval(x1: int, n1: int, x0: int, n0: int, z: float = Z95) -> tuple[float, float] | None:
    """The Katz log interval for the ratio p1 / p0, or None when either count is 0."""
    if x1 == 0 or x0 == 0:
        return None
    ratio = (x1 / n1) / (x0 / n0)
    se = math.sqrt(1 / x1 - 1 / n1 + 1 / x0 - 1 / n0)
    return ratio * math.exp(-z * se), ratio * math.exp(z * se)


def two_proportion_z_test(x1: int, n1: int, x0: int, n0: int) -> tuple[float, float]:
    """(z, two-sided p-value) of the pooled two-proportion z-test of p1 = p0."""
    pooled = (x1 + x0) / (n1 + n0)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    if se == 0:
        return 0.0, 1.0
    z = (x1 / n1 - x0 / n0) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


@dataclass(frozen=True)
class Uplift:
    """A variant against the control group on one rate (conversions / people)."""

    variant_successes: int
    variant_size: int
    control_successes: int
    control_size: int
    enough_data: bool
    reason: str = ""  # why there is not enough data yet
    difference: float | None = None  # percentage points / 100
    difference_low: float | None = None
    difference_high: float | None = None
    relative: float | None = None  # variant rate / control rate - 1
    relative_low: float | None = None
    relative_high: float | None = None
    z: float | None = None
    p_value: float | None = None

    @property
    def variant_rate(self) -> float | None:
        return rate(self.variant_successes, self.variant_size)

    @property
    def control_rate(self) -> float | None:
        return rate(self.control_successes, self.control_size)

    @property
    def significant(self) -> bool:
        return self.enough_data and self.p_value is not None and self.p_value < ALPHA

    @property
    def verdict(self) -> str:
        if not self.enough_data:
            return f"Not enough data yet ({self.reason})"
        if not self.significant:
            return "No significant difference"
        return "Significantly better" if (self.difference or 0) > 0 else "Significantly worse"


def uplift(*, variant_successes: int, variant_size: int, control_successes: int, control_size: int) -> Uplift:
    counts = {
        "variant_successes": variant_successes,
        "variant_size": variant_size,
        "control_successes": control_successes,
        "control_size": control_size,
    }
    if variant_size == 0 or control_size == 0:
        group = "the control group" if control_size == 0 else "the variant"
        return Uplift(**counts, enough_data=False, reason=f"nobody in {group}")
    x1, n1, x0, n0 = variant_successes, variant_size, control_successes, control_size
    low, high = newcombe_interval(x1, n1, x0, n0)
    z, p_value = two_proportion_z_test(x1, n1, x0, n0)
    ratio = ratio_interval(x1, n1, x0, n0)
    relative = (x1 / n1) / (x0 / n0) - 1 if x0 else None
    reason = ""
    if min(n1, n0) < MIN_GROUP:
        reason = f"each group needs at least {MIN_GROUP} people"
    elif min(x1 + x0, (n1 - x1) + (n0 - x0)) < MIN_OUTCOMES:
        reason = f"at least {MIN_OUTCOMES} conversions and {MIN_OUTCOMES} non-conversions are needed"
    return Uplift(
        **counts,
        enough_data=not reason,
        reason=reason,
        difference=x1 / n1 - x0 / n0,
        difference_low=low,
        difference_high=high,
        relative=relative,
        relative_low=ratio[0] - 1 if ratio else None,
        relative_high=ratio[1] - 1 if ratio else None,
        z=z,
        p_value=p_value,
    )
