"""Campaigns' receivers for what profiles announce (connected in ``CampaignsConfig.ready``).

``profile_merged`` is sent inside the merge transaction, before the merged profile is deleted: its
deliveries move to the surviving profile. Where both profiles have a delivery of the same
campaign, step and occurrence, the target's is kept and the source's dropped (the unique key must
hold, and the person was sent it once). Idempotent: a second receiver doing the same finds nothing.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.dispatch import receiver

from profiles.signals import profile_merged


@receiver(profile_merged, dispatch_uid="campaigns.signals.deliveries_repoint")
def deliveries_repoint(sender: Any, workspace_id: int, source_id: int, target_id: int, **kwargs: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM campaigns_delivery s USING campaigns_delivery t"
            " WHERE s.profile_id = %s AND t.profile_id = %s AND t.campaign_id = s.campaign_id"
            " AND t.step_key = s.step_key AND t.occurrence = s.occurrence",
            [source_id, target_id],
        )
        cursor.execute("UPDATE campaigns_delivery SET profile_id = %s WHERE profile_id = %s", [target_id, source_id])
