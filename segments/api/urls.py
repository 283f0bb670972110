"""Routes of the segments REST API, mounted at /api/v1/ by config.urls."""

from django.urls import path

from . import views

urlpatterns = [
    path("segments", views.SegmentListView.as_view(), name="api-segment-list"),
    path("segments/<int:id>", views.SegmentDetailView.as_view(), name="api-segment-detail"),
    path("segments/<int:id>/size", views.SegmentSizeView.as_view(), name="api-segment-size"),
    path("segments/<int:id>/members", views.SegmentMembersView.as_view(), name="api-segment-members"),
    path("segments/<int:id>/check", views.SegmentCheckView.as_view(), name="api-segment-check"),
]
