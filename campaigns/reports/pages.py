"""What each report page shows: sections of a chart and a table with the same numbers, built from
the selectors' results. Tables keep the raw value of every cell for the CSV export, and numbers
that stand for people link to the list of those people (``people_url``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from . import charts
from .charts import Series, fmt_int, fmt_money, fmt_pct, fmt_pp
from .selectors import (
    CampaignReport,
    CampaignRetention,
    ChannelsReport,
    Counts,
    Filters,
    FunnelGroup,
    FunnelReport,
    OverviewReport,
    RetentionReport,
    period_add,
)
from .stats import Uplift


@dataclass
class Cell:
    value: Any  # what the CSV gets
    text: str = ""  # what the page shows (the value, formatted)
    link: str = ""
    style: str = ""
    numeric: bool = True
    title: str = ""


@dataclass
class Table:
    id: str
    title: str
    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    note: str = ""

    def body_html(self) -> SafeString:
        """The rows as HTML, built here rather than in the template: a page can have thousands of
        cells, and a template loop costs tens of microseconds per cell."""
        if not self.rows:
            return format_html(
                '<tr><td colspan="{}" class="empty">No data for these filters yet.</td></tr>', len(self.headers)
            )
        return mark_safe(  # noqa: S308 (every part is escaped by format_html)
            "".join("<tr>" + "".join(_cell_html(cell) for cell in row) + "</tr>" for row in self.rows)
        )


def _cell_html(cell: Cell) -> str:
    content = format_html('<a href="{}">{}</a>', cell.link, cell.text) if cell.link else format_html("{}", cell.text)
    return format_html(
        "<td{}{}{}>{}</td>",
        mark_safe(' class="num"') if cell.numeric else "",
        format_html(' style="{}"', cell.style) if cell.style else "",
        format_html(' title="{}"', cell.title) if cell.title else "",
        content,
    )


@dataclass
class Section:
    title: str
    table: Table
    chart: SafeString | None = None
    intro: str = ""


@dataclass
class Stat:
    label: str
    value: str
    note: str = ""
    link: str = ""


@dataclass
class Page:
    title: str
    sections: list[Section]
    stats: list[Stat] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def table(self, table_id: str) -> Table | None:
        return next((s.table for s in self.sections if s.table.id == table_id), None)


# --- cells ---------------------------------------------------------------------------------------


def text(value: Any) -> Cell:
    return Cell(value=value, text=str(value), numeric=False)


def number(value: int | Decimal | float, link: str = "") -> Cell:
    """A count; linked to its people unless nobody is behind it."""
    return Cell(value=value, text=fmt_int(float(value)), link=link if value else "")


def money(value: Decimal | float | None) -> Cell:
    if value is None:
        return Cell(value="", text="—")
    return Cell(value=Decimal(value).quantize(Decimal("0.01")), text=fmt_money(float(value)))


def pct(value: float | None, *, style: str = "", link: str = "", title: str = "") -> Cell:
    if value is None:
        return Cell(value="", text="—", style=style, title=title)
    return Cell(value=round(value, 4), text=fmt_pct(value), style=style, link=link, title=title)


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def duration(seconds: float | None) -> Cell:
    if seconds is None:
        return Cell(value="", text="—")
    if seconds < 3600:
        shown = f"{seconds / 60:.0f} min"
    elif seconds < 2 * 86400:
        shown = f"{seconds / 3600:.1f} h"
    else:
        shown = f"{seconds / 86400:.1f} days"
    return Cell(value=round(seconds), text=shown)


def heat(value: float | None) -> str:
    """A heat-map cell's background: the share as the opacity of one colour (readable as text too)."""
    if value is None:
        return ""
    alpha = 0.08 + 0.72 * max(0.0, min(1.0, value))
    colour = "#fff" if alpha > 0.5 else "inherit"
    return f"background: rgba(0, 114, 178, {alpha:.2f}); color: {colour};"


def filter_params(filters: Filters) -> dict[str, str]:
    params = {"start": filters.start.isoformat(), "end": filters.end.isoformat()}
    if filters.platform:
        params["platform"] = filters.platform
    if filters.segment is not None:
        params["segment"] = str(filters.segment.pk)
    return params


