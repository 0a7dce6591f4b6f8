"""Registers the dataengine lineage view in the Airflow UI (Airflow 3 FastAPI plugin). No logic here."""

from airflow.api_fastapi.core_api.security import requires_authenticated
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends

from dataengine.airflow.ui import create_app


class DataEnginePlugin(AirflowPlugin):
    name = "dataengine"
    fastapi_apps = [
        {
            "app": create_app(dependencies=[Depends(requires_authenticated())]),
            "url_prefix": "/dataengine",
            "name": "dataengine lineage",
        }
    ]
    external_views = [
        {"name": "Data engine", "href": "/dataengine/", "destination": "nav", "url_route": "dataengine"}
    ]
