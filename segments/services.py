"""Writes for segments: create and change them (validating the definition and refusing cycles),
record daily sizes, set lifecycle thresholds."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import ManyToManyRel
from django.utils import timezone

from profiles.models import Workspace
from profiles.services.locks import identity_lock_key

from .definition import DefinitionError, Problem, parse_definition, raw_segment_references, segment_references
from .models import LifecycleSettings, Segment, SegmentSizeSnapshot
from .selectors import segment_size


def _lock_workspace_segments(workspace_id: int) -> None:
    # Two saves in one workspace could each add half of a cycle (A -> B and B -> A) and each see
    # none; saves of a workspace's segments therefore run one at a time.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [identity_lock_key(workspace_id, "segments", "save")])


def _reference_problems(definition: Any, *, workspace_id: int, segment: Segment | None) -> list[Problem]:
    root = parse_definition(definition)
    references = segment_references(root)
    if not references:
        return []
    rows = Segment.objects.filter(workspace_id=workspace_id).values_list("pk", "name", "definition")
    names = {pk: name for pk, name, _ in rows}
    graph = {pk: raw_segment_references(stored) for pk, _, stored in rows}
    if segment is not None:
        names[segment.pk] = segment.name
        graph[segment.pk] = raw_segment_references(definition)
    problems = []
    for reference in references:
        if reference.segment_id not in names:
            problems.append(
                Problem(reference.path, f"segment: segment #{reference.segment_id} does not exist in this workspace")
            )
            continue
        if segment is None:
            continue  # a new segment has no id yet, so nothing can refer back to it
        cycle = _path_between(reference.segment_id, segment.pk, graph)
        if cycle is not None:
            chain = " → ".join(f'"{names.get(pk, f"#{pk}")}"' for pk in [segment.pk, *cycle])
            problems.append(Problem(reference.path, f"segment: membership would make a cycle: {chain}"))
    return problems


def _path_between(start: int, goal: int, graph: dict[int, set[int]]) -> list[int] | None:
    """The segments from ``start`` to ``goal`` following references (both included), or None."""
    stack: list[tuple[int, list[int]]] = [(start, [start])]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if node == goal:
            return path
        if node in seen:
            continue
        seen.add(node)
        stack.extend((child, [*path, child]) for child in sorted(graph.get(node, ()), reverse=True))
    return None


def segment_definition_problems(*, workspace_id: int, definition: Any, segment: Segment | None = None) -> list[Problem]:
    """Every problem of ``definition``, each naming its node (like ``all[2].any[0]``) and the rule
    broken: structure, values, and segment references that do not exist or would make a cycle
    (``segment`` is the one being changed, None for a new one). Empty when it may be saved."""
    try:
        return _reference_problems(definition, workspace_id=workspace_id, segment=segment)
    except DefinitionError as error:
        return error.problems


def segment_definition_check(*, workspace_id: int, definition: Any, segment: Segment | None = None) -> None:
    """Raise ``ValidationError({"definition": [...]})`` listing every problem of ``definition``
    (see ``segment_definition_problems``)."""
    problems = segment_definition_problems(workspace_id=workspace_id, definition=definition, segment=segment)
    if problems:
        raise ValidationError({"definition": [str(problem) for problem in problems]})


def segment_name_check(*, workspace_id: int, name: str, segment: Segment | None = None) -> str:
    """The name, stripped; ``ValidationError({"name": [...]})`` if it is empty or taken in the
    workspace (``segment`` is the one being renamed)."""
    return _check_name(workspace_id=workspace_id, name=name, segment=segment)


def _check_name(*, workspace_id: int, name: str, segment: Segment | None) -> str:
    name = name.strip()
    if not name:
        raise ValidationError({"name": ["A segment needs a name."]})
    taken = Segment.objects.filter(workspace_id=workspace_id, name=name)
    if segment is not None:
        taken = taken.exclude(pk=segment.pk)
    if taken.exists():
        raise ValidationError({"name": [f"A segment named {name!r} already exists in this workspace."]})
    return name


@transaction.atomic
def segment_create(
    *,
    workspace: Workspace,
    name: str,
    definition: Any,
    description: str = "",
    created_by: Any = None,
) -> Segment:
    _lock_workspace_segments(workspace.pk)
    name = _check_name(workspace_id=workspace.pk, name=name, segment=None)
    segment_definition_check(workspace_id=workspace.pk, definition=definition)
    return Segment.objects.create(
        workspace=workspace, name=name, description=description, definition=definition, created_by=created_by
    )


@transaction.atomic
def segment_update(
    *, segment: Segment, name: str | None = None, description: str | None = None, definition: Any = None
) -> Segment:
    """Change what is given; the definition is validated as a whole and must not make a cycle."""
    _lock_workspace_segments(segment.workspace_id)
    fields = ["updated_at"]
    if name is not None:
        segment.name = _check_name(workspace_id=segment.workspace_id, name=name, segment=segment)
        fields.append("name")
    if description is not None:
        segment.description = description
        fields.append("description")
    if definition is not None:
        segment_definition_check(workspace_id=segment.workspace_id, definition=definition, segment=segment)
        segment.definition = definition
        fields.append("definition")
    segment.save(update_fields=fields)
    return segment


@transaction.atomic
def segment_delete(*, segment: Segment) -> None:
    """Delete a segment nothing refers to: no other segment's definition, and no many-to-many
    relation of another app (a campaign's audience). ``ValidationError`` naming the users otherwise."""
    _lock_workspace_segments(segment.workspace_id)
    users = [
        repr(name)
        for name, stored in Segment.objects.filter(workspace_id=segment.workspace_id)
        .exclude(pk=segment.pk)
        .values_list("name", "definition")
        if segment.pk in raw_segment_references(stored)
    ]
    users = sorted(users) + segment_users_elsewhere(segment=segment)
    if users:
        raise ValidationError(f"Segment {segment.name!r} is used by {', '.join(users)}.")
    segment.delete()


def segment_users_elsewhere(*, segment: Segment, limit: int = 10) -> list[str]:
    """What other apps point at the segment through a many-to-many relation, e.g. "campaign
    'Spring sale' (include segments)". Read from the relations themselves, so segments never imports
    the apps that use it: deleting the segment would silently drop it from them (a campaign whose
    only audience segment vanished would be sent to everyone)."""
    found: list[str] = []
    for relation in Segment._meta.get_fields(include_hidden=True):
        if not isinstance(relation, ManyToManyRel) or relation.related_model is Segment:
            continue
        model = relation.related_model
        owners = model._default_manager.filter(**{relation.field.name: segment})[:limit]
        found += [f"{model._meta.verbose_name} {str(owner)!r} ({relation.field.verbose_name})" for owner in owners]
    return found


def segment_size_record(*, segment: Segment, on: date | None = None) -> SegmentSizeSnapshot:
    """Record today's (or ``on``'s) size; recording again the same day replaces the figure, so the
    beat task may run twice without duplicates."""
    size = segment_size(segment=segment)
    snapshot, _ = SegmentSizeSnapshot.objects.update_or_create(
        segment=segment, date=on or timezone.now().date(), defaults={"size": size}
    )
    return snapshot


def lifecycle_settings_update(
    *, workspace: Workspace, new_days: int, lapsed_after_days: int, churned_after_days: int
) -> LifecycleSettings:
    if new_days < 1 or lapsed_after_days < 1 or churned_after_days <= lapsed_after_days:
        raise ValidationError(
            "Thresholds must be at least one day, and 'churned after' must be longer than 'lapsed after'."
        )
    settings_, _ = LifecycleSettings.objects.update_or_create(
        workspace=workspace,
        defaults={
            "new_days": new_days,
            "lapsed_after_days": lapsed_after_days,
            "churned_after_days": churned_after_days,
        },
    )
    return settings_
