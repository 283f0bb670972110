"""Workspace tenancy and big-table helpers shared by every admin of workspace-owned data.

Tenancy rule: a superuser sees every workspace; any other staff user sees only the workspaces
they are a member of (``Workspace.members``). Model permissions still apply as usual on top of
that (a staff user needs e.g. ``profiles.view_profile`` to see profiles at all).

Use it on any ``ModelAdmin`` (or inline) whose model belongs to a workspace::

    from profiles.admin.mixins import WorkspaceScopedAdminMixin, WorkspaceScopedRelatedFilter

    @admin.register(ProfileImport)
    class ProfileImportAdmin(WorkspaceScopedAdminMixin, admin.ModelAdmin):
        workspace_field = "workspace"            # or "profile__workspace", or "pk" on Workspace itself
        list_filter = [("workspace", WorkspaceScopedRelatedFilter)]

The mixin then

* filters the changelist, change, delete and history views to the user's workspaces, so another
  workspace's object answers 404 (not the admin's "doesn't exist" redirect, which would still
  confirm that the id exists);
* limits every foreign-key choice (selects and raw-id fields alike) to the user's workspaces: a
  ``Workspace`` FK offers the user's workspaces, an FK to a model with a ``workspace`` field offers
  that model's rows in them, so a form can never attach data to a foreign workspace.

``WorkspaceScopedRelatedFilter`` is the list filter counterpart (the stock related filter would list
every workspace's rows), and ``WorkspaceSwitcherFilter`` shows a big table one workspace at a time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.core.exceptions import FieldDoesNotExist
from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db import models
from django.db.models import Q, QuerySet
from django.forms import ModelChoiceField
from django.http import Http404, HttpRequest
from django.utils.functional import cached_property

from ..models import Workspace

if TYPE_CHECKING:
    from django.contrib.admin.filters import _ListFilterChoices

    _AdminBase = admin.ModelAdmin
else:
    _AdminBase = object

logger = logging.getLogger(__name__)

_CACHE_ATTR = "_engage_admin_workspace_ids"


def user_workspace_ids(request: HttpRequest) -> list[int] | None:
    """The ids of the workspaces the request's user may see, or None for "all" (superusers).

    Materialised as a list (one small query, cached on the request) rather than a subquery: with a
    literal ``workspace_id IN (…)`` — equality for one workspace — PostgreSQL walks the
    ``(workspace, …)`` indexes the big tables rely on.
    """
    if hasattr(request, _CACHE_ATTR):
        cached: list[int] | None = getattr(request, _CACHE_ATTR)
        return cached
    user = request.user
    ids: list[int] | None
    if user.is_active and user.is_superuser:
        ids = None
    elif not user.is_authenticated or not user.is_active or not user.is_staff:
        ids = []
    else:
        ids = list(Workspace.objects.filter(members=user).order_by("name").values_list("pk", flat=True))
    setattr(request, _CACHE_ATTR, ids)
    return ids


def user_workspaces(request: HttpRequest) -> QuerySet[Workspace]:
    """The workspaces the request's user may see, ordered by name."""
    ids = user_workspace_ids(request)
    workspaces = Workspace.objects.order_by("name")
    return workspaces if ids is None else workspaces.filter(pk__in=ids)


def scope_to_workspaces(queryset: QuerySet[Any], workspace_field: str, ids: Sequence[int] | None) -> QuerySet[Any]:
    """``queryset`` restricted to rows whose ``workspace_field`` is one of ``ids`` (None: no limit)."""
    if ids is None:
        return queryset
    lookup = "pk__in" if workspace_field in {"pk", "id"} else f"{workspace_field}__in"
    return queryset.filter(**{lookup: list(ids)})


def workspace_field_of(model: type[models.Model]) -> str | None:
    """How ``model`` reaches its workspace for FK-choice scoping: itself, a ``workspace`` FK, or not at all."""
    if issubclass(model, Workspace):
        return "pk"
    try:
        field = model._meta.get_field("workspace")
    except FieldDoesNotExist:
        return None
    related = getattr(field, "related_model", None)
    return "workspace" if isinstance(related, type) and issubclass(related, Workspace) else None


