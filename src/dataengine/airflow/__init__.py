"""The Airflow layer: assets and operators. The only package of dataengine that imports airflow."""
