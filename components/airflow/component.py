# Longer than 600 lines: AirflowRelease declares every child of one Airflow (secrets, volumes,
# Jobs, the Release) and checks its arguments first.
"""AirflowRelease: the official Airflow chart with every secret owned by Pulumi."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import replace
from typing import Any, NotRequired, TypedDict, cast

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from ..core.arguments import as_arguments
from ..core.chart_release import helm_release, own_namespace
from ..core.ids import check_no_clash
from ..core.merge import deep_merge
from ..core.outputs import register_annotated_outputs
from ..core.reader import ConfigError, bounded, type_name
from ..logs.component import LogStorage
from ..logs.config import LogsConfig, parse_logs
from . import maintenance
from .config.airflow import AirflowConfig, DatabaseUrl, StackSecrets, parse_airflow, parse_database_url
from .config.dag_bundles import CA_FILE, KNOWN_HOSTS_FILE, bundle_connection, ca_file, known_hosts_file
from .config.maintenance import MaintenanceConfig
from .values.chart import (
    FLOWER_USER,
    SecretNames,
    airflow_environment,
    broker_url,
    chart_values,
    database_target,
    log_serving_policy,
    merge_extra_values,
    metadata_async_connection,
    metadata_connection,
    pgbouncer_ini,
    pgbouncer_stats_connection,
    pgbouncer_users,
    service_account_names,
    split_environment,
    task_pod_launcher_binding,
    task_service_accounts,
    ui_service,
)
from .values.fernet import key_list as fernet_key_list, resource_name as fernet_resource_name
from .values.guards import check_airflow_config
from .values.invariants import check_airflow
from .values.jobs import import_pools_job, migrate_job, pools_configmap, rotate_fernet_key_job
from .values.rollout import AIRFLOW_SECRETS, PGBOUNCER_SECRETS, revision_values
from .values.secret_files import (
    CONNECTIONS_FILE,
    DATABASE_CA_KEY,
    METADATA_ASYNC_KEY,
    VARIABLES_FILE,
    check_one_secrets_backend,
    connection_owners,
    connections_file,
    variables_file,
)


def _conn_env(conn_id: str) -> str:
    """Connection ids as AirflowRelease's `connections` arg takes them."""
    return "AIRFLOW_CONN_" + conn_id.upper()


def _resolved(entries: Mapping[str, pulumi.Input[str]]) -> pulumi.Output[dict[str, str]]:
    """A mapping of Inputs as one Output of the plain mapping (an empty one for none)."""
    if not entries:
        return pulumi.Output.from_input({})
    return pulumi.Output.all(**entries).apply(dict)


PACKAGE = "airflow-k8s"
ROLLOUT_SECRETS = AIRFLOW_SECRETS + PGBOUNCER_SECRETS
#: The parsers' keys (those of the stack config) -> AirflowRelease's argument names.
RELEASE_ARGUMENTS = {
    "airflow": "settings",
    "databaseUrl": "database_url",
    "gitToken": "git_token",
    "gitSshKey": "git_ssh_key",
    "logsConnection": "logs_connection",
    "previousFernetKeys": "previous_fernet_keys",
}


