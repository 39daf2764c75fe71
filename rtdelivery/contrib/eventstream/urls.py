"""``path("events/", include("rtdelivery.contrib.eventstream.urls"), {"channels": [...]})``:
the same shape as ``include(django_eventstream.urls)``."""

from django.urls import path

from .views import events

urlpatterns = [path("", events)]
