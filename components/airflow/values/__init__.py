"""Airflow chart values: plain functions from typed config to the chart's values (no Pulumi)."""
