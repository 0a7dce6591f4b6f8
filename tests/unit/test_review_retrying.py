"""Platform calls are retried with backoff on retryable errors only, then the last error is raised."""

from __future__ import annotations

import pytest

from dataengine.config import Settings
from dataengine.errors import ReviewError
from dataengine.review.base import RetryableReviewError
from dataengine.review.retrying import retrying, with_retries


def _settings(**values: float) -> Settings:
    return Settings(database_url="sqlite://", storage_url="memory://retry").model_copy(update=values)


class Flaky:
    """Fails ``failures`` times with ``error``, then answers."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def test_a_rate_limit_is_retried_until_the_call_succeeds() -> None:
    call = Flaky(2, RetryableReviewError("HTTP 429"))
    assert with_retries(_settings(review_retry_wait=0.0), "test", call) == "ok"
    assert call.calls == 3


def test_a_plain_error_is_not_retried() -> None:
    call = Flaky(1, ReviewError("HTTP 400: bad label config"))
    with pytest.raises(ReviewError, match="HTTP 400"):
        with_retries(_settings(review_retry_wait=0.0), "test", call)
    assert call.calls == 1


def test_the_last_error_is_raised_when_the_attempts_run_out() -> None:
    call = Flaky(10, RetryableReviewError("HTTP 503"))
    with pytest.raises(RetryableReviewError, match="HTTP 503"):
        with_retries(_settings(review_retry_wait=0.0, review_retry_attempts=3), "test", call)
    assert call.calls == 3


def test_waits_grow_exponentially_with_jitter_up_to_the_cap() -> None:
    policy = retrying(_settings(review_retry_wait=1.0, review_retry_max_wait=5.0), "test")
    waits = []
    for attempt in range(1, 7):
        state = type("State", (), {"attempt_number": attempt})()
        waits.append(policy.wait(state))
    assert 1.0 <= waits[0] <= 2.0  # 1 s plus up to 1 s of jitter
    assert 2.0 <= waits[1] <= 3.0
    assert all(w <= 5.0 for w in waits)
    assert waits[-1] == 5.0  # 32 s and more are capped
