"""URLconfs for the system check tests: rtdelivery mounted under a prefix of the project's."""

from django.urls import include, path

urlpatterns = [path("realtime/", include("rtdelivery.urls"))]
