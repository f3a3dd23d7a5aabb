"""Airflow's secrets as files, and a read-only root filesystem with the writable mounts Airflow needs.

The chart hands Airflow its Fernet key, database URL, broker URL and API/JWT secrets as
`secretKeyRef` environment variables by default. An environment variable is inherited by
every process the container starts (every task, every `BashOperator` child), shows up in
`/proc/<pid>/environ` and in crash reports; a file can be read only by who opens it.
AirflowRelease therefore:

- switches the chart's built-in secret variables off (`enableBuiltInSecretEnvVars`) and
  mounts the same Secrets, key by key, as files in `SECRETS_DIR` (one projected volume per
  pod, holding only the files that component needs: the JWT secret only where the chart
  gives it, the admin password only in the create-user Job);
- points Airflow at them with `AIRFLOW__<SECTION>__<KEY>_CMD=cat <file>`, which Airflow
  honours for its sensitive options (all of the ones used here);
- delivers connections and variables as `connections.json` / `variables.json` read by
  Airflow's own `LocalFilesystemBackend` (`[secrets] backend`; workers fall back to it),
  which Airflow consults before environment variables and the database.

Read-only root: the containers running the Airflow image get `readOnlyRootFilesystem` with an
emptyDir at /tmp (Python's temporary files, the DAG bundle cache, Celery and gunicorn); git-sync
gets its own emptyDir for its home (/tmp in its image), PgBouncer one for its unix socket.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...core.reader import ConfigError
from ..config.dag_bundles import bundle_env
from ..config.secret_names import SecretNames
from ..config.secret_paths import (  # re-exported: the values and their file names, one import
    ADMIN_PASSWORD_FILE as ADMIN_PASSWORD_FILE,
    AIRFLOW_COMPONENTS as AIRFLOW_COMPONENTS,
    AIRFLOW_CONFIG_PATH as AIRFLOW_CONFIG_PATH,
    ASYNC_CONN_ENV as ASYNC_CONN_ENV,
    CONFIG_VOLUME as CONFIG_VOLUME,
    CONNECTIONS_FILE as CONNECTIONS_FILE,
    DATABASE_CA_ENV as DATABASE_CA_ENV,
    DATABASE_CA_FILE as DATABASE_CA_FILE,
    DATABASE_CA_KEY as DATABASE_CA_KEY,
    ENV_PATHS as ENV_PATHS,
    FILE_ONLY_ENV as FILE_ONLY_ENV,
    GIT_SYNC_TMP_VOLUME as GIT_SYNC_TMP_VOLUME,
    JWT_COMPONENTS as JWT_COMPONENTS,
    LOCAL_FILESYSTEM_BACKEND as LOCAL_FILESYSTEM_BACKEND,
    METADATA_ASYNC_KEY as METADATA_ASYNC_KEY,
    PGBOUNCER_TMP_VOLUME as PGBOUNCER_TMP_VOLUME,
    REPLACED_BUILT_IN_ENV as REPLACED_BUILT_IN_ENV,
    SECRETS_DIR as SECRETS_DIR,
    SECRETS_VOLUME as SECRETS_VOLUME,
    TMP_VOLUME as TMP_VOLUME,
    VARIABLES_FILE as VARIABLES_FILE,
    VOLUME_NAMES as VOLUME_NAMES,
)

if TYPE_CHECKING:
    from ...logs.config import LogsConfig
    from ..config.airflow import AirflowConfig
    from ..config.dag_bundles import GitBundle


@dataclass(frozen=True)
class SecretFile:
    """One key of one Secret, mounted as `SECRETS_DIR/<file>` and read by Airflow through `<option>_CMD`."""

    option: str
    secret: str
    key: str
    file: str

    @property
    def path(self) -> str:
        return f"{SECRETS_DIR}/{self.file}"

    def cmd_env(self) -> dict[str, str]:
        return {"name": f"{self.option}_CMD", "value": f"cat {self.path}"}


def secret_files(cfg: AirflowConfig, component: str) -> list[SecretFile]:
    """The Airflow options a component reads from files, in a stable order."""
    names = SecretNames(cfg.release_name)
    files = [
        SecretFile("AIRFLOW__CORE__FERNET_KEY", names.fernet_key, "fernet-key", "fernet-key"),
        SecretFile("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", names.metadata, "connection", "sql-alchemy-conn"),
    ]
    if cfg.major >= 3:
        # The async engine's own URL: the one Airflow would derive keeps `sslmode`, which asyncpg refuses.
        files.append(SecretFile(ASYNC_CONN_ENV, names.metadata_async, METADATA_ASYNC_KEY, "sql-alchemy-conn-async"))
        files.append(SecretFile("AIRFLOW__API__SECRET_KEY", names.api_secret_key, "api-secret-key", "api-secret-key"))
        if component in JWT_COMPONENTS:
            files.append(SecretFile("AIRFLOW__API_AUTH__JWT_SECRET", names.jwt_secret, "jwt-secret", "jwt-secret"))
    else:
        files.append(
            SecretFile(
                "AIRFLOW__WEBSERVER__SECRET_KEY",
                names.webserver_secret_key,
                "webserver-secret-key",
                "webserver-secret-key",
            )
        )
    if cfg.uses_celery:
        files.append(SecretFile("AIRFLOW__CELERY__BROKER_URL", names.broker_url, "connection", "celery-broker-url"))
        if component == "flower" and cfg.flower.enabled:
            files.append(
                SecretFile("AIRFLOW__CELERY__FLOWER_BASIC_AUTH", names.flower, "basicAuth", "flower-basic-auth")
            )
    return files


def _common_files(cfg: AirflowConfig) -> list[SecretFile]:
    """The files every Airflow component reads (secret_files of a component without extras)."""
    return secret_files(cfg, "")


def projected_secrets(files: list[SecretFile], extra_sources: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The projected volume holding `files` (and any further Secret sources)."""
    sources = [{"secret": {"name": f.secret, "items": [{"key": f.key, "path": f.file}]}} for f in files]
    # 0440: readable by the Airflow user's group 0 (the pods run as 50000:0, fsGroup 0), nobody else.
    return {"name": SECRETS_VOLUME, "projected": {"defaultMode": 0o440, "sources": sources + (extra_sources or [])}}


