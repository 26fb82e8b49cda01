"""Prometheus samples read from the app's /metrics exposition."""

from __future__ import annotations

from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = defaultdict[tuple[str, frozenset[tuple[str, str]]], float]
"""Sample values by (name, labels); an absent sample reads 0."""


def parse(exposition: str) -> Samples:
    samples: Samples = defaultdict(float)
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] += sample.value
    return samples


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]
