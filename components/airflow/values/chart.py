# Longer than 600 lines: every chart value AirflowRelease sets, by chart section; the self-contained
# parts (secret files, Fernet, spread, rollout, jobs, maintenance) are modules of their own.
"""Which values we hand the Airflow chart: plain functions of typed config.

Nothing here touches Pulumi, so every decision is testable by rendering the real
chart. Secret *values* never appear in these values: only the names of Secrets
that AirflowRelease creates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ...core.airflow_user import AIRFLOW_UID as AIRFLOW_UID
from ...core.merge import deep_merge
from ...core.reader import ConfigError
from ..config.airflow import AirflowConfig, Component, DatabaseUrl, pg_url
from ..config.dag_bundles import bundle_values
from ..config.secret_names import SecretNames as SecretNames
from .fernet import fernet_values
from .secret_files import (
    ADMIN_PASSWORD_FILE,
    ENV_PATHS,
    PGBOUNCER_CA_PATH,
    SECRETS_DIR,
    SECRETS_VOLUME,
    TMP_VOLUME,
    WAIT_FOR_MIGRATIONS_ARGS,
    config_mount,
    database_ca_env,
    file_values,
    secret_files,
)
from .spread import spread_values

# Chart values key -> the name suffix of the ServiceAccount we pin for it.
SERVICE_ACCOUNT_KEYS: dict[str, str] = {
    "scheduler": "scheduler",
    "apiServer": "api-server",
    "webserver": "webserver",
    "triggerer": "triggerer",
    "dagProcessor": "dag-processor",
    "workers": "worker",
    "workers.kubernetes": "worker-kubernetes",
    "flower": "flower",
    "statsd": "statsd",
    "redis": "redis",
    "pgbouncer": "pgbouncer",
    "createUserJob": "create-user-job",
    "migrateDatabaseJob": "migrate-database-job",
    "cleanup": "cleanup",
}


def service_account_names(cfg: AirflowConfig) -> dict[str, str]:
    """The ServiceAccounts the chart creates for this config, by component."""
    runs = {
        "scheduler": True,
        "triggerer": cfg.triggerer.enabled,
        "dagProcessor": cfg.dag_processor.enabled,
        cfg.ui_component: True,
        # The chart creates the worker ServiceAccount for every pod-launching executor.
        "workers": cfg.uses_celery or cfg.uses_kubernetes,
        "redis": cfg.uses_celery,
        "flower": cfg.uses_celery and cfg.flower.enabled,
        "workers.kubernetes": cfg.uses_kubernetes,
        "statsd": cfg.statsd.enabled,
        "pgbouncer": cfg.database.pgbouncer.enabled,
        "createUserJob": cfg.admin.enabled,
    }
    return {key: f"{cfg.release_name}-{SERVICE_ACCOUNT_KEYS[key]}" for key, on in runs.items() if on}


def task_service_accounts(cfg: AirflowConfig) -> list[str]:
    """ServiceAccounts whose pods run Airflow tasks under the chosen executor(s)."""
    names = service_account_names(cfg)
    used = {"scheduler": cfg.uses_local, "workers": cfg.uses_celery, "workers.kubernetes": cfg.uses_kubernetes}
    return [names[key] for key, on in used.items() if on]


def task_pod_launcher_binding(cfg: AirflowConfig) -> dict[str, Any] | None:
    """A RoleBinding (metadata, roleRef, subjects) that lets KubernetesExecutor task pods
    launch pods in Airflow's namespace, or None when there is nothing to add.

    The chart binds its `<release>-pod-launcher-role` to the scheduler, Celery worker and
    triggerer accounts only (chart 1.21.0), not to `<release>-worker-kubernetes`, the
    account KubernetesExecutor task pods run as; a KubernetesPodOperator task there would
    get 403 on `pods create`. Skipped when the chart makes no such Role (`rbac.create` or
    `allowPodLaunching` false) or makes a ClusterRole (`multiNamespaceMode`).
    """
    extra = cfg.extra_values
    rbac = extra.get("rbac")
    if (
        not cfg.uses_kubernetes
        or (isinstance(rbac, dict) and rbac.get("create") is False)
        or extra.get("allowPodLaunching") is False
        or extra.get("multiNamespaceMode") is True
    ):
        return None
    r = cfg.release_name
    task_pods = service_account_names(cfg)["workers.kubernetes"]
    return {
        "metadata": {
            "name": f"{r}-task-pod-launcher",
            "namespace": cfg.namespace,
            "labels": {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "airflow", "release": r},
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{r}-pod-launcher-role"},
        "subjects": [{"kind": "ServiceAccount", "name": task_pods, "namespace": cfg.namespace}],
    }


def ui_service(cfg: AirflowConfig) -> tuple[str, int]:
    """The UI Service name and port (api-server on Airflow 3, webserver on 2)."""
    if cfg.major >= 3:
        return f"{cfg.release_name}-api-server", 8080
    return f"{cfg.release_name}-webserver", 8080


def _component_values(component: Component) -> dict[str, Any]:
    values: dict[str, Any] = {"replicas": component.replicas}
    resources = component.resources.as_values()
    if resources:
        values["resources"] = resources
    values["podDisruptionBudget"] = component.disruption.as_values()
    return values


def _set_sa(values: dict[str, Any], key: str, name: str) -> None:
    target = values
    for part in key.split("."):
        target = target.setdefault(part, {})
    target.setdefault("serviceAccount", {}).update({"create": True, "name": name})


def admin_job_args(cfg: AirflowConfig) -> list[str]:
    """`airflow users create` that reads the password from its mounted Secret file, never from values."""
    a = cfg.admin
    return [
        "bash",
        "-c",
        f'exec airflow users create "$@" --password "$(cat {SECRETS_DIR}/{ADMIN_PASSWORD_FILE})"',
        "--",
        "--role",
        "Admin",
        "--username",
        a.username,
        "--email",
        a.email,
        "--firstname",
        a.first_name,
        "--lastname",
        a.last_name,
    ]


def create_user_init_containers(cfg: AirflowConfig) -> list[dict[str, Any]]:
    """The create-user Job's wait for the schema: chart 1.21.0 gives its other Airflow pods a
    wait-for-airflow-migrations init container but not this Job (no `createUserJob.waitForMigrations`),
    so `airflow users create` ran before `airflow db migrate` had made its tables and its first
    attempt failed. The same container as the chart's, in the Job's own volumes."""
    _, config = config_mount(cfg)
    return [
        {
            "name": "wait-for-airflow-migrations",
            "image": cfg.image.reference,
            "imagePullPolicy": cfg.image.pull_policy,
            "args": list(WAIT_FOR_MIGRATIONS_ARGS),
            "env": [f.cmd_env() for f in secret_files(cfg, "createUserJob")] + database_ca_env(cfg),
            "securityContext": {**CONTAINER_SECURITY, **(READ_ONLY_ROOT if cfg.read_only_root else {})},
            "resources": {k: dict(v) for k, v in SIDECAR_RESOURCES["job"].items()},
            "volumeMounts": [
                config,
                {"name": SECRETS_VOLUME, "mountPath": SECRETS_DIR, "readOnly": True},
                {"name": TMP_VOLUME, "mountPath": "/tmp"},
            ],
        }
    ]


def chart_values(
    cfg: AirflowConfig, dags_claim: str | None = None, connections_secret: str | None = None
) -> dict[str, Any]:
    """The complete values for the Airflow chart: those of the typed settings, then `extraValues`.

    `dags_claim` is the PVC AirflowRelease created for hostPath DAGs (None otherwise);
    `connections_secret` the Secret holding connections.json/variables.json (None when the
    stack declares no connections or variables).
    """
    return merge_extra_values(typed_values(cfg, dags_claim, connections_secret), cfg.extra_values)


# The typed values, per (settings without extraValues, DAG claim, connections Secret). They are a
# pure function of these, and the stack's check, AirflowRelease's own check and its Release all
# ask for the same ones: a program run builds them once per Release (tests/test_chart_values_once.py).
_BUILT: list[tuple[tuple[AirflowConfig, str | None, str | None], dict[str, Any]]] = []
_KEPT = 8


def typed_values(
    cfg: AirflowConfig, dags_claim: str | None = None, connections_secret: str | None = None
) -> dict[str, Any]:
    """The chart values of the typed settings alone (no `extraValues`), a copy of their own."""
    key = (replace(cfg, extra_values={}), dags_claim, connections_secret)
    built = next((values for known, values in _BUILT if known == key), None)
    if built is None:
        built = build_values(cfg, dags_claim, connections_secret)
        _BUILT.insert(0, (key, built))
        del _BUILT[_KEPT:]
    return deep_merge(built, {})


def build_values(cfg: AirflowConfig, dags_claim: str | None, connections_secret: str | None) -> dict[str, Any]:
    """Build the typed values (`typed_values` keeps them for the program run)."""
    names = SecretNames(cfg.release_name)
    r = cfg.release_name
    v: dict[str, Any] = {
        "airflowVersion": cfg.version,
        "defaultAirflowTag": cfg.image.tag,
        "defaultAirflowRepository": cfg.image.repository,
        **({"defaultAirflowDigest": cfg.image.digest} if cfg.image.digest else {}),
        "images": {
            "airflow": {
                "repository": cfg.image.repository,
                "tag": cfg.image.tag,
                "pullPolicy": cfg.image.pull_policy,
                **({"digest": cfg.image.digest} if cfg.image.digest else {}),
            },
            # The chart names the task pod template's image by tag only; `<tag>@<digest>` pins it.
            **({"pod_template": {"tag": f"{cfg.image.tag}@{cfg.image.digest}"}} if cfg.image.digest else {}),
        },
        "executor": cfg.executor,
        "uid": AIRFLOW_UID,
        "gid": 0,
        # Every secret the chart would otherwise generate, by name (see SecretNames).
        "fernetKeySecretName": names.fernet_key,
        "data": {"metadataSecretName": names.metadata},
        # Jobs are immutable (apache/airflow#27561): a Job whose pod template changes (a new image)
        # can only be applied once the old one is gone, and the chart names its Jobs the same on
        # every upgrade. The migration is therefore AirflowRelease's own Job, named after its pod
        # template (jobs.migrate_job): kept after it finishes (its log readable), replaced by the
        # next image's. The create-user Job is deleted as soon as it finishes, so the next upgrade
        # creates it afresh at any time instead of failing while a TTL has not yet run out.
        "createUserJob": {"useHelmHooks": False, "ttlSecondsAfterFinished": 0},
        "migrateDatabaseJob": {"enabled": False, "useHelmHooks": False, "serviceAccount": {"create": False}},
        "config": {"celery": {"worker_concurrency": cfg.workers.concurrency}},
        "scheduler": _component_values(cfg.scheduler),
        "triggerer": {**_component_values(cfg.triggerer), "enabled": cfg.triggerer.enabled},
        "dagProcessor": {**_component_values(cfg.dag_processor), "enabled": cfg.dag_processor.enabled},
        "statsd": {"enabled": cfg.statsd.enabled},
        "redis": {"enabled": cfg.uses_celery},
    }
    ui = _component_values(cfg.api_server)
    if cfg.major >= 3:
        v["apiSecretKeySecretName"] = names.api_secret_key
        v["jwtSecretName"] = names.jwt_secret
        v["apiServer"] = {**ui, "enabled": True}
        v["webserver"] = {"enabled": False}
    else:
        v["webserverSecretKeySecretName"] = names.webserver_secret_key
        v["webserver"] = {**ui, "enabled": True}
        v["apiServer"] = {"enabled": False}
    if cfg.statsd.resources.as_values():
        v["statsd"]["resources"] = cfg.statsd.resources.as_values()

    # Celery: broker and Redis password by name; workers and Flower.
    v["data"]["brokerUrlSecretName"] = names.broker_url
    if cfg.uses_celery:
        v["redis"].update(
            {
                "passwordSecretName": names.redis_password,
                "persistence": {"enabled": True, "size": cfg.redis.persistence_size},
            }
        )
        if cfg.redis.storage_class:
            v["redis"]["persistence"]["storageClassName"] = cfg.redis.storage_class
        if cfg.redis.resources.as_values():
            v["redis"]["resources"] = cfg.redis.resources.as_values()
    workers = _component_values(cfg.workers)
    v["workers"] = {
        **workers,
        "celery": {"replicas": cfg.workers.replicas, "podDisruptionBudget": workers["podDisruptionBudget"]},
    }
    del v["workers"]["podDisruptionBudget"]
    # Flower behind basic auth: `[celery] flower_basic_auth` read from the Secret AirflowRelease
    # generates (secret_files.py), not the chart's `flower.secretName`, whose probes pass the
    # literal `$AIRFLOW__CELERY__FLOWER_BASIC_AUTH` to curl (an exec probe runs no shell): curl asks
    # for a password, every probe fails and Flower is restarted for ever (found on the real node).
    v["flower"] = {"enabled": cfg.flower.enabled and cfg.uses_celery}
    if cfg.flower.enabled and cfg.flower.resources.as_values():
        v["flower"]["resources"] = cfg.flower.resources.as_values()

    # Database: bundled Postgres with a generated password, or external behind PgBouncer.
    db = cfg.database
    if db.mode == "bundled":
        primary: dict[str, Any] = {
            "persistence": {"enabled": True, "size": db.storage_size},
            # Bitnami's image runs as 1001; say so at pod level too, with RuntimeDefault seccomp.
            "podSecurityContext": {
                "enabled": True,
                "fsGroup": 1001,
                "runAsUser": 1001,
                "runAsNonRoot": True,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
        }
        if db.storage_class:
            primary["persistence"]["storageClass"] = db.storage_class
        v["postgresql"] = {
            "enabled": True,
            "auth": {"enablePostgresUser": True, "existingSecret": names.postgres, "postgresPassword": ""},
            "primary": primary,
        }
    else:
        v["postgresql"] = {"enabled": False}
    if db.pgbouncer.enabled:
        v["pgbouncer"] = {
            "enabled": True,
            "replicas": db.pgbouncer.replicas,
            "maxClientConn": db.pgbouncer.max_client_conn,
            "metadataPoolSize": db.pgbouncer.metadata_pool_size,
            "resultBackendPoolSize": db.pgbouncer.result_backend_pool_size,
            "configSecretName": names.pgbouncer_config,
            "metricsExporterSidecar": {"statsSecretName": names.pgbouncer_stats},
            "podDisruptionBudget": db.pgbouncer.disruption.as_values(),
        }
        if db.pgbouncer.resources.as_values():
            v["pgbouncer"]["resources"] = db.pgbouncer.resources.as_values()
    else:
        v["pgbouncer"] = {"enabled": False}

    # The admin user: password from our Secret as a file (see secret_files.py), never admin/admin.
    if cfg.admin.enabled:
        v["createUserJob"].update(
            {
                "enabled": True,
                "args": admin_job_args(cfg),
                "extraInitContainers": create_user_init_containers(cfg),
                "defaultUser": {
                    "username": cfg.admin.username,
                    "email": cfg.admin.email,
                    "firstName": cfg.admin.first_name,
                    "lastName": cfg.admin.last_name,
                    "password": "",
                },
            }
        )
    else:
        v["createUserJob"]["enabled"] = False

    # DAG delivery.
    dags = cfg.dags
    dv: dict[str, Any] = {"gitSync": {"enabled": False}, "persistence": {"enabled": False}}
    if dags.mount_path:
        dv["mountPath"] = dags.mount_path
    if dags.git_sync is not None:
        g = dags.git_sync
        git: dict[str, Any] = {
            "enabled": True,
            "repo": g.repo,
            "branch": g.branch,
            "ref": g.branch,
            "rev": g.rev,
            "subPath": g.sub_path,
            "depth": g.depth,
            "period": g.period,
        }
        if g.auth == "token":
            git["credentialsSecret"] = names.git_credentials
        elif g.auth == "ssh":
            git["sshKeySecret"] = names.git_ssh
            git["knownHosts"] = g.known_hosts
        dv["gitSync"] = git
    elif dags.host_path is not None:
        dv["persistence"] = {"enabled": True, "existingClaim": dags_claim or f"{r}-dags"}
    elif dags.claim is not None:
        dv["persistence"] = {"enabled": True, "existingClaim": dags.claim.claim_name}
        if dags.claim.sub_path:
            dv["persistence"]["subPath"] = dags.claim.sub_path
    v["dags"] = dv
    if dags.git_bundle is not None:
        v = deep_merge(v, bundle_values(dags.git_bundle))

    task_pods = cfg.task_pods.as_values()
    if "securityContexts" in task_pods:
        task_pods["securityContexts"]["pod"] = {**POD_SECURITY, **task_pods["securityContexts"]["pod"]}
    if task_pods:
        v["workers"]["kubernetes"] = task_pods

    v = deep_merge(v, file_values(cfg, connections_secret, task_pods))
    v = deep_merge(v, security_values(cfg))
    v = deep_merge(v, startup_values())
    v = deep_merge(v, shutdown_values(cfg))
    v = deep_merge(v, worker_probe_values(cfg))
    v = deep_merge(v, ingress_values(cfg))
    v = deep_merge(v, network_values(cfg))
    v = deep_merge(deep_merge(v, spread_values(cfg)), fernet_values(cfg))

    for key, name in service_account_names(cfg).items():
        _set_sa(v, key, name)
    return v


def merge_extra_values(values: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extraValues` merged last; extra `env` entries (global, or of a component) are added to
    ours, never put in their place: ours point Airflow at its secret files."""
    merged = deep_merge(values, extra)
    for path in ENV_PATHS:
        ours, theirs, target = values, extra, merged
        *parents, leaf = path.split(".")
        for part in parents:
            ours, theirs, target = ours.get(part, {}), theirs.get(part, {}), target.get(part, {})
            if not isinstance(theirs, dict):
                break
        else:
            if isinstance(theirs.get(leaf), list) and leaf in ours:
                names = {e["name"] for e in ours[leaf]}
                target[leaf] = ours[leaf] + [
                    e for e in theirs[leaf] if not (isinstance(e, dict) and e.get("name") in names)
                ]
    return merged


