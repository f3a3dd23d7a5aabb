"""The registry of top-level stack keys: one declaration per key of `Pulumi.<stack>.yaml`.

Everything that lists the top-level keys comes from `STACK_KEYS`: the parser's known, secret and
object keys (components/platform/config.py), AirflowPlatform's argument names (component.py),
the stack file's JSON Schema (components/offline/stack_schema.py) and the table of top-level keys
in docs/configuration.md (`reference_table`). tests/test_stack_keys.py fails when one drifts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["object", "secret", "either", "confirm"]


@dataclass(frozen=True)
class StackKey:
    name: str  # in the stack file, without the project prefix
    kind: Kind  # object: a plain object; secret: set with --secret; either: plain or secret; confirm: plain text
    doc: str  # one line: the reference's table, the schema's and the package schema's description
    field: str = ""  # where the parsed value lands in StackConfig (default: `arg`)

    @property
    def arg(self) -> str:
        """AirflowPlatform's argument: the name in snake case (`taskImages` -> `task_images`)."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.name).lower()

    @property
    def target(self) -> str:
        return self.field or self.arg

    @property
    def secret(self) -> bool:
        return self.kind == "secret"

    @property
    def docstring(self) -> str:
        return f"Secret. {self.doc}" if self.secret else self.doc


STACK_KEYS: tuple[StackKey, ...] = (
    StackKey(
        "airflow",
        "object",
        "The `airflow` object: version, executor, namespace, DAGs, database, ingress, resources... (default: "
        "the laptop defaults of the configuration reference).",
    ),
    StackKey(
        "cluster",
        "object",
        "The `cluster` object: what the cluster already has (storage classes, namespaces...) and its "
        "`environment`, `laptop` or `production` (default).",
    ),
    StackKey("logs", "object", "The `logs` object: the shared logs volume, remote logging and retention."),
    StackKey(
        "spark",
        "object",
        "The `spark` object: when set, the Kubeflow spark-operator and its job namespaces are installed.",
    ),
    StackKey(
        "monitoring",
        "object",
        "The `monitoring` object: scrape annotations, or a kube-prometheus-stack install with "
        "ServiceMonitors, alert rules and a Grafana dashboard.",
    ),
    StackKey("teams", "object", "The `teams` list: one isolated task namespace per team for KubernetesPodOperator."),
    StackKey(
        "taskImages",
        "object",
        "The `taskImages` object: role -> pinned image, delivered as `k8s_image_<role>` Variables.",
    ),
    StackKey(
        "keda",
        "object",
        "The `keda` object: KEDA autoscaling of the Celery workers (and, with `install`, KEDA itself).",
    ),
    StackKey(
        "maintenance",
        "object",
        "The `maintenance` object: metadata database backups, `airflow db clean`, finished-pod cleanup.",
    ),
    StackKey(
        "identity",
        "object",
        "The `identity` object: the cloud identity (IRSA, GKE or Azure workload identity) of Airflow and Spark pods.",
    ),
    StackKey(
        "gitToken",
        "secret",
        "The token git-sync (and the git DAG bundle) uses for an HTTPS DAG repository.",
        field="secrets.git_token",
    ),
    StackKey(
        "gitSshKey",
        "secret",
        "The private key git-sync (and the git DAG bundle) uses for an SSH DAG repository.",
        field="secrets.git_ssh_key",
    ),
    StackKey(
        "databaseUrl",
        "secret",
        "An external Postgres URL (`postgresql://user:password@host:5432/db`) for the metadata database.",
        field="secrets.database_url",
    ),
    StackKey("logsConnection", "secret", "The remote-logging connection (URI or JSON) for `logs.remote`."),
    StackKey("teamSecrets", "secret", "Per team: Secret name -> key -> value, created in that team's namespace only."),
    StackKey(
        "connections",
        "secret",
        "The `connections` object: Airflow connections (id -> URI or JSON), delivered as a file.",
    ),
    StackKey("previousFernetKeys", "secret", "Fernet keys of an earlier installation: kept for decrypting only."),
    StackKey(
        "variables",
        "either",
        "The `variables` object: Airflow Variables (key -> text), delivered as a file; secret if you pass a secret.",
    ),
    StackKey(
        "identityChange",
        "confirm",
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
