"""Kills and concurrent runs of every writing stage on SQLite, and the loop on an S3 store that fails one
PUT in five (the scenarios live in scenarios.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from faultkit import Reference
from scenarios import (
    test_killed_runs_then_a_rerun_equal_a_clean_run,
    test_two_concurrent_runs_equal_one_clean_run,
)

pytest_plugins = ["fault_fixtures"]  # the clean reference and the zygote
BACKEND = "sqlite"
__all__ = ["test_killed_runs_then_a_rerun_equal_a_clean_run", "test_two_concurrent_runs_equal_one_clean_run"]


@pytest.mark.faults
@pytest.mark.s3
def test_the_loop_on_s3_failing_one_put_in_five(reference: Reference, tmp_path: Path) -> None:
    from scenarios import flaky_s3_loop

    flaky_s3_loop(reference, tmp_path)


@pytest.mark.faults
def test_no_secret_in_any_output_or_stored_file(reference: Reference) -> None:
    from scenarios import no_secret_in_any_output_or_stored_file

    no_secret_in_any_output_or_stored_file(reference)
