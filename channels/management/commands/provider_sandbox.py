"""``manage.py provider_sandbox``: run every fake provider on loopback and print what arrives.

    ./run manage provider_sandbox --configure demo

configures the demo workspace's providers to point at the sandbox (a "Local sandbox" config of
every kind), then serves until Ctrl-C: send a test message from admin (Channels > Provider configs
> Send test message) and watch it arrive here — emails over SMTP, pushes over FCM's and APNs'
protocols, decrypted web pushes, SMS (with Twilio's delivery callbacks back to the app) and signed
webhooks.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from profiles.models import Workspace

from ...testing.http import require_loopback
from ...testing.sandbox import DEFAULT_PORTS, ProviderSandbox, credentials_path, sandbox_configure


class Command(BaseCommand):
    help = "Run local fake providers (SMTP, FCM, APNs, web push, Twilio, webhook) and print what they receive."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Loopback address to listen on (default 127.0.0.1).")
        parser.add_argument(
            "--configure",
            metavar="WORKSPACE_SLUG",
            action="append",
            default=[],
            help="Point this workspace's providers at the sandbox (repeatable).",
        )
        parser.add_argument("--no-serve", action="store_true", help="Only --configure, then exit.")
        for name, port in DEFAULT_PORTS.items():
            parser.add_argument(f"--{name}-port", type=int, default=port, help=f"Port of the {name} fake ({port}).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            host = require_loopback(options["host"])
        except ValueError as error:
            raise CommandError(str(error)) from error
        ports = {name: options[f"{name}_port"] for name in DEFAULT_PORTS}
        for slug in options["configure"]:
            workspace = Workspace.objects.filter(slug=slug).first()
            if workspace is None:
                raise CommandError(f"no workspace with slug {slug!r}")
            configs = sandbox_configure(workspace_id=workspace.pk, host=host, ports=ports)
            for config in configs:
                state = "active" if config.is_active else "inactive (another provider of this kind is active)"
                self.stdout.write(f"{workspace.name}: {config} -> {state}")
        if options["no_serve"]:
            return

        stop = threading.Event()
        lock = threading.Lock()

        def say(line: str) -> None:
            with lock:
                self.stdout.write(line)
                self.stdout.flush()

        sandbox = ProviderSandbox(host=host, ports=ports, on_message=say)
        try:
            sandbox.start()
        except OSError as error:
            raise CommandError(str(error)) from error
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write(f"Provider sandbox (credentials in {credentials_path()}):")
        for name, url in sandbox.endpoints().items():
            self.stdout.write(f"  {name:<8} {url}")
        self.stdout.write("Waiting for messages; Ctrl-C to stop.")
        try:
            stop.wait()
        finally:
            sandbox.stop()
            self.stdout.write("Provider sandbox stopped.")
