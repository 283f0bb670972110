"""The OpenAPI schema describes the REST API and validates without warnings."""

from __future__ import annotations

from io import StringIO

import yaml
from django.core.management import call_command


def test_schema_validates_without_warnings_and_describes_the_rest_api() -> None:
    out = StringIO()
    # Raises SchemaGenerationError on any warning or an invalid schema.
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = yaml.safe_load(out.getvalue())

    paths = schema["paths"]
    assert {"get", "put", "patch", "delete"} <= set(paths["/api/v1/profiles/{external_id}"])
    assert "get" in paths["/api/v1/profiles"]
    assert "get" in paths["/api/v1/profiles/{external_id}/export"]
    assert "multipart/form-data" in paths["/api/v1/profiles/imports"]["post"]["requestBody"]["content"]
    assert "get" in paths["/api/v1/profiles/imports/{id}"]
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    list_parameters = {p["name"] for p in paths["/api/v1/profiles"]["get"]["parameters"]}
    assert {"cursor", "limit", "email", "last_seen_after", "session_count_min", "anonymous"} <= list_parameters
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["code", "message"]
