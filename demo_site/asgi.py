import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from rtdelivery.asgi import rtdelivery_application  # noqa: E402

application = rtdelivery_application(django_asgi_app, prefix="rt/")
