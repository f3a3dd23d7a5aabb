"""Monitoring (Monitoring): scrape annotations, or kube-prometheus-stack with ServiceMonitors, alert
rules and a Grafana dashboard. config.py -> values.py (statsd_names.py: the metric catalogue) ->
component.py.
"""
