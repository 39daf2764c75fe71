"""The bench server's Django URLs: a bare async view, the baseline for an unchanged poll."""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path


async def bare(request: HttpRequest) -> JsonResponse:
    return JsonResponse({})


urlpatterns = [path("bare", bare), path("rt/", include("rtdelivery.urls"))]
