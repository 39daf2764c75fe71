"""``manage.py rtdelivery_bench``: the same as ``python -m rtdelivery.bench``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

SCENARIOS = ["burst", "steady", "idle", "transports", "workers", "poll-cost"]


class Command(BaseCommand):
    help = "Benchmark rtdelivery against naive Channels and the raw floor (docs/performance.md)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
        parser.add_argument("--only", action="append", choices=SCENARIOS, help="repeatable")
        parser.add_argument("--json", help="write the results as JSON to this file")

    def handle(self, *args: Any, **options: Any) -> None:
        from rtdelivery.bench.runner import main

        argv = ["--quick"] if options["quick"] else []
        for scenario in options["only"] or []:
            argv += ["--only", scenario]
        if options["json"]:
            argv += ["--json", options["json"]]
        if main(argv) != 0:
            raise CommandError("Some benchmark cases failed; see the table.")
