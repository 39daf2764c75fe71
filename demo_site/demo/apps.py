from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "demo_site.demo"
    label = "demo"
    verbose_name = "rtdelivery demo"