def _connection_sources(cfg: AirflowConfig, connections_secret: str | None) -> list[dict[str, Any]]:
    """The projected source of connections.json/variables.json (and the git bundle's files), if any."""
    from ..config.dag_bundles import CA_FILE, KNOWN_HOSTS_FILE, ca_file, known_hosts_file

    if not connections_secret:
        return []
    files: tuple[str, ...] = (CONNECTIONS_FILE, VARIABLES_FILE)
    if known_hosts_file(cfg.dags.git_bundle) is not None:
        files = (*files, KNOWN_HOSTS_FILE)  # the git bundle's host keys, beside its connection
    if ca_file(cfg.dags.git_bundle) is not None:
        files = (*files, CA_FILE)  # the CA of the git bundle's HTTPS server (GIT_SSL_CAINFO)
    return [{"secret": {"name": connections_secret, "items": [{"key": f, "path": f} for f in files]}}]


def database_ca_direct(cfg: AirflowConfig) -> bool:
    """Airflow's own containers reach the external database themselves (no PgBouncer between) and
    check its certificate against `airflow.database.caCertificate`. With PgBouncer, only PgBouncer
    (and the backup Job) reaches the server, and only they get the CA."""
    return cfg.database.ca_certificate is not None and not cfg.database.pgbouncer.enabled


def database_ca_sources(cfg: AirflowConfig) -> list[dict[str, Any]]:
    """The CA as the file DATABASE_CA_FILE of the secrets volume, where Airflow connects itself."""
    if not database_ca_direct(cfg):
        return []
    items = [{"key": DATABASE_CA_KEY, "path": DATABASE_CA_FILE}]
    return [{"secret": {"name": SecretNames(cfg.release_name).database_ca, "items": items}}]


