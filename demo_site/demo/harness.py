"""A bare page that loads rtdelivery.js, for the browser tests of the client."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie


@ensure_csrf_cookie
def harness(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/harness.html")
