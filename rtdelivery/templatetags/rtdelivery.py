"""``{% load rtdelivery %}``: the browser client's configuration, from the URLconf.

    {% load rtdelivery static %}
    {% rtdelivery_config %}
    <script src="{% static 'rtdelivery/rtdelivery.js' %}"></script>
    <script>const client = new RTDelivery.Client();</script>

``rtdelivery_config`` renders ``<script id="rtdelivery-config" type="application/json">``
with where the project included ``rtdelivery.urls`` (``{"url": "/rt/", "urls": {...}}``);
``RTDelivery.Client`` reads it when it is given no ``url``. No path is hard-coded.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.html import json_script
from django.utils.safestring import SafeString

register = template.Library()

NAMES = ("poll", "longpoll", "sse", "history", "presence", "publish", "ws")
ELEMENT_ID = "rtdelivery-config"


def client_config(namespace: str = "rtdelivery") -> dict[str, Any]:
    """``{"url": <prefix>, "urls": {name: path}}`` for rtdelivery's named URLs."""
    urls = {name: reverse(f"{namespace}:{name}") for name in NAMES}
    base = urls["poll"].removesuffix("poll")
    return {"url": base, "urls": urls}


@register.simple_tag
def rtdelivery_config(namespace: str = "rtdelivery") -> SafeString:
    """The client's configuration as a JSON ``<script>`` element."""
    return json_script(client_config(namespace), ELEMENT_ID)