def people_url(filters: Filters, **params: Any) -> str:
    query = {**filter_params(filters), **{k: str(v) for k, v in params.items() if v is not None}}
    return reverse("reports:people", args=[filters.workspace.slug]) + "?" + urlencode(query)


def uplift_cells(result: Uplift | None) -> list[Cell]:
    """Difference (pp) with its 95% CI, relative uplift with its CI, p-value, verdict."""
    if result is None:
        return [text("—"), text("—"), text("—"), text("—"), text("—")]
    if result.difference is None:
        return [text("—"), text("—"), text("—"), text("—"), text(result.verdict)]
    interval = f"{fmt_pp(result.difference_low or 0)} to {fmt_pp(result.difference_high or 0)}"
    relative = (
        text(
            f"{result.relative * 100:+.1f}%"
            + (
                f" ({(result.relative_low or 0) * 100:+.1f}% to {(result.relative_high or 0) * 100:+.1f}%)"
                if result.relative_low is not None
                else ""
            )
        )
        if result.relative is not None
        else text("—")
    )
    return [
        Cell(value=round(result.difference, 4), text=fmt_pp(result.difference)),
        Cell(value=f"{result.difference_low:.4f} to {result.difference_high:.4f}", text=interval, numeric=False),
        relative,
        Cell(value=round(result.p_value or 1, 4), text=f"{result.p_value:.3f}" if result.p_value is not None else "—"),
        Cell(value=result.verdict, text=result.verdict, numeric=False, style=_verdict_style(result)),
    ]


def _verdict_style(result: Uplift) -> str:
    if not result.enough_data:
        return "font-style: italic;"
    if result.significant:
        return (
            "font-weight: bold; color: #007a4d;"
            if (result.difference or 0) > 0
            else "font-weight: bold; color: #b42318;"
        )
    return ""


UPLIFT_HEADERS = [
    "Difference vs control",
    "95% CI (Newcombe)",
    "Relative uplift (95% CI)",
    "p-value (z-test)",
    "Verdict",
]

STAGE_LABELS = {
    "targeted": "Targeted",
    "sent": "Sent (received)",
    "delivered": "Delivered",
    "opened": "Opened",
    "clicked": "Clicked",
    "converted": "Converted",
}
EXTRA_LABELS = {"bounced": "Bounced", "complained": "Complaints", "unsubscribed": "Unsubscribes"}
# What each stage's rate is of.
RATE_BASES = {
    "sent": "targeted",
    "delivered": "sent",
    "opened": "sent",
    "clicked": "opened",
    "converted": "sent",
    "bounced": "sent",
    "complained": "sent",
    "unsubscribed": "sent",
}
STATUS_LABELS = {
    "targeted": "Targeted",
    "pending": "Waiting to send",
    "status_sent": "Sent",
    "failed": "Failed",
    "skipped": "Skipped",
    "cancelled": "Cancelled (exception event)",
    "control": "Control group (held out)",
}


def _label(moment: datetime | date, bucket: str = "day") -> str:
    if isinstance(moment, datetime):
        return moment.strftime("%Y-%m-%d %H:00") if bucket == "hour" else moment.strftime("%Y-%m-%d")
    return moment.isoformat()


# --- campaign ------------------------------------------------------------------------------------


