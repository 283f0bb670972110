from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "campaigns"

    def ready(self) -> None:
        # Signal receivers (trigger matching on stored events, merges) and the tasks they enqueue.
        from . import receivers  # noqa: F401
