"""Template tags of the demo pages."""

from __future__ import annotations

from django import template

from ..models import Announcement

register = template.Library()


@register.simple_tag
def active_announcements() -> list[dict[str, object]]:
    """The announcements a page shows on arrival (not expired, not deleted), newest first;
    later ones arrive live on the ``announcements`` topic."""
    return [a.as_event() for a in Announcement.objects.active()[:10]]