class WorkspaceScopedAdminMixin(_AdminBase):
    """Scope a model admin (or inline) to the workspaces of the user; see the module docstring."""

    #: Path from the admin's model to its workspace: "workspace", "profile__workspace", or "pk" when
    #: the model *is* Workspace.
    workspace_field: str = "workspace"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return scope_to_workspaces(super().get_queryset(request), self.workspace_field, user_workspace_ids(request))

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            # Unknown and foreign ids look the same: 404.
            raise Http404("No such object in your workspaces.")
        return obj

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        ids = user_workspace_ids(request)
        if self.workspace_field == "workspace" and "workspace" not in initial and ids is not None and len(ids) == 1:
            initial["workspace"] = str(ids[0])  # the only choice there is: preselect it
        return initial

    def formfield_for_foreignkey(
        self, db_field: models.ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        queryset = getattr(formfield, "queryset", None)
        field = workspace_field_of(db_field.related_model) if isinstance(db_field.related_model, type) else None
        if formfield is not None and queryset is not None and field is not None:
            formfield.queryset = scope_to_workspaces(queryset, field, user_workspace_ids(request))
        return formfield


class WorkspaceScopedRelatedFilter(admin.RelatedFieldListFilter):
    """The stock related-field filter, listing only rows in the user's workspaces (for FKs to
    Workspace or to a workspace-owned model such as App). Hidden when there is one choice."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[Any]:
        ordering = self.field_admin_ordering(field, request, model_admin)
        related_field = workspace_field_of(field.related_model)
        ids = user_workspace_ids(request)
        limit: Q | None = None
        if related_field is not None and ids is not None:
            limit = Q(pk__in=ids) if related_field == "pk" else Q(**{f"{related_field}__in": ids})
        return list(field.get_choices(include_blank=False, ordering=ordering, limit_choices_to=limit))


class WorkspaceSwitcherFilter(admin.SimpleListFilter):
    """Shows a big table one workspace at a time (there is no "All"): the user's first workspace
    until they pick another.

    Why: the big tables are indexed ``(workspace, …)``; ``ORDER BY last_seen DESC LIMIT 100`` over
    one workspace walks an index, over several it sorts millions of rows. Search and the cheap
    count also stay on one workspace's index. Hidden when the user has a single workspace.
    """

    title = "workspace"
    parameter_name = "workspace"

    def __init__(
        self, request: HttpRequest, params: dict[str, Any], model: type[models.Model], model_admin: Any
    ) -> None:
        self.workspace_field: str = getattr(model_admin, "workspace_field", "workspace")
        super().__init__(request, params, model, model_admin)

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(pk), name) for pk, name in user_workspaces(request).values_list("pk", "name")]

    def has_output(self) -> bool:
        return len(self.lookup_choices) > 1

    def value(self) -> str | None:
        chosen = super().value()
        known = [str(key) for key, _ in self.lookup_choices]
        if chosen in known:
            return chosen
        return known[0] if known else None

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        chosen = self.value()
        if chosen is None:
            return queryset
        return scope_to_workspaces(queryset, self.workspace_field, [int(chosen)])

    def choices(self, changelist: ChangeList) -> Iterator[_ListFilterChoices]:
        current = self.value()
        for key, title in self.lookup_choices:
            yield {
                "selected": current == str(key),
                "query_string": changelist.get_query_string({self.parameter_name: key}),
                "display": title,
            }


class EstimatedCountPaginator(Paginator):
    """A paginator for tables with millions of rows that never counts the whole result.

    It counts at most ``exact_count_limit + 1`` rows (``SELECT COUNT(*) FROM (… LIMIT n)``), so small
    results — a search, a filtered view of a small workspace — get an exact count and the stock
    paging. Beyond that the count is the planner's estimate (``EXPLAIN``, which reads the table
    statistics behind ``pg_class.reltuples``), ``estimated`` is set for the template to say "about",
    and pages stop trusting the count: each fetches one extra row to know whether a next page
    exists, so a stale estimate can neither hide the last rows nor invent empty pages.
    """

    exact_count_limit = 10_000

    def __init__(self, object_list: Any, per_page: int, orphans: int = 0, allow_empty_first_page: bool = True) -> None:
        super().__init__(object_list, per_page, orphans, allow_empty_first_page)
        self.estimated = False
        self.has_next_page = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return len(queryset)
        # At least a page and a row, so the admin always pages an estimated list (it would show an
        # unpaginated list in full if the count looked like a single page).
        limit = max(self.exact_count_limit, int(self.per_page))
        unordered = queryset.order_by()
        bounded = unordered[: limit + 1].count()
        if bounded <= limit:
            return bounded
        self.estimated = True
        return max(bounded, _planner_estimate(unordered))

    def page(self, number: Any) -> Page:
        if not self.count or not self.estimated:
            page = super().page(number)
            self.has_next_page = page.has_next()
            return page
        try:
            number = int(number)
        except (TypeError, ValueError) as error:
            raise PageNotAnInteger("That page number is not an integer") from error
        if number < 1:
            raise EmptyPage("That page number is less than 1")
        per_page = int(self.per_page)
        bottom = (number - 1) * per_page
        rows = list(self.object_list[bottom : bottom + per_page + 1])
        self.has_next_page = len(rows) > per_page
        return Page(rows[:per_page], number, self)


class BigTableChangeList(ChangeList):
    """The changelist for tables paged by ``EstimatedCountPaginator``: previous/next links instead
    of a full page range (jumping to page 20,000 of an estimate would be an OFFSET scan)."""

    @property
    def count_is_estimated(self) -> bool:
        return bool(getattr(self.paginator, "estimated", False))

    @property
    def previous_page_query(self) -> str | None:
        return self.get_query_string({PAGE_VAR: self.page_num - 1}) if self.page_num > 1 else None

    @property
    def next_page_query(self) -> str | None:
        if not getattr(self.paginator, "has_next_page", self.page_num < self.paginator.num_pages):
            return None
        return self.get_query_string({PAGE_VAR: self.page_num + 1})


class BigTableAdminMixin(_AdminBase):
    """For admins of tables with millions of rows (profiles, events, devices): no full count, no
    page-number jumps, no column sorting (each would sort the table; list in ``indexed_sort_fields``
    the columns an index serves), and no bulk "delete selected" (a select-all would delete a whole workspace's
    rows in one statement; deletions go through services in bounded batches)."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_max_show_all = 0  # "Show all" on a big table would load all of it
    show_facets = admin.ShowFacets.NEVER  # facet counts are a COUNT per filter choice over the table
    #: The only columns the list may be sorted by: those an index serves.
    indexed_sort_fields: tuple[str, ...] = ()
    change_list_template = "admin/profiles/big_table_change_list.html"

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return BigTableChangeList

    def get_sortable_by(self, request: HttpRequest) -> tuple[str, ...]:
        return self.indexed_sort_fields

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


def _planner_estimate(queryset: QuerySet[Any]) -> int:
    try:
        plan = json.loads(queryset.explain(format="json"))
        return int(plan[0]["Plan"]["Plan Rows"])
    except (ValueError, KeyError, IndexError, TypeError):  # pragma: no cover - a planner output we don't know
        logger.warning("could not read the planner's row estimate for %s", queryset.model.__name__)
        return 0


def json_compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def json_pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2, default=str)
