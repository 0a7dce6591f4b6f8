"""The loop learns the rare class: `make demo` (its seeds and settings), bootstrap and two rounds, in-process.

The rare class (wheelchair) is held out from the start (the regression set) or from round 1 (the edge-case
set, through a trigger); after round 2 the new model scores it better there than the bootstrap model does.
"""

from __future__ import annotations

import pytest

from dataengine.demo import DemoOptions, DemoResult, run_demo
from dataengine.synthetic.scene import RARE_CLASS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    # `make demo` itself (its seeds, sizes and settings), in-process instead of `airflow dags test`: a
    # smaller demo learns too little of a class seen in a handful of videos to measure a rise.
    options = DemoOptions(rounds=2, workdir=tmp_path_factory.mktemp("rare") / "demo", through="python")
    assert options.rare_class == RARE_CLASS
    return run_demo(options, echo=lambda _: None)


def test_the_rare_class_is_held_out_from_the_bootstrap_or_round_1_on(demo: DemoResult) -> None:
    bootstrap, first, _ = demo.rounds
    assert bootstrap.edge_case == ""  # the seed clips came in without a trigger
    assert first.edge_case == "default-edgecases@1"
    in_regression = bool(bootstrap.regression_rare_support)
    in_edge_cases = bool(first.rare_support)
    assert in_regression or in_edge_cases
    # Wherever it has examples it is measured (not n/a), for the new and the promoted model alike.
    if in_regression:
        assert bootstrap.regression_rare_ap is not None
        assert first.regression_rare_ap is not None
    if in_edge_cases:
        assert first.rare_ap is not None
        assert first.previous_rare_ap is not None
    else:
        assert first.rare_ap is None  # n/a (0 examples), not 0.0


def test_after_round_2_the_rare_class_ap_is_above_the_bootstraps(demo: DemoResult) -> None:
    """On each held-out set with examples of the rare class, scored on the same frames for both models."""
    bootstrap, _, second = demo.rounds
    assert bootstrap.held_out == second.held_out  # the frozen regression set
    assert bootstrap.final_edge_case == second.final_edge_case == second.edge_case
    assert bootstrap.final_rare_support == second.final_rare_support
    measured = 0
    if second.regression_rare_support:
        assert bootstrap.regression_rare_ap is not None
        assert second.regression_rare_ap is not None
        assert second.regression_rare_ap > bootstrap.regression_rare_ap
        measured += 1
    if second.final_rare_support:
        assert bootstrap.final_rare_ap is not None
        assert second.final_rare_ap is not None
        assert second.final_rare_ap > bootstrap.final_rare_ap
        measured += 1
    assert measured >= 1
    table = demo.table()
    assert f"{RARE_CLASS} AP (boxes)" in table
    assert f"{RARE_CLASS} AP on {second.held_out}" in table
