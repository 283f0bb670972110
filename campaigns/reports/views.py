"""The report pages: thin views that parse the filters, call a selector, build the page and render
it (or one of its tables as CSV with ``?export=<table id>``). Login required; a user sees the
workspaces they are a member of (a superuser sees every one), and anything else is a 404."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date
from typing import Any

from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from profiles.models import Workspace
from segments.models import Segment

from ..models import Campaign
from . import pages, selectors
from .forms import ChannelsForm, FiltersForm, FunnelForm, RetentionForm, last_days
from .members import segment_status
from .pages import Page, filter_params

LOGIN_URL = "reports:login"


def workspaces_for(user: Any) -> QuerySet[Workspace]:
    if user.is_superuser:
        return Workspace.objects.all()
    return Workspace.objects.filter(members=user)


def _workspace(request: HttpRequest, slug: str) -> Workspace:
    return get_object_or_404(workspaces_for(request.user), slug=slug)


def _render(
    request: HttpRequest, page: Page, *, workspace: Workspace, form: FiltersForm, nav: str, **context: Any
) -> HttpResponse:
    export = request.GET.get("export")
    if export:
        table = page.table(export)
        if table is None:
            raise Http404("no such table on this page")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{slugify(page.title)}-{table.id}.csv"'
        writer = csv.writer(response)
        writer.writerow(table.headers)
        for row in table.rows:
            writer.writerow([cell.value for cell in row])
        return response
    segment = form.filters().segment if not context.get("hide_filters") else None
    if segment is not None:
        page.notices.insert(0, _members_notice(segment))
    query = request.GET.copy()
    return render(
        request,
        "reports/page.html",
        {
            "page": page,
            "workspace": workspace,
            "form": form,
            "nav": nav,
            "query": query.urlencode(),
            "workspaces": workspaces_for(request.user),
            **context,
        },
    )


def _members_notice(segment: Segment) -> str:
    """What a page filtered by a segment counts: its members as evaluated at some moment (reused
    for a few minutes, see campaigns.reports.members), and whether from the aggregates built for
    them or live."""
    status = segment_status(segment=segment)
    if status is None:
        return f"Segment “{segment.name}”."
    age = (timezone.now() - status.as_of).total_seconds()
    when = "just now" if age < 1 else f"{age:.0f} s ago" if age < 120 else f"{age / 60:.0f} min ago"
    how = (
        "numbers from the aggregates built for them"
        if status.aggregated
        else "numbers read live from their activity (the segment's aggregates are being built)"
    )
    return f"Segment “{segment.name}”: its {status.size:,} members as of {status.as_of:%H:%M:%S} UTC ({when}); {how}."


def _form(
    form_class: type[FiltersForm],
    request: HttpRequest,
    workspace: Workspace,
    start: date,
    end: date,
    initial: dict[str, Any] | None = None,
) -> Any:
    return form_class(
        request.GET or None, workspace=workspace, default_start=start, default_end=end, initial=initial or {}
    )


class ReportsLoginView(LoginView):
    template_name = "reports/login.html"
    redirect_authenticated_user = True

    def get_default_redirect_url(self) -> str:
        return reverse("reports:index")


@login_required(login_url=LOGIN_URL)
def index(request: HttpRequest) -> HttpResponse:
    workspaces = list(workspaces_for(request.user))
    if len(workspaces) == 1:
        return redirect("reports:overview", workspaces[0].slug)
    return render(request, "reports/index.html", {"workspaces": workspaces})


@login_required(login_url=LOGIN_URL)
def overview(request: HttpRequest, workspace: str) -> HttpResponse:
    ws = _workspace(request, workspace)
    form = _form(FiltersForm, request, ws, *last_days(30))
    filters = form.filters()
    page = pages.overview_page(selectors.overview_report(filters=filters), filters)
    return _render(request, page, workspace=ws, form=form, nav="overview")


@login_required(login_url=LOGIN_URL)
def campaigns(request: HttpRequest, workspace: str) -> HttpResponse:
    ws = _workspace(request, workspace)
    form = _form(FiltersForm, request, ws, *last_days(30))
    summaries = selectors.campaign_list(workspace=ws)
    table = pages.Table(
        "campaigns",
        "Campaigns",
        ["Campaign", "Status", "Last send due", "Targeted", "Recipients", "Converted", "Conversion rate", "Revenue"],
    )
    for summary in summaries:
        url = reverse("reports:campaign", args=[ws.slug, summary.campaign.pk])
        table.rows.append(
            [
                pages.Cell(value=summary.campaign.name, text=summary.campaign.name, link=url, numeric=False),
                pages.text(summary.campaign.get_status_display()),
                pages.text(f"{summary.last_due:%Y-%m-%d %H:00}" if summary.last_due else "—"),
                pages.number(summary.targeted),
                pages.number(summary.recipients),
                pages.number(summary.converted),
                pages.pct(pages.ratio(summary.converted, summary.recipients)),
                pages.money(summary.revenue),
            ]
        )
    page = Page(title="Campaigns", sections=[pages.Section("Campaigns", table)])
    return _render(request, page, workspace=ws, form=form, nav="campaigns", hide_filters=True)


def campaign_redirect(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """The admin links here with only the campaign's id."""
    if not request.user.is_authenticated:
        return redirect(f"{reverse(LOGIN_URL)}?next={request.get_full_path()}")
    campaign = get_object_or_404(Campaign.objects.select_related("workspace"), pk=campaign_id)
    _workspace(request, campaign.workspace.slug)
    return redirect("reports:campaign", campaign.workspace.slug, campaign.pk)