def database_ca_env(cfg: AirflowConfig) -> list[dict[str, str]]:
    """PGSSLROOTCERT, which libpq (psycopg2) and asyncpg both read for sslmode=verify-ca/verify-full."""
    if not database_ca_direct(cfg):
        return []
    return [{"name": DATABASE_CA_ENV, "value": f"{SECRETS_DIR}/{DATABASE_CA_FILE}"}]


def secrets_volume(
    cfg: AirflowConfig, component: str, connections_secret: str | None, admin_secret: str | None = None
) -> dict[str, Any]:
    """The projected volume of one component: its SecretFiles, connections/variables, admin password,
    the database's CA."""
    extra = _connection_sources(cfg, connections_secret) + database_ca_sources(cfg)
    if admin_secret:
        extra.append({"secret": {"name": admin_secret, "items": [{"key": "password", "path": ADMIN_PASSWORD_FILE}]}})
    return projected_secrets(secret_files(cfg, component), extra)


# What the KubernetesExecutor's task pods get instead of the metadata connection on Airflow 3, whose
# tasks talk to the execution API (the api-server), never to the database. Airflow still reads the
# option when it is imported, and with none it falls back to SQLite, which it refuses beside the
# KubernetesExecutor; so the pod template names a database that cannot exist (`.invalid`, RFC 2606)
# and carries no credentials. A plain variable wins over the `_CMD` one everyone else reads.
TASK_POD_DATABASE = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://no-database-in-task-pods.invalid/none",
    ASYNC_CONN_ENV: "postgresql+asyncpg://no-database-in-task-pods.invalid/none",
}

NO_DATABASE_WAIT = {"CONNECTION_CHECK_MAX_COUNT": "0"}

# Where PgBouncer reads the external database's CA (`server_tls_ca_file`).
PGBOUNCER_CA_VOLUME = "airflow-k8s-database-ca"
PGBOUNCER_CA_PATH = f"/etc/pgbouncer/{DATABASE_CA_FILE}"


def task_pod_values(cfg: AirflowConfig, connections_secret: str | None, task_pods: Mapping[str, Any]) -> dict[str, Any]:
    """`workers.kubernetes` volumes, mounts and env (the KubernetesExecutor's pod template): the workers'
    secret files but, on Airflow 3, none of the metadata database's; then the typed `taskPods` ones."""
    files = secret_files(cfg, "workers")
    env: list[dict[str, Any]] = []
    if cfg.major >= 3:
        files = [f for f in files if f.option not in TASK_POD_DATABASE]
        # The image's entrypoint (the official one, and the node's) waits for the metadata database
        # before any command unless told not to (NO_DATABASE_WAIT): it would wait for the stand-in,
        # then fail the task.
        env = [{"name": n, "value": v} for n, v in {**TASK_POD_DATABASE, **NO_DATABASE_WAIT}.items()]
    extra = _connection_sources(cfg, connections_secret) + database_ca_sources(cfg)
    volumes = [projected_secrets(files, extra), tmp_volume()]
    if cfg.dags.git_sync is not None:
        volumes.append(tmp_volume(GIT_SYNC_TMP_VOLUME))  # the git-sync init container's home
    out: dict[str, Any] = {
        "extraVolumes": volumes + list(task_pods.get("extraVolumes", [])),
        "extraVolumeMounts": _secret_mounts() + list(task_pods.get("extraVolumeMounts", [])),
    }
    if env or task_pods.get("env"):
        out["env"] = env + list(task_pods.get("env", []))
    return out


def _secret_mounts() -> list[dict[str, Any]]:
    return [
        {"name": SECRETS_VOLUME, "mountPath": SECRETS_DIR, "readOnly": True},
        {"name": TMP_VOLUME, "mountPath": "/tmp"},
    ]


