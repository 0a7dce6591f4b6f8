"""The demo's printed table: the rare class's AP with its support per round, and n/a where nothing was
measured (never 0.0)."""

from __future__ import annotations

from dataengine.demo import DemoOptions, DemoResult, RoundStats
from dataengine.synthetic.scene import RARE_CLASS


def rounds() -> list[RoundStats]:
    bootstrap = RoundStats(
        round=0, videos=6, clips=30, dataset="default@1", dataset_clips=30, model_id="m-boot",
        new_map=0.596, new_map50=0.81, rare_class="wheelchair", promoted=True,
        held_out="default-heldout@1", regression_rare_ap=None, regression_rare_support=0,
        final_edge_case="default-edgecases@2", final_rare_ap=0.112, final_rare_support=40,
    )  # fmt: skip
    first = RoundStats(
        round=1, videos=8, clips=40, selected=12, dataset="default@2", dataset_clips=42, model_id="m-one",
        new_map=0.70, previous_map=0.596, new_map50=0.88, edge_case="default-edgecases@1",
        held_out="default-heldout@1", regression_rare_ap=None, regression_rare_support=0,
        new_edge_map=0.41, previous_edge_map=0.30, rare_class="wheelchair", rare_ap=0.25,
        previous_rare_ap=0.09, rare_support=14, promoted=True,
        final_edge_case="default-edgecases@2", final_rare_ap=0.301, final_rare_support=40,
    )  # fmt: skip
    second = RoundStats(
        round=2, videos=8, clips=40, selected=12, dataset="default@3", dataset_clips=54, model_id="m-two",
        new_map=0.79, previous_map=0.70, edge_case="default-edgecases@2", new_edge_map=0.52,
        held_out="default-heldout@1", regression_rare_ap=None, regression_rare_support=0,
        previous_edge_map=0.41, rare_class="wheelchair", rare_ap=None, previous_rare_ap=None,
        rare_support=0, promoted=True,
        final_edge_case="default-edgecases@2", final_rare_ap=0.402, final_rare_support=40,
    )  # fmt: skip
    return [bootstrap, first, second]


def test_the_table_has_the_rare_class_ap_with_its_support_per_round() -> None:
    table = DemoResult(rounds=rounds(), wall_seconds=12.0, workdir="/tmp/demo").table()
    lines = table.splitlines()
    header, boot, first, second = lines[0], lines[2], lines[3], lines[4]

    assert "wheelchair AP (boxes)" in header
    assert "wheelchair AP on default-heldout@1" in header
    assert "prev wheelchair AP" in header
    assert "wheelchair AP on default-edgecases@2" in header
    assert "0.250 (14 boxes)" in first
    assert "0.090 (14 boxes)" in first  # the promoted model on the same frames
    assert "0.402 (40 boxes)" in second
    assert "0.112 (40 boxes)" in boot  # the bootstrap model on the last edge-case set: the yardstick
    assert "none yet" in boot  # no edge-case set at the bootstrap: nothing to score, not a 0.0
    # A set without the class: n/a (0 examples), never a 0.000 that no measurement gave.
    assert second.count("n/a (0 examples)") == 3  # the regression set has none either
    assert boot.count("n/a (0 examples)") == 1
    assert "0.000" not in table


def test_the_demo_follows_the_synthetic_rare_class() -> None:
    assert DemoOptions().rare_class == RARE_CLASS
