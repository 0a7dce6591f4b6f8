"""Honest per-class metrics (n/a, never 0.0, for a class without examples) and the promotion gate."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dataengine.training.comparison import CandidateComparison, PromotionDecision
from dataengine.training.evaluation import coco_scores
from dataengine.training.gate import GateRules, ScoredSet, gate_checks, verdict
from dataengine.training.metrics import NA_TEXT, ClassScore, Evaluation

CLASSES = ("person", "bed", "wheelchair")


def truth(
    boxes: list[tuple[int, str, tuple[float, float, float, float]]], n_images: int = 2
) -> dict[str, Any]:
    """A COCO ground truth: ``boxes`` are (image id, class name, xywh)."""
    ids = {name: i + 1 for i, name in enumerate(CLASSES)}
    return {
        "images": [{"id": i, "width": 320, "height": 240} for i in range(1, n_images + 1)],
        "annotations": [
            {
                "id": k + 1,
                "image_id": image,
                "category_id": ids[name],
                "bbox": list(xywh),
                "area": xywh[2] * xywh[3],
                "iscrowd": 0,
            }
            for k, (image, name, xywh) in enumerate(boxes)
        ],
        "categories": [{"id": i, "name": name} for name, i in ids.items()],
    }


def detection(
    image: int, name: str, xywh: tuple[float, float, float, float], score: float = 0.9
) -> dict[str, Any]:
    return {"image_id": image, "category_id": CLASSES.index(name) + 1, "bbox": list(xywh), "score": score}


PERSON = (10.0, 10.0, 40.0, 80.0)
BED = (100.0, 120.0, 120.0, 60.0)


def test_a_class_absent_from_the_ground_truth_is_na_not_zero() -> None:
    gt = truth([(1, "person", PERSON), (2, "person", PERSON), (2, "bed", BED)])
    # The model also "sees" a wheelchair that is not there: still no measurement of that class.
    results = [detection(1, "person", PERSON), detection(2, "bed", BED), detection(2, "wheelchair", PERSON)]

    scores = coco_scores(gt, results, held_out="default-heldout@1", model_id="m-1")

    wheelchair = scores.score("wheelchair")
    assert (wheelchair.ap, wheelchair.ap50, wheelchair.support) == (None, None, 0)
    assert not wheelchair.measured
    assert wheelchair.text() == f"wheelchair {NA_TEXT}" == "wheelchair n/a (0 examples)"
    assert scores.score("person").ap == pytest.approx(0.5, abs=0.01)  # one of two persons found
    assert scores.score("person").support == 2
    assert scores.score("bed").ap == pytest.approx(1.0)
    person = scores.score("person").ap
    assert person is not None
    assert scores.map == pytest.approx((person + 1.0) / 2)  # the mean over the measured classes
    doc = json.loads(json.dumps(scores.to_dict()))
    assert doc["per_class"]["wheelchair"] == {"ap": None, "ap50": None, "support": 0}
    assert doc["per_class"]["bed"]["support"] == 1
    assert "0.0" not in scores.score("wheelchair").text()
    assert "wheelchair n/a (0 examples)" in scores.summary()
    assert "n/a (0 examples)" in scores.table()
    assert Evaluation.from_dict(doc) == scores


def test_a_class_with_examples_and_no_detection_scores_zero_and_an_empty_set_scores_nothing() -> None:
    gt = truth([(1, "person", PERSON), (2, "bed", BED)])

    blind = coco_scores(gt, [])
    empty = coco_scores(truth([]), [detection(1, "person", PERSON)])

    assert (blind.map, blind.score("person").ap, blind.score("person").support) == (0.0, 0.0, 1)
    assert blind.score("wheelchair").ap is None
    assert (empty.map, empty.map50, empty.n_gt_boxes) == (None, None, 0)
    assert all(score.ap is None and score.support == 0 for score in empty.classes)
    assert "mAP n/a (0 examples)" in empty.summary()


def test_records_written_before_supports_were_kept_still_read() -> None:
    old = {"map": 0.5, "map50": 0.8, "per_class": {"person": 0.6, "bed": 0.4}, "n_images": 3}

    scores = Evaluation.from_dict(old)

    assert scores.per_class == {"person": 0.6, "bed": 0.4}
    assert scores.support == {"person": None, "bed": None}
    assert scores.score("person").text() == "person 0.600 (support not recorded)"


# The gate ---------------------------------------------------------------------------------------


def scores(label: str, map_: float | None, **classes: tuple[float | None, int]) -> Evaluation:
    return Evaluation(
        held_out=label, map=map_, map50=map_, map75=map_, mar100=map_,
        classes=tuple(ClassScore(name, support, ap) for name, (ap, support) in classes.items()),
        n_images=10, n_gt_boxes=sum(s for _, s in classes.values()), n_detections=20,
    )  # fmt: skip


REGRESSION = "default-heldout@1"
EDGE = "default-edgecases@2"


def test_a_model_better_overall_but_worse_on_the_rare_class_is_refused_naming_the_class() -> None:
    regression = ScoredSet(
        REGRESSION,
        scores(REGRESSION, 0.80, person=(0.82, 200), bed=(0.78, 137), wheelchair=(None, 0)),
        scores(REGRESSION, 0.70, person=(0.72, 200), bed=(0.68, 137), wheelchair=(None, 0)),
    )
    edge = ScoredSet(
        EDGE,
        scores(EDGE, 0.62, person=(0.80, 40), bed=(0.85, 30), wheelchair=(0.21, 37)),
        scores(EDGE, 0.60, person=(0.60, 40), bed=(0.70, 30), wheelchair=(0.50, 37)),
    )

    checks = gate_checks(GateRules(), regression=regression, edge=edge, promoted_id="m-old")
    promoted, reason = verdict(checks)

    assert not promoted
    failed = [c for c in checks if not c.passed]
    assert [c.name for c in failed] == [f"wheelchair AP on {EDGE} (37 boxes)"]
    assert (failed[0].candidate, failed[0].promoted, failed[0].limit) == (0.21, 0.50, 0.05)
    assert reason.startswith("refused: 1 of ")
    assert "wheelchair AP on default-edgecases@2 (37 boxes): 0.210 against 0.500 of m-old" in reason
    assert "fell 0.290, more than the tolerance 0.050" in reason
    # Every check is named with its numbers, the passed ones too.
    assert f"regression mAP on {REGRESSION}: 0.800 against 0.700 of m-old, rose 0.100" in reason
    assert f"edge-case mAP on {EDGE}: 0.620 against 0.600 of m-old, rose 0.020" in reason
    assert "person AP on default-heldout@1 (200 boxes)" in reason
    assert "wheelchair AP on default-heldout@1" not in reason  # not measured there: no check


def test_the_gate_promotes_when_every_check_passes_and_ignores_classes_without_enough_support() -> None:
    regression = ScoredSet(
        REGRESSION,
        scores(REGRESSION, 0.695, person=(0.70, 200)),
        scores(REGRESSION, 0.70, person=(0.70, 200)),
    )
    edge = ScoredSet(
        EDGE,
        scores(EDGE, 0.50, person=(0.70, 40), wheelchair=(0.10, 4)),  # 4 boxes: below the support minimum
        scores(EDGE, 0.40, person=(0.60, 40), wheelchair=(0.90, 4)),
    )
    rules = GateRules(map_tolerance=0.01, min_class_support=10, class_tolerances={"person": 0.0})

    checks = gate_checks(rules, regression=regression, edge=edge, promoted_id="m-old")
    promoted, reason = verdict(checks)

    assert promoted, reason
    assert reason.startswith(f"promoted: all {len(checks)} checks passed")
    assert "fell 0.005, within the tolerance 0.010" in reason
    assert not any("wheelchair" in c.name for c in checks)
    # The per-class tolerance applies: person may not lose anything on the regression set.
    tighter = ScoredSet(REGRESSION, scores(REGRESSION, 0.70, person=(0.69, 200)), regression.promoted)
    refused, why = verdict(gate_checks(rules, regression=tighter, edge=edge, promoted_id="m-old"))
    assert not refused
    assert "person AP on default-heldout@1 (200 boxes)" in why
    assert "tolerance 0.000" in why


def test_without_an_edge_case_set_the_regression_map_must_rise() -> None:
    same = scores(REGRESSION, 0.70, person=(0.70, 200))
    better = scores(REGRESSION, 0.71, person=(0.71, 200))

    tie, reason = verdict(
        gate_checks(GateRules(), regression=ScoredSet(REGRESSION, same, same), edge=None, promoted_id="m-old")
    )
    win, _ = verdict(
        gate_checks(
            GateRules(), regression=ScoredSet(REGRESSION, better, same), edge=None, promoted_id="m-old"
        )
    )

    assert (tie, win) == (False, True)
    assert "regression mAP rises on default-heldout@1 (no edge-case set with boxes yet)" in reason
    assert "no change (more than 0.000 needed)" in reason


def test_nothing_measured_is_refused() -> None:
    empty = scores(REGRESSION, None)

    promoted, reason = verdict(
        gate_checks(
            GateRules(), regression=ScoredSet(REGRESSION, empty, empty), edge=None, promoted_id="m-old"
        )
    )

    assert not promoted
    assert "nothing was measured" in reason


def test_the_comparison_and_the_decision_read_back_from_json() -> None:
    regression = ScoredSet(
        REGRESSION, scores(REGRESSION, 0.8, person=(0.8, 9)), scores(REGRESSION, 0.7, person=(0.7, 9))
    )
    edge = ScoredSet(EDGE, scores(EDGE, 0.5, wheelchair=(0.5, 12)), None)
    comparison = CandidateComparison("m-new", "default@2", "m-old", regression, edge)
    checks = tuple(gate_checks(GateRules(), regression=regression, edge=edge, promoted_id="m-old"))
    promoted, reason = verdict(checks)
    decision = PromotionDecision(
        model_id="m-new", promoted=promoted, new_map=0.8, previous_model_id="m-old", previous_map=0.7,
        held_out=REGRESSION, reason=reason, edge_case=EDGE, new_edge_map=0.5, checks=checks,
    )  # fmt: skip

    assert CandidateComparison.from_dict(json.loads(json.dumps(comparison.to_dict()))) == comparison
    assert PromotionDecision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision
    assert "wheelchair 0.500 (12 boxes)" in comparison.summary()
    assert decision.summary().startswith("m-new promoted (regression mAP 0.800 on default-heldout@1")