@login_required(login_url=LOGIN_URL)
def campaign(request: HttpRequest, workspace: str, campaign_id: int) -> HttpResponse:
    ws = _workspace(request, workspace)
    item = get_object_or_404(Campaign, workspace=ws, pk=campaign_id)
    first, last = selectors.campaign_span(item)
    start, end = last_days(30)
    if first and last:
        start, end = first.date(), max(last.date(), first.date())
    form = _form(FiltersForm, request, ws, start, end)
    filters = form.filters()
    report = selectors.campaign_report(campaign=item, filters=filters)
    retention = selectors.campaign_retention(campaign=item, filters=filters, grain="month")
    page = pages.campaign_page(report, filters, retention)
    retention_url = reverse("reports:retention", args=[ws.slug]) + f"?campaign={item.pk}&grain=month"
    return _render(
        request,
        page,
        workspace=ws,
        form=form,
        nav="campaigns",
        campaign=item,
        retention_url=retention_url,
        admin_url=reverse("admin:campaigns_campaign_change", args=[item.pk]) if _has_admin() else "",
    )


def _has_admin() -> bool:
    return admin.site.is_registered(Campaign)


@login_required(login_url=LOGIN_URL)
def retention(request: HttpRequest, workspace: str) -> HttpResponse:
    ws = _workspace(request, workspace)
    start, end = last_days(12 * 7)
    form = _form(RetentionForm, request, ws, start, end, initial={"grain": "week"})
    filters = form.filters()
    data = form.cleaned_data if form.is_valid() else {}
    grain = data.get("grain") or "week"
    chosen = data.get("campaign")
    report = selectors.retention_report(filters=filters, grain=grain)
    comparison = None
    if chosen is not None:
        comparison = selectors.campaign_retention(
            campaign=chosen, filters=filters, grain=grain, period=data.get("period")
        )
    page = pages.retention_page(report, filters, comparison)
    return _render(request, page, workspace=ws, form=form, nav="retention")


