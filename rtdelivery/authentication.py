"""Who a client is: ``RTDELIVERY["AUTHENTICATORS"]``, tried in order, on every transport.

An authenticator is a callable ``(request) -> user | None`` (sync or async) named by its
dotted path; ``request`` is a :class:`rtdelivery.transports.http.Request` (``header()``,
``param()``, ``bearer()``, ``session()``, ``django``, ``scope``), the same object for an
HTTP request and a WebSocket handshake. The first user returned wins; ``None`` passes to
the next; raising :class:`~rtdelivery.core.errors.Unauthorized` (or a subclass) refuses the
request with 401 and its code. Nobody: the client is anonymous.

The defaults: :func:`token_authenticator` (connection tokens, :mod:`rtdelivery.tokens`),
then :func:`session_authenticator` (Django's session cookie). A dotted path may also name
an authentication class of Django REST framework (``TokenAuthentication``, or one of your
own), wrapped by :func:`drf`.

Identity is resolved only when a policy rule needs it ("anyone" and "nobody" don't), once
per request, and once per WebSocket at the handshake (:class:`IdentityMiddleware`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.apps import apps

from .core.errors import AuthenticationFailed, RTDeliveryError
from .tokens import PARAM, authenticate_token, is_connection_token

if TYPE_CHECKING:
    from .transports.http import Request

Authenticator = Callable[["Request"], Any]

#: Attribute of an authenticator: True when its credential is one the client presents
#: explicitly (a header or a parameter the page's code adds), never one a browser attaches
#: to a cross-site request by itself (a cookie, HTTP Basic): a publish it authenticates
#: needs no CSRF check. Absent: False, Django's CSRF check applies.
EXPLICIT = "explicit_credentials"

DEFAULT_AUTHENTICATORS = [
    "rtdelivery.authentication.token_authenticator",
    "rtdelivery.authentication.session_authenticator",
]


# -- built-in authenticators -------------------------------------------------------------


async def token_authenticator(request: Request) -> Any:
    """A connection token from ``Authorization: Bearer rt1:…`` or ``?access_token=``.

    A ``Bearer`` value that is not a connection token (a server's publish token, a JWT)
    is left to the next authenticator; a value of ``access_token`` is always judged here
    (the parameter is rtdelivery's). Tokens are refused with 401 ``token_expired``,
    ``token_invalid`` or ``token_malformed``.
    """
    bearer = request.bearer()
    token = bearer if bearer is not None and is_connection_token(bearer) else None
    if token is None:
        token = request.param(PARAM)
    if token is None:
        return None
    return await authenticate_token(token)


setattr(token_authenticator, EXPLICIT, True)


async def session_authenticator(request: Request) -> Any:
    """The user of Django's session cookie: the project's ``AuthenticationMiddleware``
    result in a view (``request.auser``), else the session itself, checked as Django and
    Channels check it (the session auth hash). None when not logged in."""
    if not apps.is_installed("django.contrib.auth"):
        return None
    django_request = request.django
    auser = getattr(django_request, "auser", None)
    if auser is not None:
        user = await auser()
    else:
        session = request.session()
        if session is None:
            return None
        from channels.auth import get_user

        user = await get_user({"session": session})
    return user if getattr(user, "is_authenticated", False) else None


# -- Django REST framework ---------------------------------------------------------------


def _is_drf_class(obj: Any) -> bool:
    return inspect.isclass(obj) and callable(getattr(obj, "authenticate", None))


def drf(authentication_class: type | str, *, explicit: bool | None = None) -> Authenticator:
    """An authenticator from a Django REST framework authentication class.

    ``explicit``: whether its credential is explicit (see :data:`EXPLICIT`); by default
    True unless it is (a subclass of) DRF's ``SessionAuthentication`` or
    ``BasicAuthentication``, whose credentials browsers send by themselves. Failures
    (``AuthenticationFailed``, e.g. "Invalid token.") are 401 ``authentication_failed``.
    ``RTDELIVERY["AUTHENTICATORS"]`` may name the class itself; this wraps it.
    """
    # An optional dependency: imported only here.
    from rest_framework import authentication, exceptions
    from rest_framework.request import Request as DRFRequest

    if isinstance(authentication_class, str):
        from django.utils.module_loading import import_string

        authentication_class = import_string(authentication_class)
    if not _is_drf_class(authentication_class):
        raise TypeError(
            "Expected a Django REST framework authentication class (with authenticate()), "
            f"got {authentication_class!r}."
        )
    assert isinstance(authentication_class, type)
    if explicit is None:
        ambient = (authentication.SessionAuthentication, authentication.BasicAuthentication)
        explicit = not issubclass(authentication_class, ambient)
    instance = authentication_class()

    def authenticate(request: Request) -> Any:
        # DRF's classes read request.META and may query the database: this runs in a
        # thread (database_sync_to_async), like any sync authenticator.
        drf_request = DRFRequest(request.django or request.as_django())
        try:
            result = instance.authenticate(drf_request)
        except exceptions.APIException as exc:
            raise AuthenticationFailed(str(exc.detail)) from exc
        return None if result is None else result[0]

    authenticate.__name__ = authenticate.__qualname__ = f"drf({authentication_class.__name__})"
    setattr(authenticate, EXPLICIT, explicit)
    return authenticate


# -- running them ------------------------------------------------------------------------


def load_authenticator(path: str) -> Authenticator:
    """The authenticator a dotted path names (a DRF class is wrapped by :func:`drf`)."""
    from django.utils.module_loading import import_string

    obj = import_string(path)
    if _is_drf_class(obj):
        return drf(obj)
    if not callable(obj):
        raise TypeError(f"Expected a callable (request) -> user | None, got {obj!r}.")
    return obj  # type: ignore[no-any-return]


def validate_authenticators(value: Any) -> str | None:
    """A problem with ``RTDELIVERY["AUTHENTICATORS"]``, or None (imports each path)."""
    expected = (
        "RTDELIVERY['AUTHENTICATORS'] must be a list of dotted paths to callables "
        "(request) -> user | None or to Django REST framework authentication classes"
    )
    if isinstance(value, str) or not isinstance(value, list | tuple):
        return f"{expected}, got {type(value).__name__}."
    for index, path in enumerate(value):
        if not isinstance(path, str) or "." not in path:
            return f"{expected}, got {path!r} at index {index}."
        try:
            load_authenticator(path)
        except ImportError as exc:
            return f"{expected}; cannot import {path!r}: {exc}."
        except TypeError as exc:
            return f"{expected}; {path!r}: {exc}"
    return None


@functools.lru_cache(maxsize=8)
def _authenticators(paths: tuple[str, ...]) -> tuple[tuple[Authenticator, bool], ...]:
    from channels.db import database_sync_to_async

    loaded = []
    for path in paths:
        function = load_authenticator(path)
        if not inspect.iscoroutinefunction(function):
            # Sync authenticators may use the ORM: run them off the event loop.
            run: Authenticator = database_sync_to_async(function)
        else:
            run = function
        loaded.append((run, bool(getattr(function, EXPLICIT, False))))
    return tuple(loaded)


def authenticators() -> tuple[tuple[Authenticator, bool], ...]:
    """The configured authenticators, ready to await, each with its :data:`EXPLICIT`."""
    from .conf import get_settings

    return _authenticators(tuple(get_settings().authenticators))


class Identity:
    """Who a request is: ``user`` and whether an explicit credential established it."""

    __slots__ = ("explicit", "user")

    def __init__(self, user: Any, explicit: bool) -> None:
        self.user = user
        self.explicit = explicit


def anonymous() -> Any:
    """Django's ``AnonymousUser``, or None without ``django.contrib.auth``."""
    if not apps.is_installed("django.contrib.auth"):
        return None
    from django.contrib.auth.models import AnonymousUser

    return AnonymousUser()


async def authenticate(request: Request) -> Identity:
    """Run the authenticators in order; the first user wins (else anonymous)."""
    for run, explicit in authenticators():
        user = await run(request)
        if user is not None:
            return Identity(user, explicit)
    return Identity(anonymous(), False)


# -- refusals and WebSockets ---------------------------------------------------------


class RefusedIdentity:
    """The user of a client whose credentials were refused (``Request.user()``, and
    ``scope["user"]`` of a WebSocket refused at the handshake, or whose handshake could
    not be read for them, e.g. an oversized query string).

    It is anonymous to everything that only looks (presence), and every policy rule that
    needs the user raises the refusal again, so the client gets a 401 or an error frame
    with its code (``token_expired``, …) wherever its identity matters. A WebSocket still
    opens, so the client can be told why in a frame.
    """

    is_authenticated = False
    is_anonymous = True
    is_active = False
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, error: RTDeliveryError) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"<RefusedIdentity {self.error.code}>"


#: Scope key set by :class:`IdentityMiddleware`: the user is settled, don't do it twice.
IDENTIFIED = "rtdelivery.identified"


class IdentityMiddleware:
    """ASGI middleware for rtdelivery's WebSocket route: ``scope["user"]`` from the
    authenticators, once, at the handshake (a token from ``access_token=`` for browsers,
    which cannot set headers on a WebSocket, or ``Authorization`` for other clients).

    ``scope["session"]`` is the session of the cookie (not loaded until used), as
    Channels' ``SessionMiddleware`` would give it.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if scope.get("type") != "websocket":
            return await self.inner(scope, receive, send)
        # In a helper: its request and identity are not kept for the life of the socket.
        return await self.inner(await identify(scope, receive), receive, send)


async def identify(scope: Any, receive: Any) -> Any:
    """A copy of a WebSocket handshake's ``scope`` with ``scope["user"]`` settled by the
    authenticators (and ``scope["session"]``, see :class:`IdentityMiddleware`)."""
    from .transports.http import Request
    from .transports.origins import cookies_allowed

    scope = dict(scope)
    scope[IDENTIFIED] = True
    try:
        request = Request(scope, receive)
        identity = await authenticate(request)
    except RTDeliveryError as exc:  # refused credentials, or an unreadable query string
        scope["user"] = RefusedIdentity(exc)
    else:
        user = identity.user
        if not identity.explicit and not cookies_allowed(request.header("origin")):
            # Another site's page, let in by the Origin list without credentials: it
            # is anonymous unless it presents a token itself.
            user = anonymous()
        scope["user"] = user
        session = request.session() if user is identity.user else None
        if session is not None:
            scope.setdefault("session", session)
    return scope


def check_refused(user: Any) -> Any:
    """``user``, unless it is a :class:`RefusedIdentity`: then its error is raised."""
    if isinstance(user, RefusedIdentity):
        raise user.error
    return user


__all__ = [
    "DEFAULT_AUTHENTICATORS",
    "IdentityMiddleware",
    "authenticate",
    "drf",
    "session_authenticator",
    "token_authenticator",
]
