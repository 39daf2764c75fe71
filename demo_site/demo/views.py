"""The demo pages: chat, live feed, dashboard, and sign-up / guest login."""

from __future__ import annotations

import json
import re
import secrets

from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from rtdelivery import publish_on_commit

from . import live
from .models import Message, Room

MENTION = re.compile(r"@([\w.@+-]{1,150})")


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/index.html", {"rooms": Room.objects.all()[:10]})


def signup(request: HttpRequest) -> HttpResponse:
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect(request.GET.get("next") or "chat")
    return render(request, "demo/signup.html", {"form": form})


@require_POST
def guest_login(request: HttpRequest) -> HttpResponse:
    """One click: a fresh guest account, logged in."""
    user_model = get_user_model()
    user = user_model.objects.create_user(username=f"guest-{secrets.token_hex(3)}")
    user.set_unusable_password()
    user.save()
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    target = request.POST.get("next") or "/chat/"
    return redirect(target if target.startswith("/") and not target.startswith("//") else "/")


def chat(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"/login/?next={request.path}")
        name = request.POST.get("name", "").strip()[:80]
        slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:40]
        if slug:
            room, _ = Room.objects.get_or_create(slug=slug, defaults={"name": name})
            return redirect("room", slug=room.slug)
    return render(request, "demo/chat.html", {"rooms": Room.objects.all()})


@login_required(login_url="/login/")
def room(request: HttpRequest, slug: str) -> HttpResponse:
    room = get_object_or_404(Room, slug=slug)
    return render(request, "demo/room.html", {"room": room})


@login_required(login_url="/login/")
@require_POST
def send_message(request: HttpRequest, slug: str) -> JsonResponse:
    """Store a chat message and publish it once the transaction commits."""
    room = get_object_or_404(Room, slug=slug)
    try:
        payload = json.loads(request.body)
        text = str(payload["text"]).strip()
    except (ValueError, KeyError, TypeError):
        return JsonResponse(
            {"error": {"code": "bad_request", "message": 'Expected {"text": "..."}.'}},
            status=400,
        )
    if not 0 < len(text) <= 1000:
        return JsonResponse(
            {"error": {"code": "bad_request", "message": "Expected 1 to 1000 characters."}},
            status=400,
        )
    with transaction.atomic():
        message = Message.objects.create(room=room, author=request.user, text=text)
        publish_on_commit(room.topic, message.as_event(), type="chat.message")
        mentioned = set(MENTION.findall(text)) - {request.user.get_username()}
        for user in get_user_model().objects.filter(username__in=mentioned):
            live.notify_user(
                user.pk,
                {
                    "text": f"{request.user.get_username()} mentioned you in {room.name}",
                    "url": f"/chat/{room.slug}/",
                },
            )
    return JsonResponse({"id": message.pk}, status=201)


def feed(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/feed.html")


def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/dashboard.html")
