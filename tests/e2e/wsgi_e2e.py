"""WSGI application of the e2e settings, for gunicorn (tests/e2e/test_wsgi.py).

The same settings as the Daphne/Uvicorn servers (``tests.e2e.settings_e2e``: Redis layer and
history under ``RTD_PREFIX``), served by a WSGI server: rtdelivery's views run through
Django's WSGI handler, their transport handlers on the process's background loop.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.e2e.settings_e2e")

application = get_wsgi_application()