def tmp_volume(name: str = TMP_VOLUME) -> dict[str, Any]:
    return {"name": name, "emptyDir": {}}


# What the chart's own wait-for-airflow-migrations init containers run (its default timeout).
WAIT_FOR_MIGRATIONS_ARGS = ["airflow", "db", "check-migrations", "--migration-wait-timeout=60"]


def chart_fullname(cfg: AirflowConfig) -> str:
    """The chart's `airflow.fullname`: the release name, unless extraValues ask for standard naming."""
    extra = cfg.extra_values
    if not extra.get("useStandardNaming"):
        return cfg.release_name
    if extra.get("fullnameOverride"):
        return str(extra["fullnameOverride"])[:63].rstrip("-")
    name = str(extra.get("nameOverride") or "airflow")
    return (
        cfg.release_name[:63].rstrip("-") if name in cfg.release_name else f"{cfg.release_name}-{name}"[:63].rstrip("-")
    )


def config_mount(cfg: AirflowConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(volume, mount): the chart's airflow.cfg ConfigMap, where the chart's own pods read it.

    A container of the Airflow image that lacks it writes a default airflow.cfg into AIRFLOW_HOME
    when Airflow starts: that fails on a read-only root, and would be the wrong config if it did not.
    """
    volume = {"name": CONFIG_VOLUME, "configMap": {"name": f"{chart_fullname(cfg)}-config"}}
    mount = {"name": CONFIG_VOLUME, "mountPath": AIRFLOW_CONFIG_PATH, "subPath": "airflow.cfg", "readOnly": True}
    return volume, mount


def secrets_backend_config() -> dict[str, Any]:
    """`config` (airflow.cfg) values that make Airflow read connections and variables from the files."""
    kwargs = {
        "connections_file_path": f"{SECRETS_DIR}/{CONNECTIONS_FILE}",
        "variables_file_path": f"{SECRETS_DIR}/{VARIABLES_FILE}",
    }
    return {"secrets": {"backend": LOCAL_FILESYSTEM_BACKEND, "backend_kwargs": json.dumps(kwargs, sort_keys=True)}}


def other_secrets_backend(extra_values: Mapping[str, Any]) -> Any:
    """The `[secrets] backend` chart values override (`config.secrets.backend`), if any: it would
    replace the LocalFilesystemBackend that reads the declared connections and variables."""
    config = extra_values.get("config")
    secrets = config.get("secrets") if isinstance(config, Mapping) else None
    return secrets.get("backend") if isinstance(secrets, Mapping) else None


def check_one_secrets_backend(sources: list[tuple[str, Mapping[str, Any]]]) -> None:
    """While AirflowRelease delivers connections or variables, no chart values (`sources`: the config key
    of each, and the values) may name another `[secrets] backend`."""
    for key, extra_values in sources:
        backend = other_secrets_backend(extra_values)
        if backend:
            raise ConfigError(
                f"{key}.config.secrets.backend",
                backend,
                "no other [secrets] backend while connections or variables are set (`connections`, `variables`, "
                "`taskImages`, the `spark` key's kubernetes_default, a remote-logging connection, a git DAG "
                "bundle's): AirflowRelease delivers them as files read by Airflow's LocalFilesystemBackend.",
                "keep connections and variables in your own secrets backend and drop those keys, or remove the "
                "override.",
            )


def connection_owners(
    bundle: GitBundle | None, logs: LogsConfig | None, *, settings: str = "airflow"
) -> dict[str, tuple[str, str]]:
    """Connection ids AirflowRelease sets itself (the git DAG bundle's, remote logging's): id -> (the
    config key that sets it, what to do instead). `settings`: where the Airflow settings are."""
    owners: dict[str, tuple[str, str]] = {}
    if logs is not None and logs.remote is not None and logs.remote.connection_id:
        owners[logs.remote.connection_id] = (
            "logs.remote.connectionId",
            "remote logging takes its value from the secret 'logsConnection'; or set another logs.remote.connectionId.",
        )
    if bundle is not None:
        owners[bundle.connection_id] = (
            f"{settings}.dags.gitBundle.connectionId",
            "the git DAG bundle's connection is made from gitToken / gitSshKey; or set another "
            f"{settings}.dags.gitBundle.connectionId.",
        )
    return owners


def connections_file(connections: Mapping[str, str]) -> str:
    """`connections.json` for LocalFilesystemBackend: id -> URI, or the JSON form as an object."""
    out: dict[str, Any] = {}
    for conn_id, value in sorted(connections.items()):
        text = value.strip()
        out[conn_id] = json.loads(text) if text.startswith("{") else value
    return json.dumps(out, indent=2, sort_keys=True) + "\n"


def variables_file(variables: Mapping[str, str]) -> str:
    """`variables.json` for LocalFilesystemBackend: key -> text (JSON values stay text, as in the database)."""
    return json.dumps(dict(sorted(variables.items())), indent=2, sort_keys=True) + "\n"


def file_values(cfg: AirflowConfig, connections_secret: str | None, task_pods: Mapping[str, Any]) -> dict[str, Any]:
    """Chart values for secrets as files and the writable mounts of a read-only root.

    `connections_secret` names the Secret with connections.json/variables.json (None when the
    stack declares neither). `task_pods` are the `workers.kubernetes` values from the typed
    config: their volumes are kept after ours (the chart uses them instead of `workers.*`).
    """
    names = SecretNames(cfg.release_name)
    common = _common_files(cfg)
    values: dict[str, Any] = {
        "enableBuiltInSecretEnvVars": dict.fromkeys(REPLACED_BUILT_IN_ENV, False),
        "env": [f.cmd_env() for f in common] + bundle_env(cfg.dags.git_bundle) + database_ca_env(cfg),
    }
    if connections_secret:
        values["config"] = secrets_backend_config()
    git_sync = cfg.dags.git_sync is not None
    for component in AIRFLOW_COMPONENTS:
        admin = names.admin if component == "createUserJob" and cfg.admin.enabled else None
        volumes = [secrets_volume(cfg, component, connections_secret, admin), tmp_volume()]
        mounts = _secret_mounts()
        if git_sync:
            volumes.append(tmp_volume(GIT_SYNC_TMP_VOLUME))
        values[component] = {"extraVolumes": volumes, "extraVolumeMounts": mounts}
        extra_env = [f.cmd_env() for f in secret_files(cfg, component) if f not in common]
        if extra_env:
            values[component]["env"] = extra_env
    values["workers"]["kubernetes"] = task_pod_values(cfg, connections_secret, task_pods)
    if git_sync:
        values["dags"] = {"gitSync": {"extraVolumeMounts": [{"name": GIT_SYNC_TMP_VOLUME, "mountPath": "/tmp"}]}}
    if cfg.database.pgbouncer.enabled:
        values["pgbouncer"] = {
            "extraVolumes": [tmp_volume(PGBOUNCER_TMP_VOLUME)],
            "extraVolumeMounts": [{"name": PGBOUNCER_TMP_VOLUME, "mountPath": "/tmp"}],
        }
        if cfg.database.ca_certificate is not None:  # server_tls_ca_file (pgbouncer_ini)
            values["pgbouncer"]["extraVolumes"].append(
                {"name": PGBOUNCER_CA_VOLUME, "secret": {"secretName": SecretNames(cfg.release_name).database_ca}}
            )
            values["pgbouncer"]["extraVolumeMounts"].append(
                {
                    "name": PGBOUNCER_CA_VOLUME,
                    "mountPath": PGBOUNCER_CA_PATH,
                    "subPath": DATABASE_CA_KEY,
                    "readOnly": True,
                }
            )
    if cfg.major < 3:
        # gunicorn writes its pid file to $AIRFLOW_HOME unless told otherwise.
        values["webserver"]["args"] = ["bash", "-c", "exec airflow webserver --pid /tmp/airflow-webserver.pid"]
    return values
