"""KEDA (KedaOperator): autoscaling of the Celery workers. config.py -> values.py -> component.py."""
