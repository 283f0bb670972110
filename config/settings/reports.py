"""Engagement reports (campaigns/reports): how the rollups are fed and refreshed by beat."""

from config.env import env_int

from .celery import CELERY_BEAT_SCHEDULE

# The rollup reads new rows of the event, delivery and merge tables in id order. A row committed
# late into an id range already read (its transaction took its id before a later one committed) is
# caught by re-checking each range read in the last REPORTS_FEED_OVERLAP seconds: no transaction
# that writes those tables may stay open longer than this.
REPORTS_FEED_OVERLAP = env_int("REPORTS_FEED_OVERLAP", 600, minimum=60)
# Rows per chunk (one transaction each), and how long one rollup run may keep reading chunks.
REPORTS_FEED_BATCH = env_int("REPORTS_FEED_BATCH", 100_000, minimum=1000)
REPORTS_ROLLUP_SECONDS = env_int("REPORTS_ROLLUP_SECONDS", 120, minimum=5)
# A campaign's retention (recipients vs control) is recomputed at most this often, while its sends
# are recent enough for a period to still be open.
REPORTS_CAMPAIGN_RETENTION_EVERY = env_int("REPORTS_CAMPAIGN_RETENTION_EVERY", 3600, minimum=60)

# Not autodiscovered (the module is campaigns.reports.tasks, not campaigns.tasks).
CELERY_IMPORTS = ["campaigns.reports.tasks"]
CELERY_BEAT_SCHEDULE.update(
    {
        # New events, deliveries and merges into the per-person facts and the campaign funnels.
        "reports-rollup": {"task": "campaigns.reports.tasks.reports_rollup_task", "schedule": 60.0},
        # Active users, revenue and retention for the days the rollup marked as changed.
        "reports-refresh": {"task": "campaigns.reports.tasks.reports_refresh_task", "schedule": 600.0},
    }
)

# A page filtered by a segment reuses the segment's members evaluated at most this many seconds ago
# (and says how old they are); 0 evaluates the segment on every page.
REPORTS_SEGMENT_MEMBERS_SECONDS = env_int("REPORTS_SEGMENT_MEMBERS_SECONDS", 300, minimum=0)
# Aggregates per segment (campaigns/reports/members.py): rebuilt this often for every segment a
# report page was filtered by in the last REPORTS_SEGMENT_VIEWED_SECONDS.
REPORTS_SEGMENT_REFRESH_EVERY = env_int("REPORTS_SEGMENT_REFRESH_EVERY", 600, minimum=60)
REPORTS_SEGMENT_VIEWED_SECONDS = env_int("REPORTS_SEGMENT_VIEWED_SECONDS", 86400, minimum=60)
CELERY_BEAT_SCHEDULE["reports-segments"] = {
    "task": "campaigns.reports.tasks.reports_segments_refresh_task",
    "schedule": 300.0,
}

# Funnels (campaigns/reports/funnels.py): their results per entry day, recomputed by beat every
# REPORTS_FUNNEL_REFRESH_EVERY seconds for the funnels a page showed in the last
# REPORTS_FUNNEL_VIEWED_SECONDS (the days that may still change: about 0.2-0.3 s of PostgreSQL per
# 300,000 people entering a funnel); a page recomputes itself the days older than
# REPORTS_FUNNEL_FRESH_SECONDS (keep it above the refresh interval). Funnels nobody looked at for
# REPORTS_FUNNEL_KEEP_SECONDS are forgotten.
REPORTS_FUNNEL_REFRESH_EVERY = env_int("REPORTS_FUNNEL_REFRESH_EVERY", 120, minimum=10)
REPORTS_FUNNEL_FRESH_SECONDS = env_int("REPORTS_FUNNEL_FRESH_SECONDS", 300, minimum=0)
REPORTS_FUNNEL_VIEWED_SECONDS = env_int("REPORTS_FUNNEL_VIEWED_SECONDS", 3600, minimum=60)
REPORTS_FUNNEL_KEEP_SECONDS = env_int("REPORTS_FUNNEL_KEEP_SECONDS", 7 * 86400, minimum=3600)
CELERY_BEAT_SCHEDULE["reports-funnels"] = {
    "task": "campaigns.reports.tasks.reports_funnels_refresh_task",
    "schedule": float(REPORTS_FUNNEL_REFRESH_EVERY),
}
