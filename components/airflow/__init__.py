"""Airflow itself (AirflowRelease): the official chart with every secret owned by Pulumi.

config.py (the `airflow` object; fernet_config, spread_config, maintenance_config, pools,
dag_bundles, task_images, secret_paths: its parts) -> values.py (chart values; fernet, spread,
rollout, secret_files, jobs, maintenance_values, invariants, guards) -> component.py (the Pulumi
wiring; maintenance.py: backups and cleanup).
"""
