"""Where history and presence connect: ``RTDELIVERY["REDIS_URL"]`` / ``RTDELIVERY["REDIS"]``.

:class:`RedisTarget` (one server, Sentinel or Cluster), its checks (E004, reported by
:func:`rtdelivery.conf_validation.validate`) and :func:`redis_target`, which
:func:`rtdelivery.conf.build` calls on valid merged settings. Pure functions of the
mapping they are given: no settings are read and no connection is opened here
(:mod:`rtdelivery.connections` connects).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .conf_problems import E_REDIS, Problem, did_you_mean, is_int

REDIS_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class RedisTarget:
    """Where the history and presence stores connect: one of three kinds.

    ``"url"``: one server (``url``); ``"sentinel"``: the master of ``service`` as the
    ``sentinels`` report it; ``"cluster"``: a Redis Cluster discovered from ``nodes``.
    """

    kind: str
    url: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    sentinel_options: Mapping[str, Any] = field(default_factory=dict)
    nodes: tuple[str, ...] = ()

    def describe(self) -> str:
        """A human description for messages and logs (passwords redacted)."""
        if self.kind == "sentinel":
            where = ", ".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"Sentinel service {self.service!r} via {where}"
        if self.kind == "cluster":
            return "Redis Cluster via " + ", ".join(redact_url(url) for url in self.nodes)
        return redact_url(self.url or "")


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


#: The keys of ``RTDELIVERY["REDIS"]``: exactly one of the first three says the kind.
REDIS_KINDS = ("url", "sentinels", "cluster")
REDIS_KEYS = (*REDIS_KINDS, "service", "sentinel_options")
REDIS_EXAMPLES = (
    "{'url': 'redis://10.0.0.1:6379/0'}, "
    "{'sentinels': [('10.0.0.1', 26379), ('10.0.0.2', 26379)], 'service': 'mymaster'} or "
    "{'cluster': ['redis://10.0.0.1:7000', 'redis://10.0.0.2:7000']}"
)


def _url_scheme_problem(where: str, url: str, schemes: tuple[str, ...]) -> Problem | None:
    if urlsplit(url).scheme in schemes:
        return None
    examples = (
        "E.g. 'redis://127.0.0.1:6379/0', 'rediss://host:6380/0' (TLS) or 'unix:///run/redis.sock'."
        if "unix" in schemes
        else "E.g. 'redis://10.0.0.1:7000' or 'rediss://10.0.0.1:7000' (TLS)."
    )
    return Problem(
        E_REDIS,
        f"{where} must be a URL with the scheme "
        f"{', '.join(s + '://' for s in schemes)}, got {redact_url(url)!r}.",
        examples,
    )


def _sentinel_problems(config: Mapping[str, Any]) -> list[str]:
    where = "RTDELIVERY['REDIS']"
    problems = []
    sentinels = config["sentinels"]
    expected = f"{where}['sentinels'] must be a non-empty list of (host, port) pairs"
    if not isinstance(sentinels, list | tuple) or not sentinels:
        problems.append(f"{expected}, got {sentinels!r}.")
    else:
        for index, pair in enumerate(sentinels):
            ok = (
                isinstance(pair, list | tuple)
                and len(pair) == 2
                and isinstance(pair[0], str)
                and bool(pair[0])
                and is_int(pair[1])
                and 0 < pair[1] < 65536
            )
            if not ok:
                problems.append(f"{expected}, got {pair!r} at index {index}.")
                break
    service = config.get("service")
    if not isinstance(service, str) or not service:
        problems.append(
            f"{where}['service'] must be the name Sentinel monitors the master under "
            f"(e.g. 'mymaster'), got {service!r}."
        )
    options = config.get("sentinel_options", {})
    if not isinstance(options, Mapping):
        problems.append(
            f"{where}['sentinel_options'] must be a dict of connection options for the "
            f"Sentinels, got {type(options).__name__}."
        )
    return problems


def _cluster_problems(config: Mapping[str, Any], options: Any) -> list[Problem]:
    where = "RTDELIVERY['REDIS']['cluster']"
    nodes = config["cluster"]
    expected = f"{where} must be a non-empty list of node URLs like 'redis://10.0.0.1:7000'"
    if not isinstance(nodes, list | tuple) or not nodes:
        return [Problem(E_REDIS, f"{expected}, got {nodes!r}.")]
    for index, url in enumerate(nodes):
        if not isinstance(url, str):
            return [Problem(E_REDIS, f"{expected}, got {url!r} at index {index}.")]
        problem = _url_scheme_problem(f"{where}[{index}]", url, ("redis", "rediss"))
        if problem:
            return [problem]
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            port = None
            parts = None
        if parts is None or not parts.hostname or port is None:
            return [Problem(E_REDIS, f"{expected}, got {redact_url(url)!r} (no host and port).")]
        if parts.path not in ("", "/", "/0"):
            return [
                Problem(
                    E_REDIS,
                    f"{where}[{index}] must not select a database (Redis Cluster has only "
                    f"db 0), got {redact_url(url)!r}.",
                )
            ]
    if isinstance(options, Mapping) and options.get("db") not in (None, 0):
        return [
            Problem(
                E_REDIS,
                "RTDELIVERY['REDIS_OPTIONS']['db'] must be 0 or absent with Redis Cluster "
                f"(it has only db 0), got {options['db']!r}.",
            )
        ]
    return []


def _redis_config_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """What is wrong with ``RTDELIVERY["REDIS"]`` (whatever the history backend)."""
    config = raw["REDIS"]
    where = "RTDELIVERY['REDIS']"
    if config is None:
        return []
    if not isinstance(config, Mapping):
        return [
            Problem(
                E_REDIS,
                f"{where} must be a dict or None, got {type(config).__name__}.",
                f"E.g. {REDIS_EXAMPLES}.",
            )
        ]
    unknown = sorted(set(config) - set(REDIS_KEYS), key=str)
    if unknown:
        names = ", ".join(f"{name!r}{did_you_mean(name, REDIS_KEYS)}" for name in unknown)
        return [
            Problem(
                E_REDIS,
                f"{where} has unknown key(s) {names}; expected some of {list(REDIS_KEYS)}.",
                f"E.g. {REDIS_EXAMPLES}.",
            )
        ]
    kinds = [key for key in REDIS_KINDS if key in config]
    if len(kinds) != 1:
        got = "none" if not kinds else " and ".join(repr(k) for k in kinds)
        return [
            Problem(
                E_REDIS,
                f"{where} must have exactly one of 'url', 'sentinels' or 'cluster', got {got}.",
                f"E.g. {REDIS_EXAMPLES}.",
            )
        ]
    kind = kinds[0]
    stray = [k for k in ("service", "sentinel_options") if k in config and kind != "sentinels"]
    if stray:
        return [
            Problem(
                E_REDIS,
                f"{where}[{stray[0]!r}] only applies with 'sentinels', got it with {kind!r}.",
            )
        ]
    if kind == "url":
        url = config["url"]
        if not isinstance(url, str) or not url:
            return [Problem(E_REDIS, f"{where}['url'] must be a redis:// URL string, got {url!r}.")]
        problem = _url_scheme_problem(f"{where}['url']", url, REDIS_SCHEMES)
        return [problem] if problem else []
    if kind == "sentinels":
        return [Problem(E_REDIS, message) for message in _sentinel_problems(config)]
    return _cluster_problems(config, raw["REDIS_OPTIONS"])


def redis_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """Redis history needs REDIS_URL (with a scheme redis-py understands) or REDIS."""
    problems = _redis_config_problems(raw)
    url, config = raw["REDIS_URL"], raw["REDIS"]
    if url and config is not None:
        problems.append(
            Problem(
                E_REDIS,
                "RTDELIVERY['REDIS_URL'] and RTDELIVERY['REDIS'] are both set; expected one.",
                "Keep REDIS_URL for one server, or move it into REDIS as {'url': ...}.",
            )
        )
    if raw["HISTORY_BACKEND"] != "redis" or not (url is None or isinstance(url, str)):
        return problems
    if config is not None:
        return problems
    if not url:
        return [
            *problems,
            Problem(
                E_REDIS,
                "RTDELIVERY['HISTORY_BACKEND'] is 'redis' but RTDELIVERY['REDIS_URL'] is not set.",
                "Set REDIS_URL, e.g. 'redis://127.0.0.1:6379/0'.",
            ),
        ]
    problem = _url_scheme_problem("RTDELIVERY['REDIS_URL']", url, REDIS_SCHEMES)
    return [*problems, problem] if problem else problems


def redis_target(raw: Mapping[str, Any]) -> RedisTarget | None:
    """The :class:`RedisTarget` of valid merged settings (None: neither REDIS nor REDIS_URL)."""
    config = raw["REDIS"]
    if config is None:
        return RedisTarget("url", url=raw["REDIS_URL"]) if raw["REDIS_URL"] else None
    if "url" in config:
        return RedisTarget("url", url=config["url"])
    if "sentinels" in config:
        return RedisTarget(
            "sentinel",
            sentinels=tuple((host, port) for host, port in config["sentinels"]),
            service=config["service"],
            sentinel_options=dict(config.get("sentinel_options", {})),
        )
    return RedisTarget("cluster", nodes=tuple(config["cluster"]))
