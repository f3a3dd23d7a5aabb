"""What a stack's config asks of the cluster it runs on, read before the cluster starts.

Node names: a hostPath volume pinned to a node (`logs.hostPath.node`,
`airflow.dags.hostPath.node`) is a PersistentVolume with node affinity on
`kubernetes.io/hostname`; a pod pinned by `nodeSelector`, `nodeAffinity` or `nodeName`
anywhere in the config (component settings, extraValues, task pods) only schedules on a
node of that name. The e2e cluster makes nodes of those names, or such a stack waits
forever (the hostPath logs permissions Job first).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

HOSTNAME_LABEL = "kubernetes.io/hostname"


def _walk(value: Any, key: str = "") -> Iterator[str]:
    if isinstance(value, list):
        for item in value:
            yield from _walk(item, key)
        return
    if not isinstance(value, dict):
        return
    if key == "hostPath" and isinstance(value.get("node"), str):
        yield value["node"]  # logs.hostPath.node, airflow.dags.hostPath.node
    if key == "nodeSelector" and isinstance(value.get(HOSTNAME_LABEL), str):
        yield value[HOSTNAME_LABEL]
    if value.get("key") == HOSTNAME_LABEL and value.get("operator") == "In":
        yield from (v for v in value.get("values") or [] if isinstance(v, str))  # node affinity terms
    if isinstance(value.get("nodeName"), str):
        yield value["nodeName"]
    for child_key, child in value.items():
        yield from _walk(child, str(child_key))


def pinned_node_names(config: dict[str, Any]) -> list[str]:
    """Node names the stack's config pins, in the order they appear, each once. `config` is
    a stack file's `config` mapping (or the whole stack file)."""
    return [name for name in dict.fromkeys(_walk(config)) if name]


# Secrets a hand-made stack sets with `pulumi config set --secret`, for the e2e run: stand-ins of
# the shape each key expects (a URL, a key, a JSON object shaped after the stack's own `teams`),
# so the stack's program gets past its edge as it would with the real values.
STAND_INS = {
    "databaseUrl": "postgresql://airflow:stand-in-password@db.example.internal:5432/airflow?sslmode=require",
    "gitSshKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nc3RhbmQtaW4=\n-----END OPENSSH PRIVATE KEY-----\n",
    "gitToken": "stand-in-git-token",
}
_LOGS_CONNECTIONS = {
    "s3": "aws://?region_name=us-east-1",
    "gcs": "google-cloud-platform://?extra__google_cloud_platform__project=stand-in",
    "wasb": "wasb://stand-in@standin.blob.core.windows.net",
    "elasticsearch": "http://elasticsearch.example.internal:9200",
}


def stand_ins(config: dict[str, Any], project: str = "airflow-k8s") -> dict[str, str]:
    """{full key: stand-in value} for every `secure:` key of a stack file's `config:` block."""
    from components.offline.program import placeholder_for, placeholder_sslmode

    plain = {
        key.split(":", 1)[1]: value
        for key, value in config.items()
        if key.startswith(f"{project}:") and not (isinstance(value, dict) and "secure" in value)
    }
    out: dict[str, str] = {}
    for key, value in config.items():
        if not (isinstance(value, dict) and "secure" in value):
            continue
        short = key.split(":", 1)[1] if key.startswith(f"{project}:") else key
        if short == "databaseUrl":
            out[key] = STAND_INS[short].replace("sslmode=require", f"sslmode={placeholder_sslmode(plain)}")
        elif short in STAND_INS:
            out[key] = STAND_INS[short]
        elif short == "logsConnection":
            remote = (plain.get("logs") or {}).get("remote") or {}
            out[key] = _LOGS_CONNECTIONS.get(str(remote.get("target")), _LOGS_CONNECTIONS["s3"])
        else:
            out[key] = placeholder_for(short, plain)
    return out
