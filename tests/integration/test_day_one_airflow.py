"""Day one from scratch through real Airflow (`airflow dags test`) on real video, no synthetic data:
ingest_daily, detect_triggers, autolabel with no model and review_export with empty pre-labels.

The rest of the round (review_import, one_click_train) is the same task functions that
test_day_one_dags.py runs in-process, and test_training_dag.py runs one_click_train through Airflow.
Slow: Airflow starts once per DAG run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_day_one_dags import assert_empty_tasks, engine_context, engine_env, land, stages

from real_video import BIKES

pytest.importorskip("airflow", reason="apache-airflow is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.airflow]


def test_from_scratch_through_airflow_on_real_video(tmp_path: Path) -> None:
    from dataengine.demo import AirflowRunner

    engine = land(tmp_path, (BIKES,))
    runner = AirflowRunner(engine, engine_env(engine), lambda _: None)
    runner.setup()
    ctx = engine_context(engine)
    runner.run("ingest_daily", "day-one")
    assert len(stages(ctx)) == 5  # bikes.mp4: 10 s in clips of 2 s
    runner.run("detect_triggers", "day-one")
    selected = sorted(c for c, stage in stages(ctx).items() if stage == "selected")
    assert len(selected) == 3  # the image heuristics need no model
    # No model yet: autolabel passes the selected clips on unlabelled, and the export sends them with
    # empty pre-labels.
    runner.run("autolabel", "day-one")
    runner.run("review_export", "day-one")
    assert sorted(c for c, stage in stages(ctx).items() if stage == "in_review") == selected
    assert_empty_tasks(engine, selected)
    ctx.close()
