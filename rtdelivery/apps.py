from __future__ import annotations

from django.apps import AppConfig


class RTDeliveryConfig(AppConfig):
    name = "rtdelivery"
    verbose_name = "rtdelivery"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from . import asgi, checks, conf, connections

        checks.register()
        setting_changed.connect(conf.clear_cache, dispatch_uid="rtdelivery.conf")
        setting_changed.connect(connections.forget_clients, dispatch_uid="rtdelivery.redis")
        setting_changed.connect(asgi.clear_route_cache, dispatch_uid="rtdelivery.routes")
        from django.apps import apps

        if apps.is_installed("django.contrib.auth"):
            from django.contrib.auth.signals import user_logged_out

            from .access import on_user_logged_out

            # RTDELIVERY["DISCONNECT_ON_LOGOUT"] decides, at logout, what it ends.
            user_logged_out.connect(on_user_logged_out, dispatch_uid="rtdelivery.logout")
