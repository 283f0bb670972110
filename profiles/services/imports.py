"""Bulk CSV import of profiles: upload, then a background run in bounded, resumable batches.

The file: UTF-8 (a byte-order mark is fine), comma-separated, with a header row. Columns:

- ``external_id`` (required in every row): the person; an existing profile is updated, a new one
  created.
- a standard attribute by name or alias (``email``, ``phone``, ``first_name``, ``dob``, ``country``,
  ``home_city``, ...; see ``profiles.traits``), validated as the API validates it, including
  ``email_subscription`` / ``push_subscription`` / ``sms_subscription`` (their ``*_changed_at`` moves
  only when a state changes);
- anything else: a custom attribute. Cells are typed: ``true``/``false`` become booleans, integers
  (up to 15 digits, no leading zeros) and decimals that read back the same (``1.5``, not ``1.50``)
  become numbers, everything else (ISO dates included) stays a string.

A blank cell leaves that attribute as it is (as in Braze's CSV import), so a file need not carry
every attribute. Blank lines are skipped. A row with any invalid cell is skipped whole and reported
(``{row, field, message}``, the first 1000); so is a row whose external id belongs to a deleted
person. Rows are counted like a spreadsheet does: the header is row 1.

Runs are idempotent and resumable: each batch commits its profiles together with the progress
counters, guarded by the count it started from, so a redelivered or duplicate task continues where
the last committed batch ended and never applies a batch twice.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from itertools import islice
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.db.models import NOT_PROVIDED, F
from django.utils import timezone

from ..models import Profile, ProfileImport, SubscriptionState, Workspace
from ..traits import SUBSCRIPTION_COLUMNS, TRAIT_COLUMNS, column_for
from .locks import lock_identities
from .privacy import suppressed_identifiers
from .profiles import RESERVED_ATTRIBUTES, attributes_normalize, external_id_errors

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
BATCHES_PER_RUN = 20  # 20,000 rows per task run, well inside the task time limit
MAX_REPORTED_ERRORS = 1000
MAX_FILE_BYTES = 200 * 1024 * 1024
EXTERNAL_ID = "external_id"
NOT_UTF8 = 'the file is not UTF-8 text; save it as "CSV UTF-8" and upload it again'

_INTEGER_RE = re.compile(r"^-?[1-9]\d{0,14}$|^0$")
_DECIMAL_RE = re.compile(r"^-?(?:0|[1-9]\d{0,14})\.\d{1,15}$")


def typed_value(text: str) -> Any:
    """A CSV cell as the JSON value it spells: booleans, then lossless numbers, else the text."""
    lowered = text.lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    if _INTEGER_RE.match(text):
        return int(text)
    # Only when the number reads back as written, so "1.10" (a version) or "2.50" stays text.
    if _DECIMAL_RE.match(text) and repr(float(text)) == text:
        return float(text)
    return text


# --- The header ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvLayout:
    """What each column of the file means."""

    external_id_index: int
    # (column index, header name, whether it names a standard attribute) of every other column
    attributes: list[tuple[int, str, bool]]
    width: int


def csv_layout(header: list[str] | None) -> CsvLayout:
    """Read the header row; raise ``ValidationError`` naming what is wrong with it."""
    if not header or not any(cell.strip() for cell in header):
        raise ValidationError({"file": ["the file is empty; the first row must name the columns"]})
    problems: list[str] = []
    names = [cell.strip() for cell in header]
    external_index: int | None = None
    seen: dict[str, str] = {}
    attributes: list[tuple[int, str, bool]] = []
    for index, name in enumerate(names):
        if not name:
            problems.append(f"column {index + 1} has no name")
            continue
        folded = name.lower().replace("-", "_").replace(" ", "_")
        if folded == EXTERNAL_ID:
            if external_index is not None:
                problems.append("the external_id column appears twice")
            external_index = index
            continue
        if folded in RESERVED_ATTRIBUTES:
            problems.append(f"column {name!r} is maintained by the platform and cannot be imported")
            continue
        column = column_for(name)
        key = column or f"custom:{name}"
        if key in seen:
            problems.append(f"columns {seen[key]!r} and {name!r} set the same attribute")
            continue
        seen[key] = name
        attributes.append((index, name, column is not None))
    if external_index is None:
        problems.append("an external_id column is required")
    if problems:
        raise ValidationError({"file": problems})
    assert external_index is not None
    return CsvLayout(external_id_index=external_index, attributes=attributes, width=len(names))


def _reader(lines: Iterable[bytes]) -> Iterator[list[str]]:
    # Decoding line by line works for any storage backend's file object; a line break is ASCII, so
    # no character is ever split. Line endings are kept, so quoted multi-line cells parse right.
    return csv.reader(codecs.iterdecode(lines, "utf-8-sig"))


def _records(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
    """``(spreadsheet row number, cells)`` of every non-blank record after the header."""
    for number, cells in enumerate(reader, start=2):
        if any(cell.strip() for cell in cells):
            yield number, cells


# --- Upload ----------------------------------------------------------------------------------


def csv_file_check(file: UploadedFile) -> None:
    """Refuse (``ValidationError`` on ``file``) a file too big, or whose header cannot be imported.
    Reads only the header row; leaves the file at its start."""
    if file.size is not None and file.size > MAX_FILE_BYTES:
        raise ValidationError({"file": [f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; split it"]})
    file.seek(0)
    try:
        csv_layout(next(_reader(iter(file)), None))
    except UnicodeDecodeError:
        raise ValidationError({"file": [NOT_UTF8]}) from None
    except csv.Error as exc:
        raise ValidationError({"file": [f"the header row is not valid CSV: {exc}"]}) from None
    finally:
        file.seek(0)


def profile_import_create(
    *, workspace: Workspace, file: UploadedFile, created_by: AbstractBaseUser | None = None
) -> ProfileImport:
    """Store an uploaded CSV and queue its import (after commit). The header is checked now, so a
    file that cannot be imported is refused at once (``ValidationError`` on ``file``)."""
    csv_file_check(file)
    profile_import = ProfileImport.objects.create(
        workspace=workspace,
        file=file,
        created_by=created_by if created_by is not None and created_by.pk else None,  # type: ignore[misc]
    )
    _enqueue(profile_import.pk)
    return profile_import


def import_percent(profile_import: ProfileImport) -> float:
    """Processed rows as a percentage of all rows (100 once done), for progress bars."""
    if profile_import.status == ProfileImport.Status.DONE:
        return 100.0
    if not profile_import.total_rows:
        return 0.0
    return round(100 * profile_import.processed_rows / profile_import.total_rows, 1)


def profile_import_retry(*, profile_import: ProfileImport) -> bool:
    """Queue a failed import again; it resumes after the last batch it committed. False if the
    import had not failed."""
    retried = (
        ProfileImport.objects.filter(pk=profile_import.pk, status=ProfileImport.Status.FAILED).update(
            status=ProfileImport.Status.PENDING, failure="", finished_at=None
        )
        == 1
    )
    if retried:
        _enqueue(profile_import.pk)
    return retried


def _enqueue(import_id: int) -> None:
    # Imported here: the task module imports this one.
    from ..tasks import profile_import_task

    transaction.on_commit(lambda: profile_import_task.delay(import_id))


# --- The run ---------------------------------------------------------------------------------


@dataclass
class BatchOutcome:
    imported: int = 0
    created: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_rows: int = 0


class _Superseded(Exception):
    """Another run committed this batch first."""


def profile_import_run(*, import_id: int, max_batches: int = BATCHES_PER_RUN) -> bool:
    """Import up to ``max_batches`` batches of the file; return True when rows remain (the caller
    queues another run).

    Claims the import by a conditional update (pending or running -> running: a running import is
    one whose worker died, and is resumed). Each batch commits with its progress counters, guarded
    by the processed count it started from: of two concurrent runs, the second finds the count
    moved, rolls its batch back and stops. A file that cannot be read fails the import with a
    message; rows imported by earlier batches stay.
    """
    claimable = [ProfileImport.Status.PENDING, ProfileImport.Status.RUNNING]
    if not ProfileImport.objects.filter(pk=import_id, status__in=claimable).update(status=ProfileImport.Status.RUNNING):
        return False
    profile_import = ProfileImport.objects.select_related("workspace").get(pk=import_id)
    try:
        return _run(profile_import, max_batches=max_batches)
    except (ValidationError, UnicodeDecodeError, csv.Error) as exc:
        _fail(import_id, _reason(exc))
        return False
    except Exception as exc:
        # Not the file's fault: record it for the admin, and re-raise so the worker logs the traceback.
        _fail(import_id, f"unexpected error: {exc.__class__.__name__}: {exc}")
        raise


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    if isinstance(exc, UnicodeDecodeError):
        return NOT_UTF8
    return f"the file is not valid CSV: {exc}"


def _fail(import_id: int, reason: str) -> None:
    ProfileImport.objects.filter(pk=import_id).exclude(status=ProfileImport.Status.DONE).update(
        status=ProfileImport.Status.FAILED, failure=reason[:2000], finished_at=timezone.now()
    )


def _run(profile_import: ProfileImport, *, max_batches: int) -> bool:
    if profile_import.processed_rows == 0:
        # A first pass counts the rows for the progress bar and proves the whole file decodes
        # before any row is imported.
        with profile_import.file.open("rb") as raw:
            reader = _reader(iter(raw))
            csv_layout(next(reader, None))
            total = sum(1 for _ in _records(reader))
        ProfileImport.objects.filter(pk=profile_import.pk).update(total_rows=total)
        profile_import.total_rows = total

    processed = profile_import.processed_rows
    with profile_import.file.open("rb") as raw:
        reader = _reader(iter(raw))
        layout = csv_layout(next(reader, None))
        records = _records(reader)
        for _ in islice(records, processed):
            pass  # already imported by an earlier run
        for _ in range(max_batches):
            batch = list(islice(records, BATCH_SIZE))
            if not batch:
                break
            try:
                processed = _import_batch(profile_import, layout, batch, processed=processed)
            except _Superseded:
                logger.info("import %s: batch at row %s committed by another run", profile_import.pk, processed)
                return False
        else:
            if next(records, None) is not None:
                return True
    ProfileImport.objects.filter(pk=profile_import.pk, status=ProfileImport.Status.RUNNING).update(
        status=ProfileImport.Status.DONE, finished_at=timezone.now()
    )
    return False


def _import_batch(
    profile_import: ProfileImport, layout: CsvLayout, batch: list[tuple[int, list[str]]], *, processed: int
) -> int:
    """Upsert one batch and advance the counters, in one transaction; return the new processed count."""
    records, rows_by_id, outcome = _prepare(layout, batch)
    workspace = profile_import.workspace
    with transaction.atomic():
        if records:
            lock_identities(workspace.pk, external_ids=records)
            blocked, _ = suppressed_identifiers(workspace_id=workspace.pk, external_ids=records, anonymous_ids=())
            for external_id in sorted(blocked, key=lambda value: rows_by_id[value][0]):
                del records[external_id]
                for row in rows_by_id[external_id]:
                    outcome.errors.append(
                        {
                            "row": row,
                            "field": EXTERNAL_ID,
                            "message": "deleted person: this external id belongs to a person who was deleted "
                            "and cannot be imported again",
                        }
                    )
                    outcome.error_rows += 1
                    outcome.imported -= 1
            outcome.created = _upsert(workspace.pk, list(records.values()))
        current = ProfileImport.objects.filter(pk=profile_import.pk).values_list("errors", flat=True).first() or []
        room = max(0, MAX_REPORTED_ERRORS - len(current))
        errors = sorted(outcome.errors, key=lambda error: error["row"])[:room]
        advanced = ProfileImport.objects.filter(
            pk=profile_import.pk, status=ProfileImport.Status.RUNNING, processed_rows=processed
        ).update(
            processed_rows=F("processed_rows") + len(batch),
            imported_rows=F("imported_rows") + outcome.imported,
            error_rows=F("error_rows") + outcome.error_rows,
            errors=[*current, *errors],
        )
        if advanced != 1:
            raise _Superseded  # rolls the batch back
    return processed + len(batch)


def _prepare(
    layout: CsvLayout, batch: list[tuple[int, list[str]]]
) -> tuple[dict[str, dict[str, Any]], dict[str, list[int]], BatchOutcome]:
    """Validate and normalise the rows. Returns one record per external id (later rows of the
    same person override earlier ones, as if imported one after the other), the row numbers of
    each id, and the outcome so far (rows valid, errors)."""
    records: dict[str, dict[str, Any]] = {}
    rows_by_id: dict[str, list[int]] = {}
    outcome = BatchOutcome()
    for number, cells in batch:
        row_errors: list[tuple[str, str]] = []
        if len(cells) > layout.width:
            row_errors.append(("row", f"has {len(cells)} cells; the header names {layout.width} columns"))
        external_id = cells[layout.external_id_index].strip() if layout.external_id_index < len(cells) else ""
        if not external_id:
            row_errors.append((EXTERNAL_ID, "is required"))
        else:
            row_errors += [(EXTERNAL_ID, message) for message in external_id_errors(external_id)]
        traits: dict[str, Any] = {}
        for index, name, standard in layout.attributes:
            text = cells[index].strip() if index < len(cells) else ""
            if not text:
                continue
            if "\x00" in text:
                row_errors.append((name, "may not contain NUL characters"))
            traits[name] = text if standard else typed_value(text)
        normalized = attributes_normalize(traits, prefix="row")
        row_errors += [(name.removeprefix("row."), message) for name, message in normalized.errors]
        if row_errors:
            outcome.error_rows += 1
            outcome.errors += [{"row": number, "field": name, "message": message} for name, message in row_errors]
            continue
        record = records.setdefault(external_id, {EXTERNAL_ID: external_id, "custom": {}})
        for column, value in normalized.columns.items():
            record[column] = value.isoformat() if isinstance(value, date) else value
        record["custom"].update(normalized.custom)
        rows_by_id.setdefault(external_id, []).append(number)
        outcome.imported += 1
    return records, rows_by_id, outcome


# --- The upsert ------------------------------------------------------------------------------

_TABLE = Profile._meta.db_table
_STANDARD = sorted(TRAIT_COLUMNS)
_RECORD_TYPES = ", ".join(
    [f"{EXTERNAL_ID} text"]
    + [f"{c} {'date' if Profile._meta.get_field(c).get_internal_type() == 'DateField' else 'text'}" for c in _STANDARD]
    + ["custom jsonb"]
)
_DEFAULT_STATE = SubscriptionState.SUBSCRIBED.value


def _insert_values() -> tuple[list[str], list[str], dict[str, Any]]:
    """Columns and value expressions of the INSERT, from the model, so a NOT NULL column added
    later gets its default here too. Columns with a database default (random bucket) are left to it."""
    columns: list[str] = []
    values: list[str] = []
    defaults: dict[str, Any] = {}
    changed_at = {f"{c}_changed_at": c for c in SUBSCRIPTION_COLUMNS}
    for model_field in Profile._meta.concrete_fields:
        column = str(model_field.column)
        if model_field.primary_key or model_field.db_default is not NOT_PROVIDED:
            continue
        if column == "workspace_id":
            expression = "%(workspace_id)s"
        elif column == EXTERNAL_ID:
            expression = f"v.{EXTERNAL_ID}"
        elif column == "custom_attributes":
            expression = "v.custom"
        elif column in {"created_at", "updated_at"}:
            expression = "%(now)s"
        elif column in changed_at:
            state = changed_at[column]
            expression = (
                f"CASE WHEN v.{state} IS DISTINCT FROM '{_DEFAULT_STATE}' AND v.{state} IS NOT NULL THEN %(now)s END"
            )
        elif column in TRAIT_COLUMNS and model_field.null:
            expression = f"v.{column}"
        elif column in TRAIT_COLUMNS:
            defaults[column] = model_field.get_default()
            expression = f"COALESCE(v.{column}, %(default_{column})s)"
        elif model_field.null:
            continue
        else:
            defaults[column] = model_field.get_default()
            expression = f"%(default_{column})s"
        columns.append(column)
        values.append(expression)
    return columns, values, {f"default_{name}": value for name, value in defaults.items()}


_INSERT_COLUMNS, _INSERT_VALUES, _INSERT_DEFAULTS = _insert_values()
_UPDATE_SET = ", ".join(
    [f"{c} = COALESCE(v.{c}, p.{c})" for c in _STANDARD]
    + [
        f"{c}_changed_at = CASE WHEN v.{c} IS NOT NULL AND v.{c} IS DISTINCT FROM p.{c} THEN %(now)s "
        f"ELSE p.{c}_changed_at END"
        for c in SUBSCRIPTION_COLUMNS
    ]
    + ["custom_attributes = p.custom_attributes || v.custom", "updated_at = %(now)s"]
)
# New people are inserted and existing ones updated in one statement. Not a plain
# ``ON CONFLICT DO UPDATE``: a blank cell must leave the attribute alone, and DO UPDATE sees only
# the proposed row (blanks already replaced by defaults), not which cells were blank. The UPDATE
# reads the source rows instead. All parts of the statement share one snapshot, so the UPDATE
# touches only profiles that existed before it; callers hold the identity locks of the batch, so
# no other writer creates one of these people meanwhile.
_UPSERT_SQL = f"""
WITH v AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS v({_RECORD_TYPES})
),
inserted AS (
    INSERT INTO {_TABLE} ({", ".join(_INSERT_COLUMNS)})
    SELECT {", ".join(_INSERT_VALUES)} FROM v
    ON CONFLICT (workspace_id, external_id) WHERE external_id IS NOT NULL DO NOTHING
    RETURNING 1
),
updated AS (
    UPDATE {_TABLE} AS p SET {_UPDATE_SET}
    FROM v
    WHERE p.workspace_id = %(workspace_id)s AND p.external_id = v.{EXTERNAL_ID}
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM updated)
"""  # noqa: S608 (identifiers from the model; every value is a parameter)


def _upsert(workspace_id: int, records: list[dict[str, Any]]) -> int:
    """Insert or update these records (one per external id); return how many were created."""
    if not records:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            _UPSERT_SQL,
            {
                "rows": json.dumps(records, separators=(",", ":")),
                "workspace_id": workspace_id,
                "now": timezone.now(),
                **_INSERT_DEFAULTS,
            },
        )
        created, _updated = cursor.fetchone()
    return int(created)
