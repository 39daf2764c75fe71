"""rtdelivery keeps no data in the database. The one model holds its permission (Django
permissions belong to a model): it has no table (``managed = False``) and is never queried.

- ``rtdelivery.manage_realtime``: act from the live operations page (disconnect a user or
  a connection, publish an announcement on any topic, trim a topic's history). Staff
  without it see the page; superusers have it.
"""

from __future__ import annotations

from django.db import models

#: The permission the live page's actions need, as ``user.has_perm`` takes it.
MANAGE_REALTIME = "rtdelivery.manage_realtime"


class RealtimeOperations(models.Model):
    """The holder of rtdelivery's permissions (no table, no rows)."""

    id = models.BigAutoField(primary_key=True)

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            (
                "manage_realtime",
                "Can act on the live operations page (disconnect, announce, trim)",
            )
        ]
        verbose_name = "real-time operations"
        verbose_name_plural = "real-time operations"

    def __str__(self) -> str:
        return "real-time operations"
