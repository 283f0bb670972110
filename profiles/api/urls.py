"""Routes of the server-side REST API, mounted at /api/v1/ by profiles.urls."""

from django.urls import path

from . import server

urlpatterns = [
    # Before the profile routes: "imports" is not an external id here.
    path("profiles/imports", server.ProfileImportCreateView.as_view(), name="api-profile-import-create"),
    path("profiles/imports/<int:pk>", server.ProfileImportDetailView.as_view(), name="api-profile-import-detail"),
    path("profiles", server.ProfileListView.as_view(), name="api-profile-list"),
    # path, not str: an external id may contain "/" (sent URL-encoded as %2F, decoded before routing).
    path("profiles/<path:external_id>/export", server.ProfileExportView.as_view(), name="api-profile-export"),
    path("profiles/<path:external_id>", server.ProfileDetailView.as_view(), name="api-profile-detail"),
]
