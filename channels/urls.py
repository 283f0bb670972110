from django.urls import URLPattern, URLResolver, path

from .api import tracking

urlpatterns: list[URLPattern | URLResolver] = [
    # Hosted pages reached from messages by a signed link (no login).
    path("unsubscribe/<str:token>", tracking.unsubscribe_view, name="channels-unsubscribe"),
    path("preferences/<str:token>", tracking.preferences_view, name="channels-preferences"),
]
