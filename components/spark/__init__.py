"""Spark jobs from Airflow (SparkOperator): the Kubeflow spark-operator and its job namespaces.
config.py -> values.py -> component.py.
"""
