"""Jittered exponential backoff, shared by reads (retried inline) and the push drain."""

from __future__ import annotations

import random
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Backoff:
    """Full-jitter exponential backoff: attempt n waits a random time in [0, min(cap, base·2ⁿ)].

    A server's Retry-After, when given, is a floor: waiting less would only be refused again.
    """

    base: float
    cap: float
    tries: int

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        ceiling = min(self.cap, self.base * (2**attempt))
        wait = random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not security)
        return max(wait, retry_after or 0.0)


def inline_backoff() -> Backoff:
    """Retries within one drain or sync call: seconds, a handful of tries."""
    return Backoff(base=settings.ADAPTER_RETRY_BASE_SECONDS, cap=settings.ADAPTER_RETRY_CAP_SECONDS, tries=5)


def drain_backoff() -> Backoff:
    """Between drains, after a batch failed every inline try: a minute doubling up to an hour."""
    return Backoff(base=60.0, cap=3600.0, tries=settings.PUSH_MAX_FAILURES)