def campaign_page(report: CampaignReport, filters: Filters, retention: CampaignRetention | None) -> Page:
    campaign = report.campaign
    total = report.total

    def link(metric: str, **extra: Any) -> str:
        return people_url(filters, list="campaign", campaign=campaign.pk, metric=metric, **extra)

    stages = list(STAGE_LABELS)
    funnel = Table(
        "funnel",
        "Funnel",
        ["Stage", "People", "% of targeted", "Rate", "Rate of"],
        note=(
            "Each person counts once per stage, whatever the channel. Not every channel reports deliveries, "
            "so opens and conversions are rates of the people sent to, clicks of the people who opened."
        ),
    )
    targeted = int(total["targeted"])
    for stage in [*stages, *EXTRA_LABELS]:
        value = int(total[stage])
        base = RATE_BASES.get(stage)
        funnel.rows.append(
            [
                text(STAGE_LABELS.get(stage) or EXTRA_LABELS[stage]),
                number(value, link(stage)),
                pct(ratio(value, targeted)),
                pct(ratio(value, int(total[base]))) if base else text(""),
                text(STAGE_LABELS[base].lower() if base else ""),
            ]
        )
    funnel.rows.append([text("Revenue"), money(total["revenue"]), text(""), text(""), text("")])
    funnel.rows.append([text("Revenue per recipient"), money(total.revenue_per_recipient), *[text("")] * 3])
    funnel_chart = charts.bar_chart(
        title="Funnel: people reaching each stage",
        labels=[STAGE_LABELS[s] for s in stages],
        series=[Series("People", [float(total[s]) for s in stages])],
    )

    variants = Table(
        "variants",
        "Variants against the control group",
        ["Variant", "People compared", "Converted", "Conversion rate", *UPLIFT_HEADERS],
        note=(
            "Conversion rate: converted recipients / recipients for a variant; converted / members for the control "
            "group (who would have received it). 95% CI of the difference: Newcombe's hybrid score interval; "
            "relative uplift: Katz log interval; significance: two-sided two-proportion z-test, p < 0.05."
        ),
    )
    estimates: list[tuple[float | None, float | None, float | None]] = []
    labels: list[str] = []
    for result in report.variants:
        converted = int(result.counts["converted"])
        variants.rows.append(
            [
                text(result.name),
                number(result.population, link("control" if result.is_control else "sent", variant=result.key)),
                number(converted, link("converted", variant=result.key)),
                pct(ratio(converted, result.population)),
                *(uplift_cells(result.uplift) if not result.is_control else [text("(baseline)")] + [text("")] * 4),
            ]
        )
        if not result.is_control and result.uplift is not None:
            labels.append(result.name)
            u = result.uplift
            estimates.append((u.difference, u.difference_low, u.difference_high))
    if not any(r.is_control for r in report.variants):
        variants.note = (
            "This campaign has no control group: there is nothing to measure an uplift against. " + variants.note
        )
    uplift_chart = (
        charts.interval_chart(
            title="Conversion rate: difference from the control group (95% CI)", labels=labels, estimates=estimates
        )
        if any(e[0] is not None for e in estimates)
        else charts.empty_chart("Uplift over the control group", "Not enough data yet.")
    )

    per_variant = Table(
        "variant_funnel",
        "Per variant",
        [
            "Variant",
            "Targeted",
            "Sent",
            "Delivered",
            "Opened",
            "Clicked",
            "Converted",
            "Bounced",
            "Complaints",
            "Unsubscribes",
            "Revenue",
            "Revenue per recipient",
            "Open rate",
            "Click rate",
        ],
    )
    for result in report.variants:
        c = result.counts
        per_variant.rows.append(
            [
                text(result.name),
                *[
                    number(int(c[m]), link(m, variant=result.key))
                    for m in (
                        "targeted",
                        "sent",
                        "delivered",
                        "opened",
                        "clicked",
                        "converted",
                        "bounced",
                        "complained",
                        "unsubscribed",
                    )
                ],
                money(c["revenue"]),
                money(c.revenue_per_recipient),
                pct(ratio(int(c["opened"]), c.recipients)),
                pct(ratio(int(c["clicked"]), c.recipients)),
            ]
        )
    sent_variants = [r for r in report.variants if not r.is_control]
    variant_chart = charts.bar_chart(
        title="Open, click and conversion rate per variant",
        labels=[r.name for r in sent_variants],
        series=[
            Series(name, [ratio(int(r.counts[metric]), r.counts.recipients) for r in sent_variants])
            for name, metric in (("Open rate", "opened"), ("Click rate", "clicked"), ("Conversion rate", "converted"))
        ],
        value_format=fmt_pct,
    )

    channel_table = _channel_table(
        "channels", "Per channel", report.channels, lambda metric, channel: link(metric, channel=channel, variant="*")
    )
    channel_chart = _channel_chart(report.channels)

    bucket = report.series_bucket
    series_table = Table(
        "series",
        f"{'Hourly' if bucket == 'hour' else 'Daily'}: sends due in each {bucket}",
        [bucket.capitalize(), "Targeted", "Sent", "Opened", "Clicked", "Converted", "Revenue"],
        note="Each send counts in the hour or day it was due, with what its recipient did since.",
    )
    for moment, counts in report.series:
        series_table.rows.append(
            [
                text(_label(moment, bucket)),
                *[number(int(counts[m])) for m in ("targeted", "sent", "opened", "clicked", "converted")],
                money(counts["revenue"]),
            ]
        )
    series_chart = charts.line_chart(
        title=f"Sends per {bucket} and what their recipients did",
        labels=[_label(m, bucket) for m, _ in report.series],
        series=[
            Series(label, [float(c[m]) for _, c in report.series])
            for label, m in (("Sent", "sent"), ("Opened", "opened"), ("Clicked", "clicked"), ("Converted", "converted"))
        ],
    )

    everyone = report.everyone
    status_table = Table(
        "outcomes",
        "Delivery outcomes",
        ["Outcome", "People", "% of targeted"],
        note="Every targeted send, the control group included, by what the sender did with it.",
    )
    for status, label in STATUS_LABELS.items():
        value = int(everyone[status])
        status_table.rows.append(
            [text(label), number(value, link(status, variant="*")), pct(ratio(value, int(everyone["targeted"])))]
        )
    status_chart = charts.bar_chart(
        title="What happened to each targeted send",
        labels=[STATUS_LABELS[s] for s in STATUS_LABELS if s != "targeted"],
        series=[Series("People", [float(everyone[s]) for s in STATUS_LABELS if s != "targeted"])],
    )

    sections = [
        Section("Funnel", funnel, funnel_chart),
        Section("Variants and control group", variants, uplift_chart),
        Section("Per variant", per_variant, variant_chart),
        Section("Per channel", channel_table, channel_chart),
        Section(series_table.title, series_table, series_chart),
        Section("Delivery outcomes", status_table, status_chart),
    ]
    stats = [
        Stat("Targeted", fmt_int(total["targeted"]), link=link("targeted")),
        Stat("Recipients", fmt_int(total["sent"]), link=link("sent")),
        Stat("Converted", fmt_int(total["converted"]), link=link("converted")),
        Stat("Conversion rate", fmt_pct(ratio(int(total["converted"]), total.recipients) or 0), "of recipients"),
        Stat("Revenue", fmt_money(float(total["revenue"]))),
        Stat(
            "Revenue per recipient",
            fmt_money(float(total.revenue_per_recipient)) if total.revenue_per_recipient is not None else "—",
        ),
    ]
    notices = []
    if retention is not None:
        sections.append(campaign_retention_section(retention, filters))
        if retention.comparison is not None:
            notices.append(_retention_headline(retention))
    return Page(title=f"Campaign report: {campaign.name}", sections=sections, stats=stats, notices=notices)


