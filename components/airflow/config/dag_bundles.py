"""Airflow 3's own DAG bundles: a git repository as a DAG bundle (`airflow.dags.mode: gitBundle`).

Beside git-sync (a sidecar that keeps a folder in step with a branch), Airflow 3 can fetch
DAGs itself: a `GitDagBundle` in `[dag_processor] dag_bundle_config_list` (the chart's
`dagProcessor.dagBundleConfigList`). The DAG processor clones the repository, and each
task runs with the bundle version its DAG run started with (workers and KubernetesExecutor
task pods fetch that commit themselves), so a push in the middle of a run never mixes code.

Credentials follow the git-sync rules and the same secret keys (`gitToken` over HTTPS,
`gitSshKey` over SSH, `knownHosts` required for SSH), delivered the way AirflowRelease
hands Airflow every secret: as files. The repository, user and token (or the private key,
with strict host key checking against `knownHosts`) become one Airflow connection of
type `git` in `connections.json`, which every Airflow container and task pod reads through
LocalFilesystemBackend; the known hosts lines are a file beside it. Nothing is an
environment variable and nothing is in the Helm values.

A server whose HTTPS certificate a private CA signed (an in-house GitLab, Gitea) is trusted
through `caCertificate`: the PEM is a file beside the connection, and `GIT_SSL_CAINFO` points
git at it in every Airflow container and task pod (git then trusts that CA, not the system's).

The Airflow image needs the git provider (`apache-airflow-providers-git`) and the `git`
binary: the DAG processor and every task pod fetch with them (README, "git-sync or a git
DAG bundle").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .secret_paths import SECRETS_DIR

GIT_BUNDLE_CLASS = "airflow.providers.git.bundles.git.GitDagBundle"
KNOWN_HOSTS_FILE = "git-known-hosts"
CA_FILE = "git-ca.crt"
CA_ENV = "GIT_SSL_CAINFO"
DEFAULT_CONNECTION_ID = "dags_git"
DEFAULT_BUNDLE_NAME = "dags"


@dataclass(frozen=True)
class GitBundle:
    """One git repository as Airflow's DAG bundle."""

    repo: str
    name: str = DEFAULT_BUNDLE_NAME
    tracking_ref: str = "main"
    subdir: str = ""
    refresh_interval: int = 60
    auth: str = "none"
    username: str = "git"
    known_hosts: str | None = None
    connection_id: str = DEFAULT_CONNECTION_ID
    ca_certificate: str | None = None  # PEM: the CA an HTTPS server's certificate chains to


def bundle_values(bundle: GitBundle) -> dict[str, Any]:
    """Chart values: the bundle is the DAG processor's only bundle (no dags-folder bundle)."""
    kwargs: dict[str, Any] = {
        "git_conn_id": bundle.connection_id,
        "tracking_ref": bundle.tracking_ref,
        "refresh_interval": bundle.refresh_interval,
    }
    if bundle.subdir:
        kwargs["subdir"] = bundle.subdir
    return {
        "dagProcessor": {
            "dagBundleConfigList": [{"name": bundle.name, "classpath": GIT_BUNDLE_CLASS, "kwargs": kwargs}]
        }
    }


def bundle_connection(bundle: GitBundle, token: str | None, ssh_key: str | None) -> str:
    """The `git` connection the bundle reads (JSON form): secret, it holds the token or the key."""
    conn: dict[str, Any] = {"conn_type": "git", "host": bundle.repo}
    if bundle.auth == "token":
        conn["login"] = bundle.username
        conn["password"] = token or ""
    elif bundle.auth == "ssh":
        conn["extra"] = {
            "private_key": ssh_key or "",
            "known_hosts_file": f"{SECRETS_DIR}/{KNOWN_HOSTS_FILE}",
            "strict_host_key_checking": "yes",
        }
    return json.dumps(conn, sort_keys=True)


def known_hosts_file(bundle: GitBundle | None) -> str | None:
    """The known hosts lines delivered as a file (SSH only)."""
    if bundle is None or bundle.auth != "ssh" or not bundle.known_hosts:
        return None
    return bundle.known_hosts.rstrip("\n") + "\n"


def ca_file(bundle: GitBundle | None) -> str | None:
    """The CA certificate git trusts for an HTTPS repository, delivered as a file."""
    if bundle is None or not bundle.ca_certificate:
        return None
    return bundle.ca_certificate.strip() + "\n"


def bundle_env(bundle: GitBundle | None) -> list[dict[str, str]]:
    """The environment every Airflow container and task pod gets for the bundle: git's CA file."""
    if ca_file(bundle) is None:
        return []
    return [{"name": CA_ENV, "value": f"{SECRETS_DIR}/{CA_FILE}"}]
