"""Airflow config: stack and argument input parsed into typed, valid config (no chart values, no Pulumi)."""