def _channel_table(table_id: str, title: str, channels: Mapping[str, Counts], link: Callable[[str, str], str]) -> Table:
    table = Table(
        table_id,
        title,
        [
            "Channel",
            "Sent",
            "Delivered",
            "Opened",
            "Clicked",
            "Converted",
            "Bounced",
            "Complaints",
            "Unsubscribes",
            "Revenue",
            "Delivery rate",
            "Open rate",
            "Click rate",
            "Conversion rate",
        ],
        note="A conversion counts for the channels of the message the person received last before converting.",
    )
    for channel, c in channels.items():
        sent = c.recipients
        table.rows.append(
            [
                text(channel),
                *[
                    number(int(c[m]), link(m, channel))
                    for m in (
                        "sent",
                        "delivered",
                        "opened",
                        "clicked",
                        "converted",
                        "bounced",
                        "complained",
                        "unsubscribed",
                    )
                ],
                money(c["revenue"]),
                *[pct(ratio(int(c[m]), sent)) for m in ("delivered", "opened", "clicked", "converted")],
            ]
        )
    return table


def _channel_chart(channels: Mapping[str, Counts]) -> SafeString:
    names = list(channels)
    return charts.bar_chart(
        title="Rates per channel (of messages sent)",
        labels=names,
        series=[
            Series(label, [ratio(int(channels[n][metric]), channels[n].recipients) for n in names])
            for label, metric in (
                ("Delivered", "delivered"),
                ("Opened", "opened"),
                ("Clicked", "clicked"),
                ("Converted", "converted"),
            )
        ],
        value_format=fmt_pct,
    )


