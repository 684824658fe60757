"""Reading /metrics in tests: samples keyed by name and labels, and waiting for counts.

A request is counted when its handling ends, just after its last byte was sent, so a
scrape right behind it may come a moment early (and, with several workers, from another
process): `wait_for` scrapes until the expected values are there, bounded, and the test
then asserts exact values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, frozenset[tuple[str, str]]]
Samples = dict[Key, float]


def key(name: str, **labels: str) -> Key:
    return name, frozenset(labels.items())


def parse(exposition: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            samples[key(sample.name, **sample.labels)] = sample.value
    return samples


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def delta(after: Samples, before: Samples, wanted: Key) -> float:
    return after.get(wanted, 0.0) - before.get(wanted, 0.0)


def wait_for(
    client: httpx.Client,
    done: Callable[[Samples], bool],
    seconds: float = 20.0,
) -> Samples:
    """Scrape until `done` holds; the last scrape either way (the caller asserts on it)."""
    deadline = time.monotonic() + seconds
    while True:
        samples = scrape(client)
        if done(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def reached(before: Samples, expected: Mapping[Key, float]) -> Callable[[Samples], bool]:
    """True once every expected key has moved by at least its amount since `before`."""
    return lambda now: all(delta(now, before, k) >= v for k, v in expected.items())
