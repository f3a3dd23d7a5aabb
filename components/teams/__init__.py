"""Team task namespaces (TaskNamespace) for KubernetesPodOperator. config.py -> component.py."""