# ---------------------------------------------------------------------------
# Connection strings and PgBouncer files, built from the database target.


def database_target(cfg: AirflowConfig, external: DatabaseUrl | None, bundled_password: str) -> DatabaseUrl:
    """Where the metadata database really is: the external URL or the bundled Postgres."""
    if external is not None:
        return external
    return DatabaseUrl(
        user="postgres",
        password=bundled_password,
        host=f"{cfg.release_name}-postgresql.{cfg.namespace}",
        port=5432,
        database="postgres",
        sslmode="disable",
    )


PGBOUNCER_PORT = 6543


def metadata_connection(cfg: AirflowConfig, target: DatabaseUrl) -> str:
    """The SQLAlchemy URL Airflow uses: through PgBouncer when it is on, as the chart would build it."""
    return _through_pgbouncer(cfg, target).sqlalchemy()


def metadata_async_connection(cfg: AirflowConfig, target: DatabaseUrl) -> str:
    """The URL of Airflow's async engine (`[database] sql_alchemy_conn_async`, Airflow 3): the same
    database as `metadata_connection`, for asyncpg (see config.asyncpg_url)."""
    return _through_pgbouncer(cfg, target).asyncpg()


def _through_pgbouncer(cfg: AirflowConfig, target: DatabaseUrl) -> DatabaseUrl:
    """Where Airflow connects: PgBouncer's metadata pool (plain TCP inside the namespace) when it is on."""
    if not cfg.database.pgbouncer.enabled:
        return target
    return replace(
        target,
        host=f"{cfg.release_name}-pgbouncer.{cfg.namespace}",
        port=PGBOUNCER_PORT,
        database=f"{cfg.release_name}-metadata",
        sslmode="disable",
    )


