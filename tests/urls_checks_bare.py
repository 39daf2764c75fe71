"""A URLconf for the system check tests without rtdelivery's views (a publish-only tier)."""

from typing import Any

urlpatterns: list[Any] = []
