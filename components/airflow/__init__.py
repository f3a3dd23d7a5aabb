"""Airflow itself (AirflowRelease): the official chart with every secret owned by Pulumi.

The layer is the folder: config/ (the `airflow` object parsed into typed config: airflow.py and its
parts fernet, spread, maintenance, pools, dag_bundles, task_images, secret_paths, secret_names,
upgrades) -> values/ (chart values built from that config: chart.py and fernet, spread, rollout,
secret_files, jobs, maintenance, invariants, guards, airflow_runtime) -> the Pulumi wiring beside
them (component.py; maintenance.py: backups and cleanup). pyproject.toml's import-linter contracts
hold each folder to its place.
"""
