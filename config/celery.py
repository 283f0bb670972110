import os
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("engage")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def warm_up(**kwargs: Any) -> None:
    """Pay once, in the worker's parent process, what each forked child would otherwise pay on its
    first send: the HTTP client's transport modules (httpx imports httpcore and h2 when its first
    client is made) and the URL patterns (message links reverse URLs). Children are forked at
    start and again every CELERY_WORKER_MAX_TASKS_PER_CHILD tasks; measured by bench.trigger, each
    child's first triggered send took about 3 s when four started together on 2 busy CPUs, and
    held up every trigger queued behind it. Nothing here touches the database (a connection opened
    before the fork would be shared by the children)."""
    from django.apps import apps

    if not apps.ready:
        return
    import httpcore  # noqa: F401
    from django.urls import get_resolver

    get_resolver().reverse_dict  # noqa: B018 - populates the resolver (per language, the default one)


@worker_process_init.connect
def warm_up_child(**kwargs: Any) -> None:
    """In each forked child before it takes a task: the process's HTTP client, whose TLS context
    (the CA bundle loaded) cannot be made before the fork (its connection pool must be the child's
    own). About 0.1 s less on the child's first send. No network, no database."""
    from django.apps import apps

    if not apps.ready:
        return
    from channels.transports.http import shared_client

    shared_client()
