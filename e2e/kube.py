"""The Kubernetes API client the end-to-end run shares with the preview's dry run."""

from components.offline.kube_api import FIELD_MANAGER, ApiError, ApiResource, Kube, wait_for

__all__ = ["FIELD_MANAGER", "ApiError", "ApiResource", "Kube", "wait_for"]
