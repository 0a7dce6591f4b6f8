"""docker-compose.yaml without a Docker engine: it validates against the compose spec's JSON schema, runs
the commands the cluster test runs natively, and carries every setting docs/operations.md documents."""

from __future__ import annotations

import json
import re
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cryptography.fernet import Fernet

from dataengine.airflow.cluster import DEFAULT_WORKERS, INIT_COMMANDS, SERVICES, worker_command
from dataengine.airflow.cluster_cli import read_env_file, write_env_file

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = ("airflow-init", *SERVICES, *(w.name for w in DEFAULT_WORKERS))
LONG_RUNNING = ("postgres", "redis", "minio", *SERVICES, *(w.name for w in DEFAULT_WORKERS))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yaml").read_text())  # resolves `<<:` merges
    return doc


def test_the_file_validates_against_the_compose_spec(compose: dict[str, Any]) -> None:
    schema_file = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_a_broken_file_does_not_validate(compose: dict[str, Any]) -> None:
    """The schema check can fail: a misspelt key and a bad depends_on condition are caught."""
    schema_file = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["scheduler"]["restarts"] = "always"
    broken["services"]["gpu-worker"]["depends_on"]["airflow-init"] = {"condition": "finished"}
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert len(list(validator.iter_errors(broken))) >= 2


def test_every_airflow_service_runs_what_make_up_cluster_runs(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, argv in SERVICES.items():
        assert services[name]["command"] == argv, name
    for worker in DEFAULT_WORKERS:
        assert services[worker.name]["command"] == worker_command(worker), worker.name
    init = services["airflow-init"]["command"][0]
    for argv in [*INIT_COMMANDS, ["pools", "set", "gpu"]]:
        assert "airflow " + " ".join(argv) in init
    assert "dataengine init" in init
    assert services["gpu-worker"]["command"][3] == "gpu"  # --queues gpu: the only gpu consumer
    assert [s for s, spec in services.items() if "gpu" in (spec.get("command") or [])] == ["gpu-worker"]


def test_the_documented_settings_are_set(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://api-server:8080/execution/"
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
        for secret in (
            "AIRFLOW__API_AUTH__JWT_SECRET",
            "AIRFLOW__API__SECRET_KEY",
            "AIRFLOW__CORE__FERNET_KEY",
        ):
            assert env[secret].startswith(f"${{{secret}"), (name, secret)  # from .env, shared by all
        if name != "airflow-init":
            assert services[name]["depends_on"]["airflow-init"] == {
                "condition": "service_completed_successfully"
            }
    for name in LONG_RUNNING:
        assert services[name]["restart"] == "unless-stopped", name
        assert services[name]["healthcheck"]["test"], name
    assert services["minio-init"]["depends_on"]["minio"] == {"condition": "service_healthy"}
    assert "mc mb --ignore-existing local/dataengine" in services["minio-init"]["command"][0]
    (device,) = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    assert services["labelstudio"]["profiles"] == ["labelstudio"]


def test_no_credential_is_written_in_the_file(compose: dict[str, Any]) -> None:
    secret = re.compile(r"PASSWORD|SECRET|FERNET_KEY|ACCESS_KEY_ID|ROOT_USER")
    values = [
        (name, key, str(value))
        for name, service in compose["services"].items()
        for key, value in (service.get("environment") or {}).items()
        if secret.search(key) and not key.endswith("_FILE")
    ]
    assert len(values) >= 20
    assert [v for v in values if not v[2].startswith("${")] == []
    urls = [
        v
        for s in compose["services"].values()
        for v in (s.get("environment") or {}).values()
        if "@" in str(v)
    ]
    assert urls
    assert all(":${POSTGRES_PASSWORD" in str(url) for url in urls)
    assert "minioadmin" not in (REPO / "docker-compose.yaml").read_text()


def test_make_writes_every_variable_the_file_needs_into_an_ignored_env_file(tmp_path: Path) -> None:
    text = (REPO / "docker-compose.yaml").read_text()
    needed = set(re.findall(r"(?<!\$)\$\{([A-Z_]+)[:}]", text))  # $${X} is the container's own
    env_file = tmp_path / ".env"
    write_env_file(env_file)
    values = read_env_file(env_file)
    assert needed <= set(values)
    Fernet(values["AIRFLOW__CORE__FERNET_KEY"].encode())  # a valid Fernet key
    assert env_file.stat().st_mode & 0o077 == 0
    assert write_env_file(env_file) == []  # kept, never regenerated
    assert read_env_file(env_file) == values
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO, check=False)
    assert ignored.returncode == 0
    tracked = subprocess.run(
        ["git", "ls-files", ".env"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert tracked.stdout == ""


def test_the_image_installs_the_package_as_make_does() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    makefile = (REPO / "Makefile").read_text()
    (make_extras,) = re.findall(r"pip install --quiet -e '\.\[([a-z,]+)\]'", makefile)
    (image_extras,) = re.findall(r"ARG EXTRAS=([a-z,]+)", dockerfile)
    assert set(image_extras.split(",")) == set(make_extras.split(",")) - {"dev"}
    assert 'pip install --no-cache-dir ".[${EXTRAS}]"' in dockerfile
    assert "COPY pyproject.toml" in dockerfile
    assert 'ENTRYPOINT ["airflow"]' in dockerfile
