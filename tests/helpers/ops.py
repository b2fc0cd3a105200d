"""HTTP probes and Prometheus scrapes for the ops tests (real HTTP, no mocks)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

PORT_LINE = re.compile(r"serving /healthz, /readyz and /metrics on http://[^:\s]+:(\d+)")


def get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    """(status, body) of a GET; 4xx/5xx answers are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:  # 3.15 warns about an HTTPError whose body is left open
            return exc.code, exc.read().decode()


def get_json(url: str) -> tuple[int, dict[str, Any]]:
    status, body = get(url)
    return status, json.loads(body)


Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Scrape:
    """Every sample of ``url``/metrics, parsed by prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = get(url + "/metrics")
    assert status == 200, body
    out: Scrape = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Scrape, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_for(
    condition: Callable[[], object],
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.02,
) -> Any:
    """Poll ``condition`` every ``interval`` seconds until it returns something truthy
    (returned), or fail the test after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_for_status(
    url: str, status: int, timeout: float = 30.0, alive: Callable[[], object] | None = None
) -> dict[str, Any]:
    """Poll a JSON endpoint until it answers ``status``; returns that body.

    Until the server listens, connection errors count as "not yet"; ``alive`` (say, a
    process's ``poll() is None``) stops the wait early when the server cannot come any more.
    """

    def check() -> dict[str, Any] | None:
        if alive is not None and not alive():
            raise AssertionError(f"{url}: the server went away")
        try:
            got, body = get_json(url)
        except (urllib.error.URLError, ConnectionError):
            return None
        return body if got == status else None

    return wait_for(check, timeout, f"{url} to answer {status}")  # type: ignore[no-any-return]


def port_from(lines: Iterable[str]) -> int | None:
    for line in lines:
        match = PORT_LINE.search(line)
        if match:
            return int(match.group(1))
    return None
