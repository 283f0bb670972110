"""Names of the events that the platform itself records on a profile, beside the app's own events.

Engagement with messages comes back in as ``Event`` rows on the person's profile (type ``track``),
so segments read it with the same machinery as any behaviour ("opened campaign 12 in the last 7
days", "in campaign 12's control group"). Campaigns and channels write these events; segments read
them. Constants only: this module is the contract between them.

The names start with ``$`` so they never clash with an app's own event names; the intake should
refuse client events named with that prefix, so nobody can forge engagement from an SDK.
"""

from __future__ import annotations

RESERVED_PREFIX = "$"

# A session started: an ``Application Opened`` call, or a page/screen call after 30 minutes of
# inactivity. The contract: the intake records one of these (in the same transaction) whenever it
# increments ``Profile.session_count``, so "sessions in the last N days" is a count of these events.
SESSION_STARTED = "$session_started"

# A message was handed to the provider for this person ("received" in Braze's vocabulary).
MESSAGE_RECEIVED = "$message_received"
# The provider confirmed delivery (where the channel reports it).
MESSAGE_DELIVERED = "$message_delivered"
# Opened (email open pixel, push opened, in-app or content card impression).
MESSAGE_OPENED = "$message_opened"
# Clicked a link or button in the message.
MESSAGE_CLICKED = "$message_clicked"
# Bounced or failed permanently at the provider.
MESSAGE_BOUNCED = "$message_bounced"
# Converted: performed the campaign's conversion event within its window.
MESSAGE_CONVERTED = "$message_converted"
# Marked the message as spam at the mailbox provider.
MESSAGE_COMPLAINED = "$message_complained"
# Dismissed a content card (or an in-app message) in the app.
MESSAGE_DISMISSED = "$message_dismissed"
# Unsubscribed from a channel: a hosted unsubscribe link or preferences page, or the ESP's report.
# Properties: channel, and the campaign properties when it came through a message.
UNSUBSCRIBED = "$unsubscribed"
# Held out of a send as part of the campaign's control group (nothing was sent).
CONTROL_GROUP_ENROLLED = "$control_group_enrolled"

# Engagement actions a segment can filter on, by the name the segment definition uses.
ENGAGEMENT_EVENTS: dict[str, str] = {
    "received": MESSAGE_RECEIVED,
    "delivered": MESSAGE_DELIVERED,
    "opened": MESSAGE_OPENED,
    "clicked": MESSAGE_CLICKED,
    "bounced": MESSAGE_BOUNCED,
    "converted": MESSAGE_CONVERTED,
    "complained": MESSAGE_COMPLAINED,
    "dismissed": MESSAGE_DISMISSED,
    "unsubscribed": UNSUBSCRIBED,
}

# Properties every engagement event carries.
PROP_CAMPAIGN_ID = "campaign_id"  # int: the campaign's primary key
PROP_CHANNEL = "channel"  # str: one of CHANNELS
PROP_VARIANT = "variant"  # str: the variant's key ("control" for control-group enrolments)
PROP_SEND_ID = "send_id"  # str: the delivery's opaque id, for tracing a message end to end

CHANNELS = ("email", "push", "webpush", "sms", "webhook", "in_app", "content_card")