def _period_name(grain: str, period: int) -> str:
    return f"{grain.capitalize()} {period}"


def _retention_headline(retention: CampaignRetention) -> str:
    comparison = retention.comparison
    assert comparison is not None
    period = _period_name(retention.grain, retention.compare_period)
    length = 7 if retention.grain == "week" else 30
    days = f"days {retention.compare_period * length} to {(retention.compare_period + 1) * length - 1} after the send"
    if comparison.variant_size == 0 or comparison.control_size == 0:
        return f"Retention in {period.lower()} ({days}): not enough data yet (nobody's {period.lower()} has ended)."
    base = (
        f"Retention in {period.lower()} ({days}): recipients {fmt_pct(comparison.variant_rate or 0)} "
        f"({comparison.variant_successes} of {comparison.variant_size}) against the control group "
        f"{fmt_pct(comparison.control_rate or 0)} ({comparison.control_successes} of {comparison.control_size})"
    )
    if comparison.difference is None:
        return base + f". {comparison.verdict}."
    return (
        base
        + f": {fmt_pp(comparison.difference)} (95% CI {fmt_pp(comparison.difference_low or 0)} to "
        + f"{fmt_pp(comparison.difference_high or 0)}). {comparison.verdict}."
    )


def campaign_retention_section(retention: CampaignRetention, filters: Filters) -> Section:
    grain = retention.grain
    periods = list(range(retention.periods))
    table = Table(
        "campaign_retention",
        f"Retention after the send: recipients against the control group ({grain}ly)",
        ["Group", "People", *[_period_name(grain, p) for p in periods]],
        note=(
            f"Each person's {grain}s count from the day of their first send of this campaign ({grain} 0). A cell "
            f"shows the share active in that {grain} among the people whose {grain} has ended; '—' until one has. "
            "Computed by beat"
            + (f", last at {retention.computed_at:%Y-%m-%d %H:%M} UTC." if retention.computed_at else ".")
        ),
    )
    for group in retention.groups:
        row = [text(group.name), number(group.size)]
        for period in periods:
            share = group.share(period)
            eligible = group.eligible.get(period, 0)
            row.append(
                pct(
                    share,
                    style=heat(share),
                    title=f"{group.active.get(period, 0)} of {eligible}",
                    link=people_url(
                        filters,
                        list="campaign_retention",
                        campaign=retention.campaign.pk,
                        group=group.key,
                        grain=grain,
                        period=period,
                    )
                    if share is not None
                    else "",
                )
            )
        table.rows.append(row)
    chart = charts.line_chart(
        title=f"Share active in each {grain} after the send",
        labels=[_period_name(grain, p) for p in periods],
        series=[Series(g.name, [g.share(p) for p in periods]) for g in retention.groups],
        value_format=fmt_pct,
    )
    intro = (
        _retention_headline(retention) if retention.comparison is not None else "This campaign has no control group."
    )
    return Section(table.title, table, chart, intro=intro)


# --- retention -----------------------------------------------------------------------------------