@login_required(login_url=LOGIN_URL)
def funnel(request: HttpRequest, workspace: str) -> HttpResponse:
    ws = _workspace(request, workspace)
    names = selectors.event_names(workspace=ws)
    defaults = _default_steps(names)
    form = _form(
        FunnelForm, request, ws, *last_days(30), initial={"steps": "\n".join(defaults), "window": 30, "split": "none"}
    )
    filters = form.filters()
    data = form.cleaned_data if form.is_valid() else {}
    steps: list[str] = data.get("steps") or defaults
    window = data.get("window") or 30
    split = data.get("split") or "none"
    chosen = data.get("campaign")
    if split == "campaign" and chosen is None:
        split = "none"
    if not steps:
        page = Page(title="Funnel", sections=[], notices=["No events recorded yet: there is no funnel to show."])
    else:
        report = selectors.funnel_report(filters=filters, steps=steps, window_days=window, split=split, campaign=chosen)
        link_params = {"steps": "\n".join(steps), "window": window, "split": split}
        if chosen is not None:
            link_params["campaign"] = chosen.pk
        page = pages.funnel_page(report, filters, link_params)
    return _render(request, page, workspace=ws, form=form, nav="funnel", event_names=names)


def _default_steps(names: list[str]) -> list[str]:
    preferred = ["Application Installed", "Application Opened", "Account Created", "Signed Up", "Order Completed"]
    chosen = [name for name in preferred if name in names]
    return chosen[:3] if len(chosen) >= 2 else names[:2]


@login_required(login_url=LOGIN_URL)
def channels(request: HttpRequest, workspace: str) -> HttpResponse:
    ws = _workspace(request, workspace)
    names = selectors.event_names(workspace=ws)
    default_onboarding, default_conversion = selectors.default_events(names)
    form = _form(
        ChannelsForm,
        request,
        ws,
        *last_days(30),
        initial={"onboarding": default_onboarding, "conversion": default_conversion},
    )
    filters = form.filters()
    data = form.cleaned_data if form.is_valid() else {}
    report = selectors.channels_report(
        filters=filters,
        onboarding_event=data.get("onboarding") or default_onboarding,
        conversion_event=data.get("conversion") or default_conversion,
    )
    page = pages.channels_page(report, filters)
    return _render(request, page, workspace=ws, form=form, nav="channels", event_names=names)


@login_required(login_url=LOGIN_URL)
def people(request: HttpRequest, workspace: str) -> HttpResponseBase:
    ws = _workspace(request, workspace)
    form = _form(FiltersForm, request, ws, *last_days(30))
    filters = form.filters()
    params = {key: request.GET[key] for key in request.GET if key not in ("after", "export")}
    try:
        if request.GET.get("export"):
            selectors.people_sql(filters=filters, params=params)  # refuse a bad list before streaming
            return _people_csv(filters, params)
        after = int(request.GET.get("after") or 0)
        result = selectors.people(filters=filters, params=params, after=after)
    except (selectors.UnknownList, ValueError) as error:
        raise Http404(str(error)) from error
    base = request.GET.copy()
    base.pop("after", None)
    next_url = ""
    if result.next_after is not None:
        base["after"] = str(result.next_after)
        next_url = "?" + base.urlencode()
        base.pop("after")
    ids = ",".join(str(row[0]) for row in result.rows)
    return render(
        request,
        "reports/people.html",
        {
            "workspace": ws,
            "workspaces": workspaces_for(request.user),
            "result": result,
            "next_url": next_url,
            "export_url": "?" + base.urlencode() + "&export=csv",
            "admin_url": reverse("admin:profiles_profile_changelist") + f"?id__in={ids}" if ids else "",
            "filters": filter_params(filters),
            "nav": "",
        },
    )


def _people_csv(filters: selectors.Filters, params: dict[str, str]) -> StreamingHttpResponse:
    class Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(Echo())

    def rows() -> Iterator[str]:
        yield writer.writerow(selectors.PEOPLE_COLUMNS)
        for row in selectors.people_all(filters=filters, params=params):
            yield writer.writerow([value.isoformat() if hasattr(value, "isoformat") else value for value in row])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="people.csv"'
    return response