# PgBouncer keeps this many protocol-level named prepared statements per server connection (1.21+;
# off by default before 1.24, and the chart's image is 1.23.1). Airflow's async engine (asyncpg)
# prepares named statements; in transaction pooling they would otherwise meet a server connection
# that lacks them, or already has one of the same name. psycopg2 (the sync engine) prepares none.
PGBOUNCER_PREPARED_STATEMENTS = 100


def pgbouncer_ini(cfg: AirflowConfig, target: DatabaseUrl) -> str:
    """pgbouncer.ini with the same pools and settings the chart's own template writes, and the
    prepared statements Airflow's async engine needs (PGBOUNCER_PREPARED_STATEMENTS)."""
    p = cfg.database.pgbouncer
    r = cfg.release_name
    server_tls = "disable" if target.sslmode == "disable" else target.sslmode
    return (
        "[databases]\n"
        f"{r}-metadata = host={target.host} dbname={target.database} port={target.port} "
        f"pool_size={p.metadata_pool_size}\n"
        f"{r}-result-backend = host={target.host} dbname={target.database} port={target.port} "
        f"pool_size={p.result_backend_pool_size}\n"
        "\n[pgbouncer]\n"
        "pool_mode = transaction\n"
        f"listen_port = {PGBOUNCER_PORT}\n"
        "listen_addr = *\n"
        "auth_type = scram-sha-256\n"
        "auth_file = /etc/pgbouncer/users.txt\n"
        f"stats_users = {target.user}\n"
        "ignore_startup_parameters = extra_float_digits\n"
        f"max_client_conn = {p.max_client_conn}\n"
        f"max_prepared_statements = {PGBOUNCER_PREPARED_STATEMENTS}\n"
        "verbose = 0\n"
        "log_disconnections = 0\n"
        "log_connections = 0\n"
        "\n"
        f"server_tls_sslmode = {server_tls}\n"
        "server_tls_ciphers = normal\n"
        + (f"server_tls_ca_file = {PGBOUNCER_CA_PATH}\n" if cfg.database.ca_certificate is not None else "")
    )


