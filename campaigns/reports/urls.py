"""The report pages, under /reports/ (config/urls.py)."""

from django.contrib.auth.views import LogoutView
from django.urls import path

from . import views

app_name = "reports"

urlpatterns = [
    path("", views.index, name="index"),
    path("login/", views.ReportsLoginView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(next_page="reports:login"), name="logout"),
    path("campaigns/<int:campaign_id>/", views.campaign_redirect, name="campaign-redirect"),
    path("<slug:workspace>/", views.overview, name="overview"),
    path("<slug:workspace>/campaigns/", views.campaigns, name="campaigns"),
    path("<slug:workspace>/campaigns/<int:campaign_id>/", views.campaign, name="campaign"),
    path("<slug:workspace>/retention/", views.retention, name="retention"),
    path("<slug:workspace>/funnel/", views.funnel, name="funnel"),
    path("<slug:workspace>/channels/", views.channels, name="channels"),
    path("<slug:workspace>/people/", views.people, name="people"),
]
