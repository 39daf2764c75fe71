"""The bench URLs plus django-eventstream's view and the bridge (``?channel=``)."""

import django_eventstream
from django.urls import include, path

from .urls import urlpatterns as bench_urlpatterns

urlpatterns = [
    path("es/events/", include(django_eventstream.urls)),
    path("es/bridge/", include("rtdelivery.contrib.eventstream.urls")),
    *bench_urlpatterns,
]
