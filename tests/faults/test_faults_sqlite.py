"""Kills and concurrent runs of every writing stage on SQLite, and the loop on an S3 store that fails one
PUT in five (the scenarios live in scenarios.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from faultkit import Reference
from scenarios import (
    WRITING,
    flaky_s3_loop,
    killed_mid_training,
    killed_runs_then_a_rerun,
    secrets_found,
    two_concurrent_runs,
)

pytest_plugins = ["fault_fixtures"]  # the clean reference and the zygote
BACKEND = "sqlite"
pytestmark = pytest.mark.faults


@pytest.mark.parametrize("stage", WRITING)
def test_killed_runs_then_a_rerun_equal_a_clean_run(reference: Reference, stage: str, tmp_path: Path) -> None:
    assert killed_runs_then_a_rerun(reference, stage, tmp_path) == ""


def test_train_killed_while_its_job_runs_leaves_no_job_and_a_rerun_equals_a_clean_run(
    reference: Reference, tmp_path: Path
) -> None:
    assert killed_mid_training(reference, tmp_path) == ""


# Two trainings at once cost the most of any case; they run on PostgreSQL, where a deployment's
# concurrent runs meet (its advisory locks and row conflicts), and every other stage runs here too.
@pytest.mark.parametrize("stage", [stage for stage in WRITING if stage != "train"])
def test_two_concurrent_runs_equal_one_clean_run(reference: Reference, stage: str, tmp_path: Path) -> None:
    assert two_concurrent_runs(reference, stage, tmp_path) == ""


@pytest.mark.s3
def test_the_loop_on_s3_failing_one_put_in_five(reference: Reference, tmp_path: Path) -> None:
    assert flaky_s3_loop(reference, tmp_path) == ""


def test_no_secret_in_any_output_or_stored_file(reference: Reference) -> None:
    assert secrets_found(reference) == []
