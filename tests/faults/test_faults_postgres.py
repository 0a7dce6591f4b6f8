"""Kills, database cuts and concurrent runs of every writing stage on PostgreSQL (the scenarios live in
scenarios.py). The database URL carries a password, which the secret scan looks for."""

from __future__ import annotations

from pathlib import Path

import pytest
from faultkit import Reference
from scenarios import (
    WRITING,
    cut_database_mid_run,
    killed_runs_then_a_rerun,
    secrets_found,
    two_concurrent_runs,
)

pytest_plugins = ["fault_fixtures"]  # the clean reference and the zygote
BACKEND = "postgres"
pytestmark = [pytest.mark.faults, pytest.mark.postgres]


@pytest.mark.parametrize("stage", WRITING)
def test_killed_runs_then_a_rerun_equal_a_clean_run(reference: Reference, stage: str, tmp_path: Path) -> None:
    assert killed_runs_then_a_rerun(reference, stage, tmp_path) == ""


@pytest.mark.parametrize("stage", WRITING)
def test_two_concurrent_runs_equal_one_clean_run(reference: Reference, stage: str, tmp_path: Path) -> None:
    assert two_concurrent_runs(reference, stage, tmp_path) == ""


@pytest.mark.parametrize("stage", WRITING)
def test_database_cut_mid_run_then_a_rerun_equals_a_clean_run(
    reference: Reference, stage: str, tmp_path: Path
) -> None:
    assert cut_database_mid_run(reference, stage, tmp_path) == ""


def test_no_secret_in_any_output_or_stored_file(reference: Reference) -> None:
    assert secrets_found(reference) == []
