"""A small client of Airflow's REST API (``/api/v2``): trigger a DAG as ``airflow dags trigger`` does,
follow its run, read who ran which task. Used by the cluster test, the scale-out benchmark and
``python -m dataengine.airflow.cluster trigger``."""

from __future__ import annotations

import time
from typing import Any

import httpx

TERMINAL = {"success", "failed"}


class AirflowAPIError(RuntimeError):
    """The API refused a request or a run did not finish in time."""


class AirflowAPI:
    """Signed in as one user of the simple auth manager (a JWT from ``POST /auth/token``)."""

    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.client = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None

    def close(self) -> None:
        """Release the connection pool."""
        self.client.close()

    def _auth(self) -> dict[str, str]:
        if self._token is None:
            response = self.client.post(
                "/auth/token", json={"username": self.username, "password": self.password}
            )
            if response.status_code >= 300:
                raise AirflowAPIError(
                    f"sign-in as {self.username} refused: {response.status_code} {response.text}"
                )
            self._token = str(response.json()["access_token"])
        return {"Authorization": f"Bearer {self._token}"}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call of ``/api/v2``; its JSON body."""
        response = self.client.request(method, f"/api/v2{path}", headers=self._auth(), **kwargs)
        if response.status_code >= 300:
            raise AirflowAPIError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    # Health and DAGs -------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``/api/v2/monitor/health``: metadatabase, scheduler, triggerer and dag-processor status."""
        body: dict[str, Any] = self.client.get("/api/v2/monitor/health").json()
        return body

    def wait_healthy(self, timeout: float = 180.0) -> None:
        """Until the API answers and scheduler, triggerer and dag-processor report healthy."""
        deadline, last = time.monotonic() + timeout, "no answer"
        while time.monotonic() < deadline:
            try:
                health = self.health()
                unhealthy = [
                    k for k, v in health.items() if isinstance(v, dict) and v.get("status") != "healthy"
                ]
                if not unhealthy:
                    return
                last = f"not healthy yet: {unhealthy}"
            except (httpx.HTTPError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(1.0)
        raise AirflowAPIError(f"Airflow at {self.base_url} not healthy after {timeout:.0f} s ({last})")

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 180.0) -> None:
        """Until the dag-processor has parsed every one of ``dag_ids``."""
        deadline = time.monotonic() + timeout
        while True:
            known = {d["dag_id"] for d in self.request("GET", "/dags", params={"limit": 100})["dags"]}
            missing = sorted(set(dag_ids) - known)
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AirflowAPIError(f"DAGs {missing} not parsed after {timeout:.0f} s")
            time.sleep(1.0)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause or unpause a DAG."""
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    # Runs ---------------------------------------------------------------------------------------

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """A manual run of ``dag_id`` now, as ``airflow dags trigger``; returns its run id."""
        body = self.request(
            "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}}
        )
        return str(body["dag_run_id"])

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of ``dag_id``, oldest first."""
        params = {"limit": 100, "order_by": "run_after"}
        runs: list[dict[str, Any]] = self.request("GET", f"/dags/{dag_id}/dagRuns", params=params)["dag_runs"]
        return runs

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Until the run ends; its final state (``success`` or ``failed``)."""
        deadline = time.monotonic() + timeout
        while True:
            state = str(self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])
            if state in TERMINAL:
                return state
            if time.monotonic() > deadline:
                raise AirflowAPIError(f"{dag_id} run {run_id} still {state} after {timeout:.0f} s")
            time.sleep(1.0)

    def wait_idle(self, dag_ids: list[str], timeout: float) -> None:
        """Until no run of ``dag_ids`` is queued or running."""
        deadline = time.monotonic() + timeout
        while True:
            busy = [(d, r["dag_run_id"]) for d in dag_ids for r in self.runs(d) if r["state"] not in TERMINAL]
            if not busy:
                return
            if time.monotonic() > deadline:
                raise AirflowAPIError(f"runs still active after {timeout:.0f} s: {busy}")
            time.sleep(1.0)

    def settle_unpaused(self, dag_ids: list[str], timeout: float) -> None:
        """After unpausing cron DAGs: until the scheduler has made each one's first run and all ended.

        Unpausing a cron DAG without catchup runs it for the latest interval at once.
        """
        deadline = time.monotonic() + timeout
        while not all(self.runs(d) for d in dag_ids):
            if time.monotonic() > deadline:
                raise AirflowAPIError(f"no run of {dag_ids} after {timeout:.0f} s: is the scheduler up?")
            time.sleep(1.0)
        self.wait_idle(dag_ids, max(1.0, deadline - time.monotonic()))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances (mapped ones one per map index) with state, hostname and queue."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        instances: list[dict[str, Any]] = self.request("GET", path, params={"limit": 1000})["task_instances"]
        return instances

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        """Every try of one task instance (its history, then the current try)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries"
        if map_index < 0:
            path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries"
        tries: list[dict[str, Any]] = self.request("GET", path)["task_instances"]
        return tries