def pgbouncer_users(target: DatabaseUrl) -> str:
    def quote(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'

    return f"{quote(target.user)} {quote(target.password)}\n"


def pgbouncer_stats_connection(target: DatabaseUrl) -> str:
    return pg_url(target.user, target.password, f"127.0.0.1:{PGBOUNCER_PORT}", "pgbouncer", "disable")


def broker_url(cfg: AirflowConfig, redis_password: str) -> str:
    from urllib.parse import quote

    return f"redis://:{quote(redis_password, safe='')}@{cfg.release_name}-redis:6379/0"


# ---------------------------------------------------------------------------
# Connections and variables as code.

_ENV_ID = re.compile(r"^[A-Za-z0-9_]+$")


def airflow_environment(connections: Mapping[str, Any], variables: Mapping[str, Any]) -> dict[str, Any]:
    """Connections and variables keyed `AIRFLOW_CONN_<ID>` / `AIRFLOW_VAR_<KEY>`: the names under
    which ids must be unique (Airflow's own lookups are case-insensitive through the environment,
    so two ids differing only in case would be ambiguous). `split_environment` turns them back
    into the connections.json / variables.json the pods read.
    """
    env: dict[str, Any] = {}
    for prefix, entries in ((CONN_PREFIX, connections), (VAR_PREFIX, variables)):
        for key, value in entries.items():
            arg = "connections" if prefix == CONN_PREFIX else "variables"
            if not isinstance(key, str) or not _ENV_ID.match(key):
                raise ConfigError(f"{arg}.{key}", key, "use letters, digits and underscores only.")
            name = prefix + key.upper()
            if name in env:
                raise ConfigError(f"{arg}.{key}", key, f"declared twice (as {name}: ids are upper-cased).")
            env[name] = (key, value)
    return env


CONN_PREFIX = "AIRFLOW_CONN_"
VAR_PREFIX = "AIRFLOW_VAR_"


def split_environment(environment: Mapping[str, tuple[str, str]]) -> tuple[dict[str, str], dict[str, str]]:
    """(connections, variables) by their ids as declared, from `airflow_environment`."""
    conns = {k: v for name, (k, v) in environment.items() if name.startswith(CONN_PREFIX)}
    variables = {k: v for name, (k, v) in environment.items() if name.startswith(VAR_PREFIX)}
    return conns, variables


# ---------------------------------------------------------------------------
# Pod security: non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp.

POD_SECURITY: dict[str, Any] = {
    "runAsUser": AIRFLOW_UID,
    "runAsGroup": 0,
    "fsGroup": 0,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
# The PgBouncer exporter's probes are `pgbouncer_exporter health` run by exec in a container limited
# to 100m CPU: the exec alone (runc in that cgroup) took 5.4 s on the real node while a prod-shaped
# stack started (load 16 on two cores), so the chart's 1 s timeout failed them, took every PgBouncer
# out of its Service and the api-servers crashed on "connection refused".
EXPORTER_PROBES = {probe: {"timeoutSeconds": 10} for probe in ("livenessProbe", "readinessProbe")}
# The user name of Flower's basic auth (the password is generated; SecretNames.flower).
FLOWER_USER = "flower"
# Images whose root filesystem can be read-only (they write only to mounted volumes).
READ_ONLY_ROOT = {"readOnlyRootFilesystem": True}
# The official Redis image runs under any uid that owns its data volume (fsGroup); a high
# uid keeps it clear of host users.
REDIS_UID = 10001
# Every image the chart uses: `airflow.image.pullPolicy` applies to all of them.
CHART_IMAGES = ("airflow", "pod_template", "flower", "statsd", "redis", "pgbouncer", "pgbouncerExporter", "gitSync")
# Requests and limits of the containers the typed config does not size (sidecars, jobs).
SIDECAR_RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "logGroomer": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "128Mi"}},
    "gitSync": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "256Mi"}},
    "exporter": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
    "statsd": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
    "job": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
}


