from __future__ import annotations

import factory

from profiles.models import App, Platform, Profile, Workspace


class WorkspaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workspace

    name = factory.Sequence(lambda n: f"Workspace {n}")
    slug = factory.Sequence(lambda n: f"workspace-{n}")


class AppFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = App

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"App {n}")
    platform = Platform.IOS


class ProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Profile

    workspace = factory.SubFactory(WorkspaceFactory)
    external_id = factory.Sequence(lambda n: f"user-{n}")
