"""The registry of top-level stack keys: one declaration per key of `Pulumi.<stack>.yaml`.

Everything that lists the top-level keys comes from `STACK_KEYS`: the parser's known, secret and
object keys (components/platform/config.py), AirflowPlatform's argument names (component.py),
the stack file's JSON Schema (components/offline/stack_schema.py) and the table of top-level keys
in docs/configuration.md (`reference_table`). tests/test_stack_keys.py fails when one drifts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["object", "secret", "either", "confirm"]


@dataclass(frozen=True)
class StackKey:
    name: str  # in the stack file, without the project prefix
    arg: str  # AirflowPlatform's argument
    kind: Kind  # object: a plain object; secret: set with --secret; either: plain or secret; confirm: plain text
    field: str  # where the parsed value lands in StackConfig
    doc: str  # one line: AirflowPlatformArgs' docstring, the reference's table, the schema's description

    @property
    def secret(self) -> bool:
        return self.kind == "secret"

    @property
    def docstring(self) -> str:
        return f"Secret. {self.doc}" if self.secret else self.doc


STACK_KEYS: tuple[StackKey, ...] = (
    StackKey(
        "airflow",
        "airflow",
        "object",
        "airflow",
        "The `airflow` object: version, executor, namespace, DAGs, database, ingress, resources... "
        "(default: the laptop defaults of the configuration reference).",
    ),
    StackKey(
        "cluster",
        "cluster",
        "object",
        "cluster",
        "The `cluster` object: what the cluster already has (storage classes, namespaces...) and its "
        "`environment`, `laptop` or `production` (default).",
    ),
    StackKey(
        "logs", "logs", "object", "logs", "The `logs` object: the shared logs volume, remote logging and retention."
    ),
    StackKey(
        "spark",
        "spark",
        "object",
        "spark",
        "The `spark` object: when set, the Kubeflow spark-operator and its job namespaces are installed.",
    ),
    StackKey(
        "monitoring",
        "monitoring",
        "object",
        "monitoring",
        "The `monitoring` object: scrape annotations, or a kube-prometheus-stack install with "
        "ServiceMonitors, alert rules and a Grafana dashboard.",
    ),
    StackKey(
        "teams",
        "teams",
        "object",
        "teams",
        "The `teams` list: one isolated task namespace per team for KubernetesPodOperator.",
    ),
    StackKey(
        "taskImages",
        "task_images",
        "object",
        "task_images",
        "The `taskImages` object: role -> pinned image, delivered as `k8s_image_<role>` Variables.",
    ),
    StackKey(
        "keda",
        "keda",
        "object",
        "keda",
        "The `keda` object: KEDA autoscaling of the Celery workers (and, with `install`, KEDA itself).",
    ),
    StackKey(
        "maintenance",
        "maintenance",
        "object",
        "maintenance",
        "The `maintenance` object: metadata database backups, `airflow db clean`, finished-pod cleanup.",
    ),
    StackKey(
        "identity",
        "identity",
        "object",
        "identity",
        "The `identity` object: the cloud identity (IRSA, GKE or Azure workload identity) of Airflow and Spark pods.",
    ),
    StackKey(
        "gitToken",
        "git_token",
        "secret",
        "secrets.git_token",
        "The token git-sync (and the git DAG bundle) uses for an HTTPS DAG repository.",
    ),
    StackKey(
        "gitSshKey",
        "git_ssh_key",
        "secret",
        "secrets.git_ssh_key",
        "The private key git-sync (and the git DAG bundle) uses for an SSH DAG repository.",
    ),
    StackKey(
        "databaseUrl",
        "database_url",
        "secret",
        "secrets.database_url",
        "An external Postgres URL (`postgresql://user:password@host:5432/db`) for the metadata database.",
    ),
    StackKey(
        "logsConnection",
        "logs_connection",
        "secret",
        "logs_connection",
        "The remote-logging connection (URI or JSON) for `logs.remote`.",
    ),
    StackKey(
        "teamSecrets",
        "team_secrets",
        "secret",
        "team_secrets",
        "Per team: Secret name -> key -> value, created in that team's namespace only.",
    ),
    StackKey(
        "connections",
        "connections",
        "secret",
        "connections",
        "The `connections` object: Airflow connections (id -> URI or JSON), delivered as a file.",
    ),
    StackKey(
        "previousFernetKeys",
        "previous_fernet_keys",
        "secret",
        "previous_fernet_keys",
        "Fernet keys of an earlier installation: kept for decrypting only.",
    ),
    StackKey(
        "variables",
        "variables",
        "either",
        "variables",
        "The `variables` object: Airflow Variables (key -> text), delivered as a file; secret if you pass a secret.",
    ),
    StackKey(
        "identityChange",
        "identity_change",
        "confirm",
        "identity_change",
        "`<old namespace>/<old release name>`: confirms, for one `up`, a change of release name or namespace "
        "(or the drop of a claim holding data) that the platform otherwise refuses because it loses data.",
    ),
)

BY_NAME = {key.name: key for key in STACK_KEYS}


def names(*kinds: Kind) -> tuple[str, ...]:
    return tuple(key.name for key in STACK_KEYS if key.kind in kinds)


def reference_table() -> str:
    """The table of top-level keys in docs/configuration.md (between its markers)."""
    shown = {"object": "plain", "secret": "secret (`--secret`)", "either": "plain or secret", "confirm": "plain"}
    rows = [f"| `{k.name}` | {shown[k.kind]} | `{k.arg}` | {k.doc} |" for k in STACK_KEYS]
    return "\n".join(["| key | set | AirflowPlatform argument | what |", "| --- | --- | --- | --- |", *rows]) + "\n"
