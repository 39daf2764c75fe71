"""The live operations page and its staff actions, served inside the Django admin.

Every view is wrapped by the admin site's ``admin_view`` (:mod:`rtdelivery.ops.urls`):
staff only, anyone else gets the admin's login page. The actions also need the
``rtdelivery.manage_realtime`` permission (superusers have it; other staff get 403 and see
the page without them). Actions follow the admin's
confirmation pattern: a GET shows what will happen (a form with Django's CSRF token), the
POST with ``confirm`` does it and redirects to the page with a message. Redis work runs on
the process's background loop (the server's own when it has a hub), like sync
:func:`rtdelivery.publish`, so the views work under ASGI and WSGI alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache

from ..core.errors import RTDeliveryError, Unavailable
from ..core.topics import validate_topic
from ..models import MANAGE_REALTIME
from . import OPS_TOPIC, reporter, state

T = TypeVar("T")

#: How long an action or a state read may take (seconds).
TIMEOUT = 15.0


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the background loop; :class:`Unavailable` if it takes longer than
    :data:`TIMEOUT` (Redis slow or unreachable): the admin shows it, not a 500."""
    from ..transports.serving import background_loop

    future = asyncio.run_coroutine_threadsafe(coro, background_loop())
    try:
        return future.result(TIMEOUT)
    except TimeoutError:
        future.cancel()
        raise Unavailable(
            f"No answer within {TIMEOUT:g} s (Redis slow or unreachable?). It may still have "
            "happened: check before trying again."
        ) from None


def can_act(request: HttpRequest) -> bool:
    """Whether the user may take the page's actions: ``rtdelivery.manage_realtime``."""
    user = getattr(request, "user", None)
    return bool(user is not None and user.has_perm(MANAGE_REALTIME))


def _context(request: HttpRequest, site: admin.AdminSite, **extra: Any) -> dict[str, Any]:
    return {**site.each_context(request), "ops_topic": OPS_TOPIC, **extra}


@never_cache
def page(request: HttpRequest, site: admin.AdminSite = admin.site) -> HttpResponse:
    """The live page: the numbers come from :func:`state_json`, refreshed on every
    ``rtdelivery.ops`` event."""
    return TemplateResponse(
        request,
        "rtdelivery/ops/page.html",
        _context(
            request,
            site,
            title="Real-time operations",
            can_act=can_act(request),
            announce_form=AnnounceForm(),
            trim_form=TrimForm(),
            disconnect_form=DisconnectForm(),
        ),
    )


async def _state() -> dict[str, Any]:
    await reporter.mark_viewed()  # the processes ping the ops topic while a page is open
    return await state.collect()


@never_cache
def state_json(request: HttpRequest, site: admin.AdminSite = admin.site) -> JsonResponse:
    """Every process aggregated, as JSON (see :func:`rtdelivery.ops.state.collect`)."""
    try:
        data = _run(_state())
    except RTDeliveryError as exc:
        return JsonResponse({"error": exc.as_dict()}, status=exc.status)
    return JsonResponse(data)


# -- actions -------------------------------------------------------------------------------


class TopicField(forms.CharField):
    def clean(self, value: Any) -> str:
        text = super().clean(value)
        try:
            return validate_topic(text)
        except RTDeliveryError as exc:
            raise ValidationError(exc.message) from exc


class DisconnectForm(forms.Form):
    user = forms.CharField(
        max_length=150, help_text="The user's primary key: every connection of theirs ends."
    )
    session = forms.CharField(
        max_length=64,
        required=False,
        help_text="Only the connections of this session key (optional).",
    )
    connection = forms.RegexField(
        regex=r"^[0-9]+\.[0-9]+$",
        max_length=40,
        required=False,
        help_text="Only this connection (its id, as the connections table shows it).",
    )
    process = forms.CharField(
        max_length=300,
        required=False,
        widget=forms.HiddenInput,
        help_text="The process serving that connection (host:pid).",
    )

    verb = "End the connections of"

    def summary(self) -> str:
        data = self.cleaned_data
        if data["connection"]:
            where = f" on {data['process']}" if data["process"] else ""
            return f"End connection {data['connection']}{where} of user {data['user']}"
        return f"{self.verb} {data['user']}"


class AnnounceForm(forms.Form):
    topic = TopicField(max_length=80, initial="announcements")
    text = forms.CharField(max_length=1000, widget=forms.Textarea(attrs={"rows": 2}))

    verb = "Publish an announcement on"


class TrimForm(forms.Form):
    topic = TopicField(max_length=80)
    keep = forms.IntegerField(
        min_value=0, initial=0, help_text="Newest events to keep; older ones are dropped."
    )

    verb = "Trim the history of"


def _disconnect(data: dict[str, Any]) -> str:
    from .. import access

    connection = data["connection"] or None
    _run(
        access.adisconnect(
            data["user"],
            session=data["session"] or None,
            connection=connection,
            process=(data["process"] or None) if connection else None,
        )
    )
    if connection:
        return f"Asked the processes to end connection {connection} of user {data['user']}."
    which = f"session {data['session']} of " if data["session"] else ""
    return f"Asked every process to end the connections of {which}user {data['user']}."


def _announce(data: dict[str, Any]) -> str:
    from ..publishing import apublish

    event = _run(apublish(data["topic"], {"text": data["text"]}, type="announcement"))
    return f"Published announcement #{event.seq} on {event.topic}."


def _trim(data: dict[str, Any]) -> str:
    from ..history import get_history

    dropped = _run(get_history().trim(data["topic"], data["keep"]))
    return f"Dropped {dropped} event(s) from the history of {data['topic']}."


ACTIONS: dict[str, tuple[type[forms.Form], Any, str]] = {
    "disconnect": (DisconnectForm, _disconnect, "user"),
    "announce": (AnnounceForm, _announce, "topic"),
    "trim": (TrimForm, _trim, "topic"),
}


@never_cache
def action(request: HttpRequest, name: str, site: admin.AdminSite = admin.site) -> HttpResponse:
    """GET: the confirmation page for action ``name``; POST with ``confirm``: do it."""
    if name not in ACTIONS:
        raise Http404(f"No action {name!r}; expected one of {', '.join(ACTIONS)}.")
    if not can_act(request):
        raise PermissionDenied(
            f"Expected the {MANAGE_REALTIME} permission to act from the live page."
        )
    form_class, perform, subject = ACTIONS[name]
    form = form_class(request.POST if request.method == "POST" else request.GET)
    back = reverse(f"{site.name}:rtdelivery_ops", current_app=site.name)
    if not form.is_valid():
        return TemplateResponse(
            request,
            "rtdelivery/ops/confirm.html",
            _context(request, site, title="Check the form", form=form, action=name, back=back),
            status=400 if request.method == "POST" else 200,
        )
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        try:
            message = perform(form.cleaned_data)
        except RTDeliveryError as exc:
            messages.error(request, f"Could not {name}: {exc.message}")
        else:
            messages.success(request, message)
        return redirect(back)
    return TemplateResponse(
        request,
        "rtdelivery/ops/confirm.html",
        _context(
            request,
            site,
            title="Are you sure?",
            form=form,
            action=name,
            back=back,
            summary=(
                form.summary()
                if hasattr(form, "summary")
                else f"{form_class.verb} {form.cleaned_data[subject]}"  # type: ignore[attr-defined]
            ),
            confirming=True,
        ),
    )
