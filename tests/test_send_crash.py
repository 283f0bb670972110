"""A worker killed mid-send: nobody gets the campaign twice, nobody is lost.

A real ``celery worker`` subprocess (prefork, one child) and the real broker (CELERY_BROKER_URL)
send a campaign through the email transport to an SMTP sink on loopback. The sink holds its answer
to one message's DATA (the message is in its mailbox; the worker waits for the "250"), and there
the worker's child is killed with SIGKILL, then the whole worker. A new worker starts; beat's work
(claiming due rows, recovering stale claims, channels' outbox sweep) is driven from the test with
short timeouts. At the end every person has exactly one email at the sink.

The messages in flight at the kill are the hard case: the provider has them but the worker never heard
so. Their dispatches stay "sending" until channels' sweep gives them up as "outcome unknown" (at most
once: not sent again), and their deliveries record that.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import psutil
import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from campaigns.models import Delivery, DeliveryStatus
from campaigns.services.launch import campaign_launch, campaigns_tick
from campaigns.services.sending import deliveries_enqueue_due
from campaigns.tests.builder import campaign, segment
from channels.models import Dispatch
from channels.services.dispatch import dispatch_sweep
from channels.services.dispatch_batch import RECORD_EVERY
from channels.testing.smtp import SmtpMessage, SmtpSink
from config.celery import app as celery_app
from profiles.models import Profile, Workspace

BASE_DIR = Path(__file__).resolve().parent.parent
PEOPLE = 40
BATCH = 10
KILL_AT = 15  # the message whose DATA answer the sink holds while the worker is killed


class SlowSink:
    """An SMTP sink that takes a little time per message and, at message ``KILL_AT``, keeps the
    worker waiting for its answer until released (the message is already in the mailbox)."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()
        self.sink = SmtpSink(on_receive=self._received)

    def _received(self, _name: str, message: SmtpMessage) -> None:
        if len(self.sink.messages) == KILL_AT and not self.release.is_set():
            self.holding.set()
            self.release.wait(timeout=60)
        else:
            time.sleep(0.02)

    def counts(self) -> Counter[str]:
        return Counter(address for message in self.sink.messages for address in message.recipients)


def worker_env(queue: str, smtp_port: int) -> dict[str, str]:
    url = urlparse(os.environ["DATABASE_URL"])
    test_database = connection.settings_dict["NAME"]
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=urlunparse(url._replace(path="/" + test_database)),
        CELERY_BROKER_URL=django_settings.CELERY_BROKER_URL,
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp_port),
        CAMPAIGNS_SEND_QUEUE=queue,
        DB_CONN_MAX_AGE="0",
        PYTHONUNBUFFERED="1",
    )
    return env


class Worker:
    def __init__(self, queue: str, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "prefork", "--concurrency", "1",
                 "-Q", queue, "--loglevel", "INFO", "--without-mingle", "--without-gossip", "--without-heartbeat",
                 "-n", f"crash-{uuid.uuid4().hex[:8]}@%h"],
                cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def children(self) -> list[int]:
        try:
            return [child.pid for child in psutil.Process(self.process.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def kill_all(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def wait_for(
    condition: Callable[[], bool], *, timeout: float, what: str, step: Callable[[], None] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if step is not None:
            step()
        if condition():
            return
        time.sleep(0.2)  # polling another process; nothing here waits for time to pass in the code under test
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def sink() -> Iterator[SlowSink]:
    slow = SlowSink()
    slow.sink.start()
    try:
        yield slow
    finally:
        slow.release.set()
        slow.sink.stop()


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_send_sends_nobody_twice_and_loses_nobody(
    sink: SlowSink, tmp_path: Path, settings: Any
) -> None:
    queue = f"crash-test-{uuid.uuid4().hex[:8]}"
    settings.CAMPAIGNS_SEND_QUEUE = queue
    settings.CAMPAIGNS_CLAIM_TIMEOUT = 3  # the sweep re-claims what the dead worker held
    settings.CHANNELS_CLAIM_TIMEOUT = 3  # ... and channels gives up the message it was sending
    settings.CAMPAIGNS_MAX_CLAIMS = 100  # with timeouts this short, a slow start must not look like a crash loop
    workspace = Workspace.objects.create(name="Crash", slug="crash")
    Profile.objects.bulk_create(
        Profile(workspace=workspace, external_id=f"u{n}", email=f"u{n}@example.com") for n in range(PEOPLE)
    )
    c = campaign(
        workspace,
        include=[segment(workspace, "All")],
        messages=[("email", {"subject": "Hello {{ external_id }}", "text": "."})],
        send_at=timezone.now(),
    )
    campaign_launch(campaign=c, actor=None)
    campaigns_tick()

    env = worker_env(queue, sink.sink.port)
    log = tmp_path / "worker.log"
    workers = [Worker(queue, env, log)]
    try:
        assert deliveries_enqueue_due(batch_size=BATCH).claimed == PEOPLE  # four batches, four tasks
        assert sink.holding.wait(timeout=90), f"the worker never reached message {KILL_AT}:\n{log.read_text()[-3000:]}"
        children = workers[0].children()
        assert children, "no worker child to kill"
        os.kill(children[0], signal.SIGKILL)  # kill -9 the child mid-batch...
        workers[0].kill_all()  # ... and the worker with it
        sink.release.set()
        assert len(sink.sink.messages) == KILL_AT

        workers.append(Worker(queue, env, log))

        def beat() -> None:
            assert workers[-1].process.poll() is None, f"the new worker died:\n{log.read_text()[-3000:]}"
            deliveries_enqueue_due(batch_size=BATCH)
            dispatch_sweep()

        def finished() -> bool:
            return not Delivery.objects.filter(
                campaign=c, status__in=[DeliveryStatus.SCHEDULED, DeliveryStatus.SENDING]
            ).exists()

        wait_for(finished, timeout=120, what="every delivery to finish", step=beat)
    finally:
        for worker in workers:
            worker.kill_all()
        # The test broker is shared by the whole run: leave no task (ours, or the trigger matching
        # the engagement events enqueued on the default queue) for another test's worker.
        celery_app.control.purge()
        with celery_app.connection_for_write() as broker:
            broker.default_channel.queue_purge(queue)

    counts = sink.counts()
    outcomes = Counter(Delivery.objects.filter(campaign=c).values_list("status", "reason"))
    assert sorted(counts) == sorted(f"u{n}@example.com" for n in range(PEOPLE)), f"somebody was lost: {outcomes}"
    assert set(counts.values()) == {1}, f"somebody got it twice: {[a for a, n in counts.items() if n > 1]}"
    # Messages the killed worker had handed over but not yet recorded (at most channels'
    # RECORD_EVERY, the one in flight included) reached the sink, but nobody heard back: they are
    # recorded as failed ("outcome unknown") and not sent again. Everyone else is recorded as sent.
    deliveries = list(Delivery.objects.filter(campaign=c).select_related("profile"))
    unknown = [d for d in deliveries if d.status == DeliveryStatus.FAILED]
    assert 1 <= len(unknown) <= RECORD_EVERY
    assert all("outcome_unknown" in d.reason and counts[d.profile.email] == 1 for d in unknown)
    assert sum(d.status == DeliveryStatus.SENT for d in deliveries) == PEOPLE - len(unknown)
    assert Dispatch.objects.filter(workspace=workspace).count() == PEOPLE
