"""``manage.py rtdelivery_bench``: the same as ``python -m rtdelivery.bench``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Benchmark rtdelivery against naive Channels and the raw floor (see docs/performance.md)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "bench_args", nargs="*", help="arguments for python -m rtdelivery.bench"
        )

    def handle(self, *args: Any, bench_args: list[str], **options: Any) -> None:
        from rtdelivery.bench.runner import main

        if main(bench_args) != 0:
            raise CommandError("Some benchmark cases failed; see the table.")
