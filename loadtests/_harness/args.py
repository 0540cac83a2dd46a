"""Command-line flags the load tests share, and the hand-over to a worker process.

Every script builds its parser with :func:`parser` (description from its docstring,
``--reports-dir``, the hidden worker flags) and adds the shared flags it takes; :func:`parse`
parses, and when :func:`~_harness.worker.run_worker` started the script as a worker, runs the
worker function instead and returns None.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from .paths import REPORTS
from .worker import add_worker_args, run_as_worker


def parser(doc: str | None, *, worker: bool = True) -> argparse.ArgumentParser:
    """A script's parser: the first line of ``doc`` as description, ``--reports-dir`` and (for
    scripts that start clusters) the hidden flags of a worker."""
    p = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    p.add_argument(
        "--reports-dir",
        default=REPORTS,
        help="where the report files go (default loadtests/reports)",
    )
    if worker:
        add_worker_args(p)
    return p


def parse(
    p: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    worker: Callable[[dict[str, Any]], Any] | None = None,
) -> argparse.Namespace | None:
    """The parsed flags; None when this process was a worker and ``worker`` ran."""
    args = p.parse_args(argv)
    if worker is not None and run_as_worker(args, worker):
        return None
    return args


def add_timing(
    p: argparse.ArgumentParser,
    *,
    per: str,
    seconds: float = 8.0,
    rounds: int = 3,
    warmup: float | None = 2.0,
) -> None:
    """``--seconds`` per measurement, ``--rounds`` and ``--warmup`` seconds (None: no flag)."""
    p.add_argument(
        "--seconds", type=float, default=seconds, help=f"seconds per measurement ({seconds:g})"
    )
    p.add_argument(
        "--rounds", type=int, default=rounds, help=f"rounds per {per} and concurrency ({rounds})"
    )
    if warmup is not None:
        p.add_argument(
            "--warmup", type=float, default=warmup, help=f"warm-up seconds per {per} ({warmup:g})"
        )


class _IntList(argparse.Action):
    """Integers given space- or comma-separated: ``1 8``, ``1,8``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        items = values if isinstance(values, list) else [values]
        try:
            ints = [int(x) for v in items for x in str(v).split(",") if x]
        except ValueError:
            parser.error(f"{option_string}: integers expected, got {' '.join(map(str, items))}")
        setattr(namespace, self.dest, ints)


def add_concurrencies(p: argparse.ArgumentParser, default: Sequence[int]) -> None:
    """``--concurrency``: the concurrencies to measure at, space- or comma-separated."""
    p.add_argument(
        "--concurrency",
        nargs="+",
        action=_IntList,
        default=list(default),
        help=f"concurrencies, space- or comma-separated (default {' '.join(map(str, default))})",
    )


def add_concurrency(p: argparse.ArgumentParser, default: int, help: str | None = None) -> None:
    """``--concurrency``: one concurrency (callers at once)."""
    p.add_argument(
        "--concurrency", type=int, default=default, help=help or f"callers at once ({default})"
    )


def add_keep_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep each cluster's private dir (Ray logs, worker result) after a good run",
    )
