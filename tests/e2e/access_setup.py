"""Set up the access matrix's database: ``python -m tests.e2e.access_setup`` with the
servers' environment (``DJANGO_SETTINGS_MODULE=tests.e2e.settings_e2e``, ``RTD_E2E_DB``).

Migrates the SQLite file, creates the users ``owner``, ``other`` and ``staff``, and prints
(JSON) what the test's clients present: each user's pk and session cookie, DRF tokens, and
connection tokens signed with the servers' own ``SECRET_KEY``: valid ones, and one of
``owner`` that expired an hour ago.
"""

from __future__ import annotations

import json
import time
from typing import Any
from unittest import mock


def main() -> dict[str, Any]:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from rest_framework.authtoken.models import Token

    from rtdelivery import tokens

    call_command("migrate", interactive=False, verbosity=0)
    User = get_user_model()
    users = {
        "owner": User.objects.create_user("owner", password="x"),
        "other": User.objects.create_user("other", password="x"),
        "staff": User.objects.create_user("staff", password="x", is_staff=True),
    }
    out: dict[str, Any] = {"pk": {}, "session": {}, "drf": {}, "token": {}}
    for name, user in users.items():
        client = Client()
        client.force_login(user)
        out["pk"][name] = str(user.pk)
        out["session"][name] = client.cookies[settings.SESSION_COOKIE_NAME].value
        out["drf"][name] = Token.objects.create(user=user).key
        out["token"][name] = tokens.connection_token(user, ttl=3600)
    with mock.patch.object(tokens, "_now", return_value=time.time() - 3600):
        out["expired"] = tokens.connection_token(users["owner"], ttl=60)
    out["session_cookie_name"] = settings.SESSION_COOKIE_NAME
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