# How long an Airflow server may take to start before its startup probe restarts it: five
# minutes (30 x 10 s) instead of the chart's one (6 x 10 s). Airflow's import alone took 70 s in
# a task pod on a 2-core node under load (a laptop cluster starting everything at once), and the
# scheduler's probe command imports Airflow too; past the minute the kubelet restarted the
# container, which then began again from zero. The startup probe passes as soon as the process
# answers, so a healthy start is not slower, and once started the liveness probes (unchanged)
# restart a hung process as quickly as before.
STARTUP_PROBE = {"periodSeconds": 10, "failureThreshold": 30}
# Flower too: on the real node (node-prod) it imports Airflow and Celery as slowly and its
# one-minute startup probe restarted it twice before it answered.
STARTUP_PROBED = ("scheduler", "apiServer", "webserver", "flower")


def startup_values() -> dict[str, Any]:
    return {component: {"startupProbe": dict(STARTUP_PROBE)} for component in STARTUP_PROBED}


# The Celery worker's liveness probe: `celery inspect ping` to this worker's node name, as the
# chart's probe does, but from a bare Celery app that reads the broker URL from its file instead of
# Airflow's (the chart's command imports Airflow: seconds of CPU each time, so it ran once a minute
# and restarted a worker after five failures, about five minutes). After Redis restarts, kombu 5.6's
# Redis transport can leave a worker connected ("Connected to redis://...") whose event loop
# polls neither the task queue nor its control queue: the task Airflow sends next waits in Redis
# and no ping is answered, until the container restarts (kombu's `_on_disconnect` drops the
# poller's tick callback: celery/kombu#2492, #2630, released in kombu 5.7.0, which Celery 5.6 and
# the Celery provider are not yet proven on). This probe costs about 0.4 s of CPU, so it runs every
# 20 s and restarts such a worker within about 75 s (3 x 20 s + the 15 s timeout); the worker's
# first 180 s are its start (Airflow's import under load). The alarm ends the probe if the broker
# hangs; a refused broker fails it at once.
WORKER_PING = (
    "import signal, socket, sys\n"
    "signal.alarm(10)\n"
    "from celery import Celery\n"
    "url = open(sys.argv[1]).read().strip()\n"
    "ping = Celery(broker=url).control.ping(destination=['celery@' + socket.gethostname()], timeout=5)\n"
    "sys.exit(0 if ping else 1)\n"
)
WORKER_LIVENESS = {"initialDelaySeconds": 180, "periodSeconds": 20, "failureThreshold": 3, "timeoutSeconds": 15}


