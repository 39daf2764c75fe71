import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from demo_site.demo.simulator import SimulatorMiddleware  # noqa: E402
from rtdelivery.asgi import rtdelivery_application  # noqa: E402

application = SimulatorMiddleware(rtdelivery_application(django_asgi_app))