def retention_page(report: RetentionReport, filters: Filters, campaign: CampaignRetention | None) -> Page:
    grain = report.grain
    periods = list(range(report.periods))
    table = Table(
        "cohorts",
        f"Cohorts by first-seen {grain}",
        ["Cohort", "People", *[_period_name(grain, p) for p in periods]],
        note=(
            f"A cohort is the people first seen in that calendar {grain}; {grain} N shows the share of them active "
            f"(an event of their own, or a session) in the N-th {grain} after. "
            f"The current {grain} is still running (*)."
        ),
    )
    for cohort in reversed(report.cohorts):
        row = [
            text(cohort.start.isoformat()),
            number(cohort.size, people_url(filters, list="cohort", grain=grain, cohort=cohort.start.isoformat())),
        ]
        for period in periods:
            if period > cohort.periods_ended:
                row.append(Cell(value="", text=""))
                continue
            share = cohort.share(period)
            cell = pct(
                share,
                style=heat(share),
                title=f"{cohort.active.get(period, 0)} of {cohort.size}",
                link=people_url(filters, list="cohort", grain=grain, cohort=cohort.start.isoformat(), period=period),
            )
            if period == cohort.periods_ended:
                cell.text += "*"
            row.append(cell)
        table.rows.append(row)
    average = [text("All cohorts (weighted)"), number(sum(c.size for c in report.cohorts))]
    average += [pct(report.average(p), style=heat(report.average(p))) for p in periods]
    table.rows.append(average)
    shown = report.cohorts[-8:]
    chart = charts.line_chart(
        title=f"Share of each cohort active, {grain} by {grain}",
        labels=[_period_name(grain, p) for p in periods],
        series=[
            Series(c.start.isoformat(), [c.share(p) if p <= c.periods_ended else None for p in periods]) for c in shown
        ]
        + [Series("Average", [report.average(p) for p in periods])],
        value_format=fmt_pct,
    )
    sections = [Section(table.title, table, chart)]
    notices = []
    if campaign is not None:
        sections.append(campaign_retention_section(campaign, filters))
        if campaign.comparison is not None:
            notices.append(f"{campaign.campaign.name} — " + _retention_headline(campaign))
    cohort_end = period_add(grain, report.cohorts[-1].start, 1) if report.cohorts else None
    stats = [Stat("People in these cohorts", fmt_int(sum(c.size for c in report.cohorts)))]
    if cohort_end:
        stats.append(Stat("Cohorts", f"{len(report.cohorts)} {grain}s"))
    return Page(title="Retention", sections=sections, stats=stats, notices=notices)


# --- funnel --------------------------------------------------------------------------------------


def funnel_page(report: FunnelReport, filters: Filters, link_params: dict[str, Any]) -> Page:
    steps = report.steps

    def link(step: int, group: str | None = None) -> str:
        return people_url(filters, list="funnel", step=step, group=group, **link_params)

    total = report.total
    table = Table(
        "funnel",
        "Funnel",
        [
            "Step",
            "Event",
            "People",
            "Conversion from previous step",
            "Overall conversion",
            "Median time from previous step",
            "Mean time from previous step",
        ],
        note=(
            f"Step 1: people who first did {steps[0]!r} in the date range. Each later step: people who then did its "
            f"event for the first time, at or after the previous step and within {report.window_days} days of step 1."
        ),
    )
    for index, name in enumerate(steps):
        table.rows.append(
            [
                number(index + 1),
                text(name),
                number(total.counts[index], link(index + 1)),
                pct(total.conversion(index)),
                pct(total.overall(index)),
                duration(total.median_seconds[index]),
                duration(total.mean_seconds[index]),
            ]
        )
    chart = charts.bar_chart(
        title="People reaching each step",
        labels=[f"{i + 1}. {name}" for i, name in enumerate(steps)],
        series=[Series("People", [float(c) for c in total.counts])],
    )
    sections = [Section("Funnel", table, chart)]
    if report.split != "none":
        split_name = "acquisition source" if report.split == "source" else "campaign received"
        split = Table(
            "split",
            f"By {split_name}",
            [
                split_name.capitalize(),
                *[f"{i + 1}. {name}" for i, name in enumerate(steps)],
                "Overall conversion",
                *[f"Median time to step {i + 1}" for i in range(1, len(steps))],
            ],
            note=f"{report.more_groups} smaller groups are not shown." if report.more_groups else "",
        )
        groups: list[FunnelGroup] = report.groups
        for group in groups:
            split.rows.append(
                [
                    text(group.key or "(none)"),
                    *[number(count, link(i + 1, group.key)) for i, count in enumerate(group.counts)],
                    pct(group.overall(len(steps) - 1)),
                    *[duration(group.median_seconds[i]) for i in range(1, len(steps))],
                ]
            )
        split_chart = charts.bar_chart(
            title=f"Overall conversion to each step by {split_name}",
            labels=[f"{i + 1}. {name}" for i, name in enumerate(steps)],
            series=[Series(g.key or "(none)", [g.overall(i) for i in range(len(steps))]) for g in groups[:8]],
            value_format=fmt_pct,
        )
        sections.append(Section(split.title, split, split_chart))
    stats = [
        Stat("Started", fmt_int(total.counts[0]), link=link(1)),
        Stat("Completed", fmt_int(total.counts[-1]), link=link(len(steps))),
        Stat("Overall conversion", fmt_pct(total.overall(len(steps) - 1) or 0)),
    ]
    notices = []
    if report.campaign_groups_at is not None:
        notices.append(
            f"Who the campaign reached (recipients, control group, targeted) as of"
            f" {report.campaign_groups_at:%H:%M:%S} UTC; re-read when older than a few minutes."
        )
    if report.as_of is not None:
        notices.append(
            f"Counted as of {report.as_of:%H:%M:%S} UTC, and kept current every minute or so while the funnel is"
            " looked at; the days whose windows have closed are final."
        )
    return Page(title="Funnel", sections=sections, stats=stats, notices=notices)