class AirflowReleaseArgs(TypedDict):
    """Inputs of AirflowRelease."""

    settings: AirflowConfig | Mapping[str, Any]
    """The release's settings: an `AirflowConfig`, or a mapping of the same shape as the
    `airflow` stack config key (documented in docs/configuration.md), which is validated here."""

    database_url: NotRequired[pulumi.Input[str] | None]
    """External metadata database URL (postgresql://user:password@host:5432/db?sslmode=...).
    Required when `settings.database.mode` is `external`. Kept secret end to end."""

    git_token: NotRequired[pulumi.Input[str] | None]
    """Token (or password) for git-sync over HTTPS, when `dags.gitSync.auth` is `token`. Secret."""

    git_ssh_key: NotRequired[pulumi.Input[str] | None]
    """Private key for git-sync over SSH, when `dags.gitSync.auth` is `ssh`. Secret."""

    extra_values: NotRequired[Mapping[str, Any] | None]
    """Chart values from other components (for example LogStorage), merged before
    `settings.extraValues`, which always wins."""

    connections: NotRequired[Mapping[str, pulumi.Input[str]] | None]
    """Airflow connections as code: connection id -> URI or JSON (Airflow's
    `AIRFLOW_CONN_<ID>` formats). Delivered through one Secret to every Airflow
    component and task pod; values stay secret."""

    logs: NotRequired[LogsConfig | Mapping[str, Any] | None]
    """Where task logs live: a `LogsConfig` or a mapping shaped like the `logs` stack key.
    AirflowRelease then declares a LogStorage child (`<name>-logs`) and mounts its claim in
    every Airflow pod and the KubernetesExecutor pod template. Unset: the chart's emptyDir."""

    logs_connection: NotRequired[pulumi.Input[str] | None]
    """Credentials for remote logging (secret); see LogStorageArgs.connection."""

    variables: NotRequired[Mapping[str, pulumi.Input[str]] | None]
    """Airflow variables as code: key -> value, delivered like `connections` as
    `AIRFLOW_VAR_<KEY>`."""

    maintenance: NotRequired[MaintenanceConfig | Mapping[str, Any] | None]
    """Backups and cleanup of the metadata database: a `MaintenanceConfig`, or a mapping shaped
    like the `maintenance` stack key (see maintenance.py). Unset: neither."""

    after: NotRequired[Sequence[pulumi.Resource] | None]
    """Resources the chart release waits for: e.g. KedaOperator, whose CRDs the workers'
    ScaledObject needs (`keda` settings)."""

    previous_fernet_keys: NotRequired[Sequence[pulumi.Input[str]] | None]
    """Fernet keys made elsewhere (the installation this release replaces, or the retained
    Secret of a destroyed stack): kept behind the generated key(s) in `AIRFLOW__CORE__FERNET_KEY`,
    so what they encrypted stays readable until `airflow rotate-fernet-key` re-encrypts it
    (`settings.fernetKey.rotate`). Secret."""


class _Secrets:
    """The Kubernetes Secrets an AirflowRelease declares, by role, and what its Release waits for
    (those Secrets, the hostPath DAG claim, the LogStorage)."""

    def __init__(
        self,
        owner: pulumi.Resource,
        name: str,
        release_name: str,
        namespace: pulumi.Output[str],
        keep: pulumi.ResourceOptions,
    ) -> None:
        self._owner, self._name, self._release_name, self._namespace, self._keep = (
            owner,
            name,
            release_name,
            namespace,
            keep,
        )
        self.by_role: dict[str, k8s.core.v1.Secret] = {}
        self.before_release: list[pulumi.Resource] = []

    def add(self, role: str, secret_name: str, data: Mapping[str, pulumi.Input[str]], retain: bool = False) -> None:
        """The Secret `<name>-<role>` holding `data` (retained and protected when it holds key material)."""
        secret = k8s.core.v1.Secret(
            f"{self._name}-{role}",
            metadata={
                "name": secret_name,
                "namespace": self._namespace,
                "labels": {
                    "app.kubernetes.io/managed-by": "pulumi",
                    "app.kubernetes.io/part-of": "airflow",
                    "release": self._release_name,
                },
            },
            type="Opaque",
            string_data={k: pulumi.Output.secret(v) for k, v in data.items()},
            opts=self._keep if retain else pulumi.ResourceOptions(parent=self._owner),
        )
        self.by_role[role.removesuffix("-secret")] = secret
        self.before_release.append(secret)


