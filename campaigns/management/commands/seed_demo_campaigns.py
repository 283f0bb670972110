"""Create the brief's seven example campaigns in the demo workspace (see campaigns.demo).

Idempotent: campaigns that exist (by name) are left as they are. ``seed_demo`` runs this after
loading the demo data, so events from the demo's history never trigger them.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from profiles.models import Workspace

from ...demo import demo_campaigns_create

DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = "Create the demo campaigns (onboarding, permission priming, milestone, abandoned cart, sharing, "
    "loyalty, winter storm) in a workspace. Safe to re-run."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", default=DEMO_SLUG, help="The workspace's slug (default: demo).")

    def handle(self, *args: Any, **options: Any) -> None:
        workspace = Workspace.objects.filter(slug=options["workspace"]).first()
        if workspace is None:
            raise CommandError(f"no workspace {options['workspace']!r}; run seed_demo first")
        campaigns = demo_campaigns_create(workspace=workspace)
        for campaign in campaigns:
            self.stdout.write(f"  {campaign.get_status_display():<9} {campaign.name}")
        self.stdout.write(f"Demo campaigns ready in {workspace.name}: {len(campaigns)}")