# --- channels and sources ------------------------------------------------------------------------


def channels_page(report: ChannelsReport, filters: Filters) -> Page:
    def link(metric: str, channel: str) -> str:
        return people_url(filters, list="channel", metric=metric, channel=channel)

    channels = {c.channel: c.counts for c in report.channels}
    table = _channel_table("channels", "Per channel", channels, link)
    table.headers += ["Share of conversions", "Conversion rate vs other channels", "95% CI", "Verdict"]
    all_conversions = sum(int(c["converted"]) for c in channels.values())
    for row, result in zip(table.rows, report.channels, strict=True):
        comparison = result.comparison
        cells = uplift_cells(comparison)
        verdict = cells[4]
        if comparison is not None and comparison.significant:
            verdict = Cell(
                value="underperforms" if (comparison.difference or 0) < 0 else "outperforms",
                text="Underperforms" if (comparison.difference or 0) < 0 else "Outperforms",
                numeric=False,
                style=cells[4].style,
            )
        row += [pct(ratio(int(result.counts["converted"]), all_conversions)), cells[0], cells[1], verdict]
    table.note = (
        "Sends due in the date range, across every campaign. A channel is flagged when its conversion rate differs "
        "from that of all the other channels together (two-proportion z-test, p < 0.05). " + table.note
    )
    sources = Table(
        "sources",
        "Per acquisition source",
        [
            "Source (utm_source)",
            "New people",
            f"Did {report.onboarding_event or '(onboarding event)'}",
            "Onboarding rate",
            f"Did {report.conversion_event or '(conversion event)'}",
            "Conversion rate",
        ],
        note=(
            "People first seen in the date range, by their first-touch utm_source, "
            "and how many of them have done each event since."
        ),
    )
    for source in report.sources:
        sources.rows.append(
            [
                text(source.source or "(none)"),
                number(source.people, people_url(filters, list="source", source=source.source)),
                number(
                    source.onboarded,
                    people_url(filters, list="source", source=source.source, event=report.onboarding_event)
                    if report.onboarding_event
                    else "",
                ),
                pct(source.rate(source.onboarded)),
                number(
                    source.converted,
                    people_url(filters, list="source", source=source.source, event=report.conversion_event)
                    if report.conversion_event
                    else "",
                ),
                pct(source.rate(source.converted)),
            ]
        )
    top = report.sources[:10]
    source_chart = charts.bar_chart(
        title="Onboarding and conversion rate per source",
        labels=[s.source or "(none)" for s in top],
        series=[
            Series("Onboarding rate", [s.rate(s.onboarded) for s in top]),
            Series("Conversion rate", [s.rate(s.converted) for s in top]),
        ],
        value_format=fmt_pct,
    )
    notices = []
    if report.underperforming:
        notices.append(
            "Underperforming channels (conversion rate significantly below the others): "
            + ", ".join(report.underperforming)
            + "."
        )
    stats = [
        Stat("Messages sent", fmt_int(sum(c.recipients for c in channels.values()))),
        Stat("Conversions", fmt_int(all_conversions)),
        Stat("New people", fmt_int(sum(s.people for s in report.sources))),
    ]
    return Page(
        title="Channels and sources",
        sections=[
            Section("Per channel", table, _channel_chart(channels)),
            Section("Per acquisition source", sources, source_chart),
        ],
        stats=stats,
        notices=notices,
    )


# --- overview ------------------------------------------------------------------------------------


