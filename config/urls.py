from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

urlpatterns = [
    path("", include("profiles.urls")),
    path("", include("channels.urls")),
    # The campaigns REST API (API-triggered sends), beside profiles' at /api/v1/.
    path("api/v1/", include("campaigns.api.urls")),
    # The segments REST API: CRUD, size, members, "is this person in it?".
    path("api/v1/", include("segments.api.urls")),
    # ESP tracking webhooks: /anymail/<esp>/tracking/ (authenticated by ANYMAIL["WEBHOOK_SECRET"]).
    path("anymail/", include("anymail.urls")),
    path("admin/", admin.site.urls),
    # Engagement reports (staff and analysts, login required): campaigns/reports/.
    path("reports/", include("campaigns.reports.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
]
