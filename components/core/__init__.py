"""Shared underneath every capability: the config reader and Kubernetes quantities (reader.py),
container resources (resources.py), the deep merge of chart values (merge.py), where a workload
keeps its pod (workloads.py), the guarantees every chart's values keep (invariants.py), chart
sources (charts.py) and their Release wiring (chart_release.py), RBAC helpers (rbac.py), the
cluster target check and the Airflow image's user. Imports no capability.
"""
