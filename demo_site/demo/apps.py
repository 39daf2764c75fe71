from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "demo_site.demo"
    label = "demo"
    verbose_name = "rtdelivery demo"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connects the publish-on-save receivers)
