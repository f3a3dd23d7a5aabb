"""Shared underneath every capability: the config reader (reader.py), chart sources (charts.py)
and their Release wiring (chart_release.py), RBAC helpers (rbac.py), the cluster target check and
the Airflow image's user. Imports no capability.
"""
