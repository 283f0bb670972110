from django.urls import URLPattern, URLResolver, include, path

from .api.intake import IntakeView

# The Segment paths, and analytics.js's one-letter forms of them. No trailing slash: SDKs post to
# exactly these, and APPEND_SLASH cannot redirect a POST.
_INTAKE_PATHS = {
    "batch": None,
    "b": None,
    "identify": "identify",
    "i": "identify",
    "track": "track",
    "t": "track",
    "page": "page",
    "p": "page",
    "screen": "screen",
    "s": "screen",
    "group": "group",
    "g": "group",
    "alias": "alias",
    "a": "alias",
}

urlpatterns: list[URLPattern | URLResolver] = [
    path(f"v1/{name}", IntakeView.as_view(call_type=call_type), name=f"intake-{name}")
    for name, call_type in _INTAKE_PATHS.items()
]

# The server-side REST API (secret API keys): profiles, privacy, imports.
urlpatterns += [path("api/v1/", include("profiles.api.urls"))]