def worker_probe_values(cfg: AirflowConfig) -> dict[str, Any]:
    if not cfg.uses_celery:
        return {}
    broker = next(f for f in secret_files(cfg, "workers") if f.option == "AIRFLOW__CELERY__BROKER_URL")
    probe = {"enabled": True, **WORKER_LIVENESS, "command": ["python", "-c", WORKER_PING, broker.path]}
    return {"workers": {"livenessProbe": probe}}


# The UI server leaves its Service before it stops. Deleting a pod (a rollout, a drain) sends its
# containers SIGTERM and takes it out of the Service's endpoints at the same moment, and kube-proxy
# on every node drops it from its rules a little later: a server that stops listening at once
# refuses the requests sent meanwhile (the chart sets no preStop hook). node-prod's `rollout` part
# counts the failed requests to the api-server's Service during an image rollout (docs/e2e.md).
# The preStop hook holds SIGTERM back this long, within the pod's 30 s grace period.
UI_DRAIN_SECONDS = 10


def shutdown_values(cfg: AirflowConfig) -> dict[str, Any]:
    hook = {"preStop": {"exec": {"command": ["sleep", str(UI_DRAIN_SECONDS)]}}}
    return {cfg.ui_component: {"containerLifecycleHooks": hook}}


def _pod(uid: int, gid: int) -> dict[str, Any]:
    return {
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": gid,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def security_values(cfg: AirflowConfig) -> dict[str, Any]:
    """Every pod the chart renders runs hardened.

    Every container runs with a read-only root filesystem: StatsD, Redis and the PgBouncer
    exporter always (they write only to their volumes); the Airflow image's containers, git-sync
    and PgBouncer unless `airflow.readOnlyRootFilesystem` is false, with the emptyDirs
    secret_files.py mounts where they do write (/tmp; Airflow's logs, DAGs and config are volumes).
    """
    ro = READ_ONLY_ROOT if cfg.read_only_root else {}
    groomer = {"logGroomerSidecar": {"resources": dict(SIDECAR_RESOURCES["logGroomer"])}}
    values: dict[str, Any] = {
        "images": {image: {"pullPolicy": cfg.image.pull_policy} for image in CHART_IMAGES},
        "scheduler": {
            **groomer,
            # The scheduler launches task pods: it gets an explicitly mounted, projected token
            # instead of the automatic one.
            "serviceAccount": {"automountServiceAccountToken": False, "serviceAccountTokenVolume": {"enabled": True}},
        },
        "triggerer": dict(groomer),
        "dagProcessor": {**groomer, "serviceAccount": {"automountServiceAccountToken": False}},
        "workers": {"celery": dict(groomer)},
        "flower": {"serviceAccount": {"automountServiceAccountToken": False}},
        "createUserJob": {
            "resources": dict(SIDECAR_RESOURCES["job"]),
            "serviceAccount": {"automountServiceAccountToken": False},
        },
        "securityContexts": {"pod": dict(POD_SECURITY), "containers": {**CONTAINER_SECURITY, **ro}},
        "statsd": {
            "resources": cfg.statsd.resources.as_values() or dict(SIDECAR_RESOURCES["statsd"]),
            "serviceAccount": {"automountServiceAccountToken": False},
            "securityContexts": {"pod": _pod(65534, 65534), "container": {**CONTAINER_SECURITY, **READ_ONLY_ROOT}},
        },
        "redis": {
            "uid": REDIS_UID,
            "serviceAccount": {"automountServiceAccountToken": False},
            "securityContexts": {
                "pod": _pod(REDIS_UID, REDIS_UID),
                "container": {**CONTAINER_SECURITY, **READ_ONLY_ROOT},
            },
        },
        "pgbouncer": {
            "uid": 65534,
            "securityContexts": {"pod": _pod(65534, 65534), "container": {**CONTAINER_SECURITY, **ro}},
            "serviceAccount": {"automountServiceAccountToken": False},
            "metricsExporterSidecar": {
                "resources": dict(SIDECAR_RESOURCES["exporter"]),
                "securityContexts": {"container": {**CONTAINER_SECURITY, **READ_ONLY_ROOT}},
                **EXPORTER_PROBES,
            },
        },
    }
    if cfg.dags.git_sync is not None:
        values["dags"] = {
            "gitSync": {
                "resources": dict(SIDECAR_RESOURCES["gitSync"]),
                "securityContexts": {"container": {**CONTAINER_SECURITY, **ro, "runAsUser": 65533}},
                # The chart's recommended probe: git-sync's own HTTP endpoint, 200 once the
                # first sync has completed (the chart's startup probe already uses it).
                "recommendedProbeSetting": True,
                "livenessProbe": {"enabled": True},
            }
        }
    return values


# ---------------------------------------------------------------------------
# Ingress


def ingress_annotations(cfg: AirflowConfig) -> dict[str, str]:
    ing = cfg.ingress
    notes: dict[str, str] = {}
    if ing.tls_issuer:
        key = "cert-manager.io/cluster-issuer" if ing.tls_issuer_kind == "ClusterIssuer" else "cert-manager.io/issuer"
        notes[key] = ing.tls_issuer
    if ing.auth is not None:
        notes["nginx.ingress.kubernetes.io/auth-url"] = ing.auth.url
        if ing.auth.signin:
            notes["nginx.ingress.kubernetes.io/auth-signin"] = ing.auth.signin
        if ing.auth.response_headers:
            notes["nginx.ingress.kubernetes.io/auth-response-headers"] = ",".join(ing.auth.response_headers)
    if ing.tls:
        notes["nginx.ingress.kubernetes.io/force-ssl-redirect"] = "true"
    return {**notes, **ing.annotations}


def tls_secret_name(cfg: AirflowConfig) -> str | None:
    ing = cfg.ingress
    if ing.tls_secret:
        return ing.tls_secret
    if ing.tls_issuer:
        return f"{cfg.release_name}-ui-tls"
    return None


def ingress_values(cfg: AirflowConfig) -> dict[str, Any]:
    ing = cfg.ingress
    if not ing.enabled:
        return {}
    tls = {"enabled": ing.tls, "secretName": tls_secret_name(cfg) or ""}
    common = {"annotations": ingress_annotations(cfg), "pathType": "Prefix", "tls": tls}
    if ing.class_name:
        common["ingressClassName"] = ing.class_name
    key = "apiServer" if cfg.major >= 3 else "web"
    values: dict[str, Any] = {"ingress": {key: {"enabled": True, "host": ing.host or "", "path": ing.path, **common}}}
    if cfg.flower.enabled:
        values["ingress"]["flower"] = {
            "enabled": True,
            "host": ing.flower_host or ing.host or "",
            "path": ing.flower_path,
            **common,
        }
    return values


# ---------------------------------------------------------------------------
# NetworkPolicies
#
# The chart's policies admit too little: with `networkPolicies.enabled` and nothing else,
# its api-server policy admits no one (task pods on Airflow 3 cannot reach the execution
# API; the ingress controller cannot reach the UI), Prometheus cannot scrape StatsD, and the
# UI cannot fetch task logs from workers and the triggerer. These values and the
# `log_serving_policy` below add exactly those flows.

TASK_NAMESPACE_LABEL = "airflow-k8s/tasks-for"


def _ns(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def network_values(cfg: AirflowConfig) -> dict[str, Any]:
    net = cfg.network_policies
    if not net.enabled:
        return {"networkPolicies": {"enabled": False}}
    r = cfg.release_name
    ui_from: list[dict[str, Any]] = [
        {"podSelector": {"matchLabels": {"release": r}}},
        {"namespaceSelector": {"matchLabels": {TASK_NAMESPACE_LABEL: r}}},
    ]
    if cfg.ingress.enabled:
        ui_from.append(_ns(cfg.ingress.controller_namespace))
    ui_from += [_ns(n) for n in net.ui_namespaces]
    metrics_from = [_ns(n) for n in net.metrics_namespaces]
    ui_key = "apiServer" if cfg.major >= 3 else "webserver"
    values: dict[str, Any] = {
        "networkPolicies": {"enabled": True},
        ui_key: {"networkPolicy": {"ingress": {"from": ui_from}}},
    }
    if metrics_from:
        values["statsd"] = {"extraNetworkPolicies": metrics_from}
        values["pgbouncer"] = {"extraNetworkPolicies": metrics_from}
    if cfg.flower.enabled:
        flower_from = [_ns(cfg.ingress.controller_namespace)] if cfg.ingress.enabled else []
        flower_from += [_ns(n) for n in net.ui_namespaces]
        if flower_from:
            values["flower"] = {"networkPolicy": {"ingress": {"from": flower_from}}}
    return values


WORKER_LOGS_PORT = 8793
TRIGGERER_LOGS_PORT = 8794


def log_serving_policy(cfg: AirflowConfig) -> dict[str, Any] | None:
    """Let the UI fetch live task logs from the pods that serve them (the chart admits only
    a `webserver` component, which Airflow 3 does not have)."""
    if not cfg.network_policies.enabled:
        return None
    r = cfg.release_name
    ui = "api-server" if cfg.major >= 3 else "webserver"
    return {
        "podSelector": {
            "matchExpressions": [
                {"key": "release", "operator": "In", "values": [r]},
                {"key": "component", "operator": "In", "values": ["worker", "triggerer", "scheduler"]},
            ]
        },
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [{"podSelector": {"matchLabels": {"component": ui, "release": r}}}],
                "ports": [
                    {"protocol": "TCP", "port": WORKER_LOGS_PORT},
                    {"protocol": "TCP", "port": TRIGGERER_LOGS_PORT},
                ],
            }
        ],
    }


def airflow_api_port(cfg: AirflowConfig) -> int | None:
    """The port task pods use to reach Airflow (Airflow 3's execution API), or None on Airflow 2."""
    return 8080 if cfg.major >= 3 else None
