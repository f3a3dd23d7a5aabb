"""End-to-end run against a real Kubernetes API server on 127.0.0.1 (`python -m e2e`)."""
