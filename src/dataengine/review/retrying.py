"""Retries of review-platform calls inside a task: exponential backoff with jitter (tenacity).

A rate limit (HTTP 429) or an outage raises :class:`~dataengine.review.base.RetryableReviewError`;
retrying here, a few seconds later, keeps one 429 from costing a whole Airflow retry (minutes apart).
Only retryable errors are retried, and only around calls that are idempotent: reads, and exports that
look their tasks up again before creating any. When the attempts run out, the last error is raised as
it was, so Airflow's own retries still apply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

if TYPE_CHECKING:
    from dataengine.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def _retryable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retryable", False))


def retrying(settings: Settings, what: str) -> Retrying:
    """A tenacity ``Retrying`` for platform calls: ``review_retry_attempts`` tries, waits growing from
    ``review_retry_wait`` seconds (plus as much jitter) up to ``review_retry_max_wait``."""

    def note(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("%s: attempt %d failed (%s); retrying in %.1f s", what, state.attempt_number, error, wait)

    return Retrying(
        retry=retry_if_exception(_retryable),
        wait=wait_exponential_jitter(
            multiplier=settings.review_retry_wait,
            max=settings.review_retry_max_wait,
            jitter=settings.review_retry_wait,
        ),
        stop=stop_after_attempt(settings.review_retry_attempts),
        before_sleep=note,
        reraise=True,
    )


def with_retries(settings: Settings, what: str, call: Callable[[], T]) -> T:
    """``call()``, retried on retryable errors as :func:`retrying` says."""
    return retrying(settings, what)(call)
