from django.urls import URLPattern, URLResolver, path

from .api import client, tracking, twilio

urlpatterns: list[URLPattern | URLResolver] = [
    # Hosted pages reached from messages by a signed link (no login).
    path("unsubscribe/<str:token>", tracking.unsubscribe_view, name="channels-unsubscribe"),
    path("preferences/<str:token>", tracking.preferences_view, name="channels-preferences"),
    # The client API apps call with their write key (no trailing slash, like the intake's paths).
    path("v1/inbox", client.InboxView.as_view(), name="client-inbox"),
    path("v1/inbox/events", client.InboxEventView.as_view(), name="client-inbox-events"),
    path("v1/push/opened", client.PushOpenedView.as_view(), name="client-push-opened"),
    # Twilio's webhooks, authenticated by X-Twilio-Signature.
    path("channels/twilio/status", twilio.status_callback, name="channels-twilio-status"),
    path("channels/twilio/inbound", twilio.inbound, name="channels-twilio-inbound"),
]