def overview_page(report: OverviewReport, filters: Filters) -> Page:
    days = report.days
    labels = [d.isoformat() for d in days]

    def series(metric: str, label: str) -> Series:
        return Series(label, [float(report.daily[d][metric]) for d in days])

    def day_table(
        table_id: str, title: str, metrics: Sequence[tuple[str, str]], links: Mapping[str, str] = {}
    ) -> Table:
        table = Table(table_id, title, ["Day", *[label for _, label in metrics]])
        for day in days:
            table.rows.append(
                [
                    text(day.isoformat()),
                    *[
                        number(
                            report.daily[day][metric],
                            people_url(filters, list=links[metric], day=day.isoformat()) if metric in links else "",
                        )
                        for metric, _ in metrics
                    ],
                ]
            )
        return table

    active = (("dau", "Daily active"), ("wau", "Weekly active"), ("mau", "Monthly active"))
    growth = (("new_profiles", "New people"), ("events", "Events"), ("sessions", "Sessions"))
    messaging = (("messages", "Messages received"), ("conversions", "Conversions"))
    sections = [
        Section(
            "Active people",
            day_table(
                "active",
                "Active people",
                active,
                {"dau": "active"},
            ),
            charts.line_chart(
                title="Active people (daily, 7-day, 30-day)",
                labels=labels,
                series=[series(m, name) for m, name in active],
            ),
            intro=(
                "Active: did an event of their own (not an identify call) or started a session that day, "
                "in the 7 days or in the 30 days ending that day."
            ),
        ),
        Section(
            "New people, events and sessions",
            day_table("growth", "New people, events and sessions", growth, {"new_profiles": "new"}),
            charts.line_chart(
                title="New people, events and sessions per day",
                labels=labels,
                series=[series(m, name) for m, name in growth],
            ),
        ),
        Section(
            "Messages and conversions",
            day_table("messaging", "Messages and conversions", messaging),
            charts.line_chart(
                title="Messages received and conversions per day",
                labels=labels,
                series=[series(m, name) for m, name in messaging],
            ),
        ),
    ]
    currencies = list(report.revenue)
    revenue = Table(
        "revenue",
        "Revenue",
        ["Day", *currencies],
        note="Purchases, per currency (currencies are never added together).",
    )
    for day in days:
        revenue.rows.append(
            [text(day.isoformat()), *[money(report.revenue[c].get(day, Decimal(0))) for c in currencies]]
        )
    sections.append(
        Section(
            "Revenue",
            revenue,
            charts.line_chart(
                title="Revenue per day",
                labels=labels,
                series=[Series(c, [float(report.revenue[c].get(d, 0)) for d in days]) for c in currencies],
                value_format=fmt_money,
            ),
        )
    )
    segment_table = Table(
        "segments", "Segment sizes", ["Day", *[s.name for s, _ in report.segments]], note="Recorded once a day by beat."
    )
    for day in days if report.segments else []:
        segment_table.rows.append(
            [
                text(day.isoformat()),
                *[number(sizes[day]) if day in sizes else Cell(value="", text="—") for _, sizes in report.segments],
            ]
        )
    sections.append(
        Section(
            "Segment sizes",
            segment_table,
            charts.line_chart(
                title="Segment sizes over time",
                labels=labels,
                series=[
                    Series(s.name, [float(sizes[d]) if d in sizes else None for d in days])
                    for s, sizes in report.segments[:8]
                ],
            ),
        )
    )
    mau = report.last("mau")
    stats = [
        Stat("Daily active", fmt_int(report.last("dau")), f"on {days[-1]}" if days else ""),
        Stat("Weekly active", fmt_int(report.last("wau"))),
        Stat("Monthly active", fmt_int(mau)),
        Stat("Stickiness (DAU/MAU)", fmt_pct(report.last("dau") / mau) if mau else "—"),
        Stat("New people", fmt_int(report.total("new_profiles"))),
        Stat("Events", fmt_int(report.total("events"))),
        Stat("Messages received", fmt_int(report.total("messages"))),
        Stat("Conversions", fmt_int(report.total("conversions"))),
    ]
    for currency in currencies[:3]:
        stats.append(Stat(f"Revenue ({currency})", fmt_money(float(sum(report.revenue[currency].values())))))
    return Page(title="Workspace overview", sections=sections, stats=stats)
