from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "channels"

    def ready(self) -> None:
        from anymail.signals import tracking

        from profiles.signals import profile_merged

        from .signals import anymail_tracking_received, profile_merged_received

        tracking.connect(anymail_tracking_received, dispatch_uid="channels.anymail_tracking")
        profile_merged.connect(profile_merged_received, dispatch_uid="channels.profile_merged")
