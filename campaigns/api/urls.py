"""Routes of the campaigns REST API, mounted at /api/v1/ by config.urls."""

from django.urls import path

from . import views

urlpatterns = [
    path("campaigns/<int:id>/trigger", views.CampaignTriggerView.as_view(), name="api-campaign-trigger"),
]
