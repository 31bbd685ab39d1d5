"""Helpers for the metrics tests: scrape a Prometheus endpoint and read one number from it."""

from __future__ import annotations

import socket

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


def free_address() -> str:
    """A free 127.0.0.1 host:port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def scrape(url: str) -> str:
    """The text of one scrape."""
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        assert answer.status == 200, await answer.text()
        assert answer.content_type == "text/plain"
        return await answer.text()


def value(text: str, sample: str, **labels: str) -> float:
    """The sum of the samples named ``sample`` whose labels include ``labels`` (0 if none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and labels.items() <= s.labels.items():
                total += s.value
    return total
