"""Registers the dataengine monitoring view in the Airflow UI (Airflow 3 FastAPI plugin). No logic here.

A plugin's FastAPI app is not protected by Airflow on its own: every route requires a logged-in Airflow
user (the UI's ``_token`` cookie or a bearer token) who may see plugin views.
"""

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import requires_access_view
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends

from dataengine.airflow.ui import create_app


class DataEnginePlugin(AirflowPlugin):
    name = "dataengine"
    fastapi_apps = [
        {
            "app": create_app(dependencies=[Depends(requires_access_view(AccessView.PLUGINS))]),
            "url_prefix": "/dataengine",
            "name": "dataengine monitoring",
        }
    ]
    external_views = [
        {
            "name": "Data engine",
            "href": "/dataengine/",
            "destination": "nav",
            "url_route": "dataengine",
        }
    ]
