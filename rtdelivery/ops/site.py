"""Put the live operations page on an admin site: ``register(admin.site)`` in an
``admin.py`` (it must run before the URLconf loads, as admin registrations do).

The page and its actions join the site's own URLs (``<admin>/rtdelivery/ops/``, names
``<site>:rtdelivery_ops``, ``…_state`` and ``…_action``), behind the site's
``admin_view`` (staff only; anyone else gets the admin's login page), and the admin's
front page lists it under "Real-time delivery".
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib import admin
from django.urls import URLPattern, path, reverse

from . import views

__all__ = ["register", "urls"]


def urls(site: admin.AdminSite) -> list[URLPattern]:
    """The page's URL patterns for ``site`` (each wrapped by its ``admin_view``)."""
    wrap = site.admin_view
    return [
        path(
            "rtdelivery/ops/",
            wrap(functools.partial(views.page, site=site)),
            name="rtdelivery_ops",
        ),
        path(
            "rtdelivery/ops/state.json",
            wrap(functools.partial(views.state_json, site=site)),
            name="rtdelivery_ops_state",
        ),
        path(
            "rtdelivery/ops/<str:name>/",
            wrap(functools.partial(views.action, site=site)),
            name="rtdelivery_ops_action",
        ),
    ]


def register(site: admin.AdminSite | None = None) -> None:
    """Add the live operations page to ``site`` (default: ``admin.site``); idempotent."""
    site = site if site is not None else admin.site
    if getattr(site, "_rtdelivery_ops", False):
        return
    site._rtdelivery_ops = True  # type: ignore[attr-defined]
    site_urls = site.get_urls
    app_list = site.get_app_list

    def get_urls() -> list[Any]:
        return [*urls(site), *site_urls()]

    def get_app_list(request: Any, app_label: str | None = None) -> list[Any]:
        apps = app_list(request, app_label)
        if app_label in (None, "rtdelivery") and getattr(request.user, "is_staff", False):
            url = reverse(f"{site.name}:rtdelivery_ops", current_app=site.name)
            apps.append(
                {
                    "name": "Real-time delivery",
                    "app_label": "rtdelivery",
                    "app_url": url,
                    "has_module_perms": True,
                    "models": [
                        {
                            "name": "Live operations",
                            "object_name": "LiveOperations",
                            "admin_url": url,
                            "add_url": None,
                            "view_only": True,
                            "perms": {"view": True},
                        }
                    ],
                }
            )
        return apps

    site.get_urls = get_urls  # type: ignore[method-assign]
    site.get_app_list = get_app_list  # type: ignore[method-assign]
