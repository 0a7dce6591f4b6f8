"""The monitoring view inside the Airflow UI: a FastAPI app that the plugin mounts at ``/dataengine``."""

from dataengine.airflow.ui.app import create_app

__all__ = ["create_app"]