class AirflowRelease(pulumi.ComponentResource):
    """Apache Airflow from the official chart, with generated secrets that never re-roll.

    Children (named `<name>-<role>`): the namespace (unless it exists), random secrets,
    the Kubernetes Secrets the chart references by name, the hostPath DAG volume when
    asked for, and one `helm.v3.Release`.
    """

    namespace: pulumi.Output[str]
    """The namespace Airflow runs in."""
    release_name: pulumi.Output[str]
    """The Helm release name."""
    service_accounts: pulumi.Output[dict[str, str]]
    """ServiceAccount the chart creates, by chart component key (scheduler, workers, ...)."""
    task_service_accounts: pulumi.Output[list[str]]
    """ServiceAccounts whose pods run Airflow tasks under the configured executor(s)."""
    ui_service_name: pulumi.Output[str]
    """The Service of the web UI (api-server on Airflow 3, webserver on Airflow 2)."""
    ui_service_port: pulumi.Output[int]
    """The UI Service's port."""
    admin_username: pulumi.Output[str]
    """The admin user's name."""
    admin_password: pulumi.Output[str]
    """The admin user's generated password (secret)."""

    def __init__(self, name: str, args: AirflowReleaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        cfg, logs_cfg, environment = self._checked(name, args)
        previous_keys = [pulumi.Output.secret(k) for k in args.get("previous_fernet_keys") or ()]
        environment = self._with_bundle_connection(cfg, args, environment)
        super().__init__(f"{PACKAGE}:index:AirflowRelease", name, {}, opts)
        self.config = cfg
        # What holds data is protected as well as retained: a plain `pulumi destroy` refuses (naming
        # `pulumi destroy --exclude-protected`, which keeps it in the cluster *and* in the state), so
        # the next `up` takes it over as it is instead of failing on "already exists".
        keep = pulumi.ResourceOptions(parent=self, retain_on_delete=True, protect=True)
        namespace, _ = own_namespace(
            f"{name}-namespace",
            cfg.namespace,
            {"app.kubernetes.io/part-of": "airflow"},
            create=cfg.create_namespace,
            opts=keep,
        )
        secrets = _Secrets(self, name, cfg.release_name, namespace, keep)

        admin_pw = self._generated_secrets(name, cfg, previous_keys, secrets)
        target = self._database(name, cfg, args, secrets)
        dags_claim = self._dag_delivery(name, cfg, args, namespace, keep, secrets)
        log_values, environment = self._logs(name, cfg, logs_cfg, args, namespace, environment, secrets)
        connections_secret = self._environment(cfg, environment, secrets)
        values = self._values(cfg, args, dags_claim, connections_secret, log_values, secrets)
        self._log_serving_policy(name, cfg, namespace)
        self._migration(name, cfg, namespace, secrets, target)
        self.release = helm_release(
            cfg.chart,
            f"{name}-release",
            release_name=cfg.release_name,
            namespace=namespace,
            values=values,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*secrets.before_release, *(args.get("after") or ())]),
            timeout=900,
        )
        self._task_pod_launcher(name, cfg, namespace)
        self._cli_jobs(name, cfg, namespace)
        maintenance.declare(
            self, name, cfg, maintenance.settings(args.get("maintenance"), logs_cfg), namespace, target, self.release
        )
        self._outputs(cfg, namespace, admin_pw)

    @classmethod
    def _checked(cls, name: str, args: AirflowReleaseArgs) -> tuple[AirflowConfig, LogsConfig | None, dict[str, Any]]:
        """checked_args, with settings given as a mapping checked here: a mistake is told as the
        argument path the caller wrote (`settings.excutor`), as one message (components/core/arguments.py)."""
        checked = (
            nullcontext()
            if isinstance(args.get("settings"), AirflowConfig)
            else as_arguments("AirflowRelease", name, RELEASE_ARGUMENTS)
        )
        with checked:
            return cls.checked_args(args)

    @staticmethod
    def _with_bundle_connection(
        cfg: AirflowConfig, args: AirflowReleaseArgs, environment: dict[str, Any]
    ) -> dict[str, Any]:
        """The git DAG bundle's connection (repository and credentials) travels with the others, as a file."""
        bundle = cfg.dags.git_bundle
        if bundle is None:
            return environment
        credentials = pulumi.Output.all(args.get("git_token"), args.get("git_ssh_key"))
        connection: pulumi.Output[str] = pulumi.Output.secret(
            credentials.apply(lambda c: bundle_connection(bundle, c[0], c[1]))
        )
        return {**environment, _conn_env(bundle.connection_id): (bundle.connection_id, connection)}

    def _generated_secrets(
        self, name: str, cfg: AirflowConfig, previous_keys: list[pulumi.Output[str]], secrets: _Secrets
    ) -> random.RandomPassword:
        """The generated secrets and the Secrets that hold them; returns the admin password.

        They are declared whatever the executor or Airflow major, so switching either never re-rolls
        a key (their inputs are constants). Key material is protected: after `pulumi destroy
        --exclude-protected` the next `up` finds the same Fernet key and Postgres password in the
        state (what the retained Secret and the retained database volume hold), instead of
        generating new ones."""
        names = SecretNames(cfg.release_name)
        child = pulumi.ResourceOptions(parent=self)
        key = pulumi.ResourceOptions(parent=self, protect=True)
        fernet = random.RandomBytes(f"{name}-fernet-key", length=32, opts=key)
        ui_secret = random.RandomPassword(f"{name}-ui-secret-key", length=64, special=False, opts=child)
        jwt = random.RandomPassword(f"{name}-jwt-secret", length=64, special=False, opts=child)
        redis_pw = random.RandomPassword(f"{name}-redis-password", length=32, special=False, opts=child)
        flower_pw = random.RandomPassword(f"{name}-flower-password", length=32, special=False, opts=child)
        # The admin password too: the database keeps the user it was created with.
        admin_pw = random.RandomPassword(f"{name}-admin-password", length=24, special=False, min_numeric=2, opts=key)

        # A Fernet key is 32 random bytes, URL-safe base64 with padding (44 characters). Rotation
        # (airflow.fernetKey.generation N) adds one RandomBytes per generation, `<name>-fernet-key-<N>`;
        # generation 1 above never changes. The Secret holds "newest,previous" (see values/fernet.py).
        generations = {1: fernet} | {
            g: random.RandomBytes(fernet_resource_name(name, g), length=32, opts=key)
            for g in cfg.fernet.generations[1:]
        }
        active = cfg.fernet.active
        fernet_key = pulumi.Output.all(*(generations[g].base64 for g in active), *previous_keys).apply(
            lambda keys: fernet_key_list(
                dict(zip(active, keys[: len(active)], strict=True)), cfg.fernet, tuple(keys[len(active) :])
            )
        )
        secrets.add("fernet-key-secret", names.fernet_key, {"fernet-key": fernet_key}, retain=True)
        if cfg.major >= 3:
            secrets.add("api-secret-key-secret", names.api_secret_key, {"api-secret-key": ui_secret.result})
            secrets.add("jwt-secret-secret", names.jwt_secret, {"jwt-secret": jwt.result})
        else:
            secrets.add(
                "webserver-secret-key-secret", names.webserver_secret_key, {"webserver-secret-key": ui_secret.result}
            )
        if cfg.uses_celery:
            secrets.add("redis-password-secret", names.redis_password, {"password": redis_pw.result})
            secrets.add(
                "broker-url-secret",
                names.broker_url,
                {"connection": redis_pw.result.apply(lambda p: broker_url(cfg, p))},
            )
        if cfg.flower.enabled and cfg.uses_celery:
            # Without credentials the chart runs Flower open to anyone who reaches it (its Service,
            # its Ingress): it shows every task's arguments and can revoke tasks and stop workers.
            secrets.add(
                "flower-secret",
                names.flower,
                {
                    "username": FLOWER_USER,
                    "password": flower_pw.result,
                    "basicAuth": flower_pw.result.apply(lambda p: f"{FLOWER_USER}:{p}"),
                },
            )
        if cfg.admin.enabled:
            secrets.add("admin-secret", names.admin, {"username": cfg.admin.username, "password": admin_pw.result})
        return admin_pw

    def _database(
        self, name: str, cfg: AirflowConfig, args: AirflowReleaseArgs, secrets: _Secrets
    ) -> pulumi.Output[DatabaseUrl]:
        """The metadata database: bundled Postgres with a generated password, or external; returns
        where it really is.

        The password and its (retained) Secret are declared in both modes: the bundled volume keeps
        the password it was initialised with, so switching to external and back must find the same
        one (and not a retained Secret that "already exists")."""
        names = SecretNames(cfg.release_name)
        key = pulumi.ResourceOptions(parent=self, protect=True)
        pg_pw = random.RandomPassword(f"{name}-postgres-password", length=32, special=False, opts=key)
        secrets.add("postgres-secret", names.postgres, {"postgres-password": pg_pw.result}, retain=True)
        target: pulumi.Output[DatabaseUrl]
        if cfg.database.mode == "bundled":
            target = pg_pw.result.apply(lambda p: database_target(cfg, None, p))
        else:
            url = args.get("database_url")
            has_ca = cfg.database.ca_certificate is not None
            target = pulumi.Output.secret(url).apply(
                lambda u: database_target(cfg, parse_database_url(u or "", has_ca=has_ca), "")
            )
        secrets.add(
            "metadata-secret",
            names.metadata,
            {"connection": target.apply(lambda t: metadata_connection(cfg, t))},
            retain=True,
        )
        # The async engine's URL in a Secret of its own: adding a key to the metadata Secret of a
        # deployed stack would replace it, and it is protected (docs/upgrades.md).
        secrets.add(
            "metadata-async-secret",
            names.metadata_async,
            {METADATA_ASYNC_KEY: target.apply(lambda t: metadata_async_connection(cfg, t))},
            retain=True,
        )
        if cfg.database.ca_certificate is not None:  # not a secret, but mounted beside the secrets
            secrets.add("database-ca-secret", names.database_ca, {DATABASE_CA_KEY: cfg.database.ca_certificate})
        if cfg.database.pgbouncer.enabled:
            secrets.add(
                "pgbouncer-config-secret",
                names.pgbouncer_config,
                {
                    "pgbouncer.ini": target.apply(lambda t: pgbouncer_ini(cfg, t)),
                    "users.txt": target.apply(pgbouncer_users),
                },
            )
            secrets.add(
                "pgbouncer-stats-secret",
                names.pgbouncer_stats,
                {"connection": target.apply(pgbouncer_stats_connection)},
            )
        return target

    def _dag_delivery(
        self,
        name: str,
        cfg: AirflowConfig,
        args: AirflowReleaseArgs,
        namespace: pulumi.Output[str],
        keep: pulumi.ResourceOptions,
        secrets: _Secrets,
    ) -> k8s.core.v1.PersistentVolumeClaim | None:
        """DAG delivery credentials and volumes; returns the hostPath DAG claim when there is one."""
        names = SecretNames(cfg.release_name)
        git = cfg.dags.git_sync
        if git is not None and git.auth == "token":
            token = args.get("git_token")
            secrets.add(
                "git-credentials-secret",
                names.git_credentials,
                {
                    "GITSYNC_USERNAME": git.username,
                    "GITSYNC_PASSWORD": token or "",
                    "GIT_SYNC_USERNAME": git.username,
                    "GIT_SYNC_PASSWORD": token or "",
                },
            )
        if git is not None and git.auth == "ssh":
            secrets.add("git-ssh-secret", names.git_ssh, {"gitSshKey": args.get("git_ssh_key") or ""})
        if cfg.dags.host_path is None:
            return None
        dags_claim = self._host_path_dags(name, cfg, namespace, keep)
        secrets.before_release.append(dags_claim)
        return dags_claim

    def _logs(
        self,
        name: str,
        cfg: AirflowConfig,
        logs_cfg: LogsConfig | None,
        args: AirflowReleaseArgs,
        namespace: pulumi.Output[str],
        environment: dict[str, Any],
        secrets: _Secrets,
    ) -> tuple[pulumi.Output[dict[str, Any]], dict[str, Any]]:
        """Task logs: a LogStorage child when asked; its claim and values flow into the chart, its
        connections into the environment. Returns (its chart values, the environment)."""
        if logs_cfg is None:
            return pulumi.Output.from_input({}), environment
        self.logs = LogStorage(
            f"{name}-logs",
            {
                "settings": logs_cfg,
                "namespace": namespace,
                "namespace_name": cfg.namespace,
                "release_name": cfg.release_name,
                "connection": args.get("logs_connection"),
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        secrets.before_release.append(self.logs)
        connections = {_conn_env(k): (k, v) for k, v in self.logs.connections.items()}
        return self.logs.values, {**environment, **connections}

    @staticmethod
    def _environment(cfg: AirflowConfig, environment: dict[str, Any], secrets: _Secrets) -> str | None:
        """Connections and variables as code: one Secret with connections.json and variables.json,
        mounted into every Airflow container and read by Airflow's LocalFilesystemBackend; returns its
        name when there is one."""
        if not environment:
            return None
        names = SecretNames(cfg.release_name)
        conns, variables = split_environment(environment)
        secrets.add(
            "environment-secret",
            names.environment,
            {
                CONNECTIONS_FILE: _resolved(conns).apply(connections_file),
                VARIABLES_FILE: _resolved(variables).apply(variables_file),
                **({KNOWN_HOSTS_FILE: hosts} if (hosts := known_hosts_file(cfg.dags.git_bundle)) else {}),
                **({CA_FILE: ca} if (ca := ca_file(cfg.dags.git_bundle)) else {}),
            },
        )
        return names.environment

    @staticmethod
    def _values(
        cfg: AirflowConfig,
        args: AirflowReleaseArgs,
        dags_claim: k8s.core.v1.PersistentVolumeClaim | None,
        connections_secret: str | None,
        log_values: pulumi.Output[dict[str, Any]],
        secrets: _Secrets,
    ) -> pulumi.Output[dict[str, Any]]:
        """The chart values: ours, the logs', then the caller's extra values on top."""
        base = chart_values(
            cfg, dags_claim=f"{cfg.release_name}-dags" if dags_claim else None, connections_secret=connections_secret
        )
        extra = dict(args.get("extra_values") or {})
        # A changed Secret restarts the pods that read it (their resourceVersion as pod annotations).
        by_role = secrets.by_role
        revisions = pulumi.Output.all(
            **{role: by_role[role].metadata.resource_version for role in ROLLOUT_SECRETS if role in by_role}
        )
        return pulumi.Output.all(log_values, revisions).apply(
            lambda lr: merge_extra_values(
                merge_extra_values(deep_merge(deep_merge(base, revision_values(cfg, lr[1])), lr[0]), extra),
                cfg.extra_values,
            )
        )

    def _log_serving_policy(self, name: str, cfg: AirflowConfig, namespace: pulumi.Output[str]) -> None:
        policy = log_serving_policy(cfg)
        if policy is None:
            return
        k8s.networking.v1.NetworkPolicy(
            f"{name}-log-serving-policy",
            metadata={
                "name": f"{cfg.release_name}-log-serving-policy",
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "pulumi", "release": cfg.release_name},
            },
            spec=cast(Any, policy),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _migration(
        self,
        name: str,
        cfg: AirflowConfig,
        namespace: pulumi.Output[str],
        secrets: _Secrets,
        target: pulumi.Output[DatabaseUrl],
    ) -> None:
        """The schema migration: our own Job (values/jobs.migrate_job), beside the Release, not after
        it: the chart's pods wait for the schema, and Helm waits for the pods. Its pod starts once the
        Release's airflow.cfg ConfigMap (and, bundled, the database) is there. An external database's
        host, port and name are part of its name (a new database is a new Job); they are no secret,
        so the name is not one."""
        migration = migrate_job(cfg)
        job_name: pulumi.Input[str] = migration["metadata"]["name"]
        if cfg.database.mode == "external":
            job_name = pulumi.Output.unsecret(target.apply(lambda t: migrate_job(cfg, t.where())["metadata"]["name"]))
        k8s.batch.v1.Job(
            f"{name}-migrate",
            metadata={**migration["metadata"], "name": job_name, "namespace": namespace},
            spec=migration["spec"],
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[secrets.by_role["fernet-key"], secrets.by_role["metadata"]],
                custom_timeouts=pulumi.CustomTimeouts(create="30m", update="30m"),
            ),
        )

    def _task_pod_launcher(self, name: str, cfg: AirflowConfig, namespace: pulumi.Output[str]) -> None:
        """KubernetesPodOperator inside KubernetesExecutor task pods: the chart's pod-launcher Role,
        bound to the task pods' account too (see task_pod_launcher_binding)."""
        launcher = task_pod_launcher_binding(cfg)
        if launcher is None:
            return
        k8s.rbac.v1.RoleBinding(
            f"{name}-task-pod-launcher",
            metadata={**launcher["metadata"], "namespace": namespace},
            role_ref=launcher["roleRef"],
            subjects=launcher["subjects"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release]),
        )

    def _outputs(self, cfg: AirflowConfig, namespace: pulumi.Output[str], admin_pw: random.RandomPassword) -> None:
        ui_name, ui_port = ui_service(cfg)
        self.namespace = namespace
        self.release_name = self.release.name.apply(lambda n: n or cfg.release_name)
        self.service_accounts = pulumi.Output.from_input(service_account_names(cfg))
        self.task_service_accounts = pulumi.Output.from_input(task_service_accounts(cfg))
        self.ui_service_name = pulumi.Output.from_input(ui_name)
        self.ui_service_port = pulumi.Output.from_input(ui_port)
        self.admin_username = pulumi.Output.from_input(cfg.admin.username)
        self.admin_password = pulumi.Output.secret(admin_pw.result)
        register_annotated_outputs(self)

    @staticmethod
    def checked_args(args: AirflowReleaseArgs) -> tuple[AirflowConfig, LogsConfig | None, dict[str, Any]]:
        """(settings, logs, connections and variables by environment name) of these arguments, parsed
        and checked before anything is declared: whatever AirflowRelease would refuse raises a
        ConfigError naming the argument (`settings.<key>`, `logs.<key>`, `extra_values`, `connections`)."""
        for arg in ("settings", "logs", "extra_values", "maintenance", "connections", "variables"):
            if isinstance(args.get(arg), Mapping):
                bounded(arg, args.get(arg))
        for arg in ("extra_values", "connections", "variables"):
            if args.get(arg) is not None and not isinstance(args.get(arg), Mapping):
                raise ConfigError(arg, "[not shown]", f"expected a mapping, got {type_name(args.get(arg))}.")
        cfg = AirflowRelease._settings(args)
        cfg = replace(cfg, fernet=replace(cfg.fernet, imported=len(args.get("previous_fernet_keys") or ())))
        environment = airflow_environment(args.get("connections") or {}, args.get("variables") or {})
        bundle = cfg.dags.git_bundle
        logs_cfg = AirflowRelease._logs_settings(args)
        check_no_clash(
            "connections", args.get("connections") or {}, connection_owners(bundle, logs_cfg, settings="settings")
        )
        remote_id = logs_cfg.remote.connection_id if logs_cfg is not None and logs_cfg.remote is not None else ""
        has_remote_conn = bool(remote_id and args.get("logs_connection") is not None)
        # The guarantees on the final chart values (components/airflow/values/invariants.py).
        check_airflow_config(cfg, key="settings")
        check_airflow(
            cfg,
            logs=logs_cfg,
            extra=args.get("extra_values") or {},
            connections_secret=SecretNames(cfg.release_name).environment
            if environment or bundle is not None or has_remote_conn
            else None,
            dags_claim=f"{cfg.release_name}-dags" if cfg.dags.host_path is not None else None,
        )
        if environment or bundle is not None or remote_id:
            check_one_secrets_backend(
                [("extra_values", args.get("extra_values") or {}), ("airflow.extraValues", cfg.extra_values)]
            )
        return cfg, logs_cfg, environment

    @staticmethod
    def _logs_settings(args: AirflowReleaseArgs) -> LogsConfig | None:
        logs = args.get("logs")
        if logs is None or isinstance(logs, LogsConfig):
            return logs
        return parse_logs(logs, logs_connection=args.get("logs_connection"))

    @staticmethod
    def _settings(args: AirflowReleaseArgs) -> AirflowConfig:
        settings = args.get("settings")
        if isinstance(settings, AirflowConfig):
            return settings
        if not isinstance(settings, Mapping):
            raise ConfigError(
                "settings",
                "[not shown]",
                "expected an AirflowConfig or a mapping shaped like the `airflow` stack key, got "
                f"{type_name(settings)}.",
            )
        # Secrets given as Outputs count as present; their contents are checked when known.
        secrets = StackSecrets(
            git_token=args.get("git_token"), git_ssh_key=args.get("git_ssh_key"), database_url=args.get("database_url")
        )
        return parse_airflow(settings, secrets)

    def _cli_jobs(self, name: str, cfg: AirflowConfig, namespace: pulumi.Input[str]) -> None:
        """One-off `airflow` commands after the release has rolled out: Fernet key rotation
        (`fernetKey.rotate`) and the pool import (`pools`). See values/jobs.py."""
        after_release = pulumi.ResourceOptions(parent=self, depends_on=[self.release])
        if cfg.fernet.rotate:
            job = rotate_fernet_key_job(cfg)
            k8s.batch.v1.Job(
                f"{name}-rotate-fernet-key",
                metadata={**job["metadata"], "namespace": namespace},
                spec=job["spec"],
                opts=after_release,
            )
        if cfg.pools:
            cm = pools_configmap(cfg, cfg.pools)
            pools_cm = k8s.core.v1.ConfigMap(
                f"{name}-pools",
                metadata={**cm["metadata"], "namespace": namespace},
                data=cm["data"],
                opts=pulumi.ResourceOptions(parent=self),
            )
            job = import_pools_job(cfg, cfg.pools)
            k8s.batch.v1.Job(
                f"{name}-import-pools",
                metadata={**job["metadata"], "namespace": namespace},
                spec=job["spec"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release, pools_cm]),
            )

    def _host_path_dags(
        self, name: str, cfg: AirflowConfig, namespace: pulumi.Input[str], keep: pulumi.ResourceOptions
    ) -> k8s.core.v1.PersistentVolumeClaim:
        """A hostPath PersistentVolume (laptop clusters) and the claim the chart mounts."""
        hp = cfg.dags.host_path
        assert hp is not None
        pv_name = f"{cfg.namespace}-{cfg.release_name}-dags"
        affinity = None
        if hp.node:
            affinity = {
                "required": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [hp.node]}]}
                    ]
                }
            }
        pv_spec: dict[str, Any] = {
            "capacity": {"storage": hp.size},
            "accessModes": ["ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": hp.path, "type": "DirectoryOrCreate"},
            "nodeAffinity": affinity,
        }
        pv = k8s.core.v1.PersistentVolume(
            f"{name}-dags-volume",
            metadata={"name": pv_name, "labels": {"app.kubernetes.io/part-of": "airflow", "release": cfg.release_name}},
            spec=cast(Any, pv_spec),
            opts=keep,
        )
        claim_spec: dict[str, Any] = {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": pv.metadata.name,
            "resources": {"requests": {"storage": hp.size}},
        }
        return k8s.core.v1.PersistentVolumeClaim(
            f"{name}-dags-claim",
            metadata={"name": f"{cfg.release_name}-dags", "namespace": namespace},
            spec=cast(Any, claim_spec),
            opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(depends_on=[pv])),
        )
