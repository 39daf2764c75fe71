"""The demo pages: chat, live feed, and sign-up / guest login (the dashboard: dashboard_views)."""

from __future__ import annotations

import json
import re
import secrets

from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from rtdelivery import publish_on_commit

from . import live
from .models import KEY_PATTERN, Message, Room

MENTION = re.compile(r"@([\w.@+-]{1,150})")
KEY = re.compile(KEY_PATTERN)


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/index.html", {"rooms": Room.objects.all()[:10]})


def signup(request: HttpRequest) -> HttpResponse:
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        target = request.GET.get("next", "")
        safe = url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
        return redirect(target if target and safe else "chat")
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
    """Store a chat message and publish it once the transaction commits.

    ``{"text", "key"}``: a send retried with the same ``key`` (the page does after an unknown
    outcome: a lost connection, a timeout) stores and publishes nothing new; it answers 200
    with the first message and ``"duplicate": true`` instead of 201.
    """
    room = get_object_or_404(Room, slug=slug)
    try:
        payload = json.loads(request.body)
        text = str(payload["text"]).strip()
        key = payload.get("key") or ""
    except (ValueError, KeyError, TypeError, AttributeError):
        return _bad_request('Expected {"text": "...", "key": "..."}.')
    if not 0 < len(text) <= 1000:
        return _bad_request(f"Expected 1 to 1000 characters, got {len(text)}.")
    if key and not (isinstance(key, str) and KEY.fullmatch(key)):
        return _bad_request("Expected key as 1 to 128 of A-Z a-z 0-9 _ . : -")
    if key:
        first = _first_with_key(request, key)
        if first is not None:
            return _duplicate(first, room)
    try:
        with transaction.atomic():
            message = Message.objects.create(room=room, author=request.user, text=text, key=key)
            _publish(message)
            _notify_mentions(request, room, text)
    except IntegrityError:
        # The same key raced in from another request (a retry while the first was running).
        first = _first_with_key(request, key)
        if first is None:
            raise
        return _duplicate(first, room)
    return JsonResponse({"id": message.pk, "message": message.as_event()}, status=201)


def _bad_request(message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": "bad_request", "message": message}}, status=400)


def _first_with_key(request: HttpRequest, key: str) -> Message | None:
    return (
        Message.objects.select_related("room", "author")
        .filter(author=request.user, key=key)
        .first()
    )


def _publish(message: Message) -> None:
    # Keyed by the message: publishing it again (below) sends nothing new if it went out.
    publish_on_commit(
        message.room.topic,
        message.as_event(),
        type="chat.message",
        key=f"demo.message.{message.pk}",
    )


def _duplicate(first: Message, room: Room) -> JsonResponse:
    if first.room_id != room.pk:
        return JsonResponse(
            {
                "error": {
                    "code": "key_reused",
                    "message": f"This key was used for a message in room {first.room.slug!r}.",
                }
            },
            status=409,
        )
    # The first request's publish may have been lost (Redis down at its commit): publish again,
    # under the same key, so it is delivered once either way.
    _publish(first)
    return JsonResponse(
        {"id": first.pk, "message": first.as_event(), "duplicate": True}, status=200
    )


def _notify_mentions(request: HttpRequest, room: Room, text: str) -> None:
    mentioned = set(MENTION.findall(text)) - {request.user.get_username()}
    for user in get_user_model().objects.filter(username__in=mentioned):
        live.notify_user(
            user.pk,
            {
                "text": f"{request.user.get_username()} mentioned you in {room.name}",
                "url": f"/chat/{room.slug}/",
            },
        )


def feed(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/feed.html")
