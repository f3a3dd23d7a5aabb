"""What this stack deployed last time, and the config changes that would lose data.

A config change can be valid on its own and still lose data because of what it changes
*from*: a new `airflow.releaseName` or `airflow.namespace` replaces the Helm release and
every Secret (a new, empty bundled database and a new logs claim); a Fernet generation that
jumps by more than one or goes down, or drops the previous key in the same `up` that raises
it, leaves data encrypted with a key no longer in the list.

AirflowPlatform (whatever program declares it) exports its identity as the stack output
`deployedIdentity` (`deployedIdentity-<name>` for a platform not named `airflow`) on every `up`.
The next run reads it back through a StackReference to its own stack (resolved before anything
is declared: the engine reads the last checkpoint) and refuses a lossy change with a
ConfigError that says what would be lost and how to migrate (`guard`). A stack deployed before
this output existed has no record on its first `up` after the upgrade; from then on it has one.
Served as a component package to another language, the platform has no stack of its own to
read or export to, and the guard does not run.

`check_change` is a plain function (tested without Pulumi); `guard`, `record` and
`previous_identity` are the Pulumi part.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..core.reader import ConfigError

if TYPE_CHECKING:
    from .config import StackConfig

OUTPUT = "deployedIdentity"
ACCEPT_KEY = "identityChange"
STACK_PROGRAM_NAME = "airflow"
"""The platform name of this project's own stack program, whose record is `deployedIdentity` itself."""


def output_name(platform: str) -> str:
    """The stack output holding the identity of the platform named `platform`."""
    return OUTPUT if platform == STACK_PROGRAM_NAME else f"{OUTPUT}-{platform}"


def identity(stack: StackConfig) -> dict[str, Any]:
    """The record exported as `deployedIdentity` (names and numbers only, never key material)."""
    a = stack.airflow
    return {
        "namespace": a.namespace,
        "releaseName": a.release_name,
        "fernetGeneration": a.fernet.generation,
        "databaseMode": a.database.mode,
        "logsMode": stack.logs.mode,
        "retainedClaims": retained_claims(stack),
    }


def retained_claims(stack: StackConfig) -> list[str]:
    """The claims holding data the stack declares with retainOnDelete ('namespace/name'): dropping one
    from the config leaves it (and its data) in the cluster, and declaring it again later fails with
    AlreadyExists (pulumi-kubernetes 4.29+ creates, it does not adopt)."""
    from ..airflow.values.maintenance import backup_claim_name
    from ..logs.config import claim_name
    from ..monitoring.values import StackNames

    a = stack.airflow
    claims = []
    if stack.logs.uses_claim:
        claims.append(f"{a.namespace}/{claim_name(a.release_name)}")
    if a.dags.host_path is not None:
        claims.append(f"{a.namespace}/{a.release_name}-dags")
    backup = stack.maintenance.backup
    if backup.enabled and backup.target == "claim":
        claims.append(f"{a.namespace}/{backup_claim_name(a.release_name)}")
    install = stack.monitoring.install
    if install is not None and install.persistence:
        claims.append(f"{install.namespace}/{StackNames(install.release_name).grafana_claim}")
    return sorted(claims)


def _lost(previous: Mapping[str, Any]) -> str:
    release, namespace = previous.get("releaseName"), previous.get("namespace")
    parts = [
        f"the Helm release '{release}' in namespace '{namespace}' would be replaced and its objects deleted",
        f"every Secret '{release}-pulumi-*' would be recreated under the new name (the key material stays: it "
        "comes from the same random resources)",
    ]
    if previous.get("databaseMode", "bundled") == "bundled":
        parts.append(
            f"the bundled Postgres volume (data-{release}-postgresql-0) would be left behind and Airflow would start "
            "on a new, EMPTY metadata database (DAG runs, connections, users, history)"
        )
    if previous.get("logsMode") in ("hostPath", "nfs", "dynamic"):
        parts.append(f"task logs stay on the claim '{release}-logs'; the new release would get a new, empty claim")
    return "; ".join(parts)


def check_change(previous: Mapping[str, Any] | None, stack: StackConfig, accepted: str | None = None) -> None:
    """Refuse a change from `previous` (the last deployment's identity) that would lose data."""
    if not previous:
        return
    a = stack.airflow
    old_release, old_namespace = previous.get("releaseName"), previous.get("namespace")
    if (old_release, old_namespace) != (a.release_name, a.namespace):
        expected = f"{old_namespace}/{old_release}"
        if accepted != expected:
            key = "airflow.releaseName" if old_release != a.release_name else "airflow.namespace"
            value = a.release_name if old_release != a.release_name else a.namespace
            raise ConfigError(
                key,
                value,
                f"this stack last deployed release '{old_release}' in namespace '{old_namespace}'. Changing it "
                f"loses data: {_lost(previous)}. Nothing has been changed.",
                f"keep airflow.releaseName '{old_release}' and airflow.namespace '{old_namespace}'. To move on "
                "purpose: (1) back up the metadata database (kubectl exec -n "
                f"{old_namespace} {old_release}-postgresql-0 -- pg_dump -U postgres postgres > airflow.sql, or your "
                "external database's backup) and copy the logs you need; (2) confirm with "
                f"`pulumi config set {ACCEPT_KEY} {expected}`; (3) pulumi up; (4) restore the dump into the new "
                f"database; (5) pulumi config rm {ACCEPT_KEY}.",
            )
    dropped = sorted(set(previous.get("retainedClaims") or ()) - set(retained_claims(stack)))
    current = f"{a.namespace}/{a.release_name}"
    if dropped and accepted != current:
        raise ConfigError(
            _claim_key(dropped[0], stack),
            dropped[0],
            f"this change stops declaring the claim(s) {', '.join(dropped)}, which hold data (logs, DAGs, "
            "database dumps, dashboards): they stay in the cluster, orphaned, and switching back later fails with "
            "'already exists'. Nothing has been changed.",
            "keep the setting that declares them. To drop them for good: copy what you need, delete them "
            f"(kubectl delete pvc -n <namespace> <name>), confirm with `pulumi config set {ACCEPT_KEY} {current}`, "
            "unprotect each claim and the PersistentVolume a hostPath or claim source declared beside it in "
            "Pulumi's state (they are protected, so `up` cannot forget them otherwise: `pulumi state unprotect "
            "'<urn>'`; `pulumi stack --show-urns | grep -E 'PersistentVolume(Claim)?::'` lists the URNs), "
            f"pulumi up, then pulumi config rm {ACCEPT_KEY}.",
        )
    old_gen = previous.get("fernetGeneration")
    if isinstance(old_gen, float) and old_gen.is_integer():
        old_gen = int(old_gen)  # outputs travel as protobuf numbers (doubles)
    if isinstance(old_gen, int) and not isinstance(old_gen, bool):
        gen, key = a.fernet.generation, "airflow.fernetKey.generation"
        if gen < old_gen:
            raise ConfigError(
                key,
                gen,
                f"the deployed key generation is {old_gen}: everything Airflow encrypted since is encrypted with it, "
                "and a lower generation would drop it from the key list (connections, variables and trigger "
                "arguments would no longer decrypt).",
                f"keep {key} at {old_gen} (or raise it to {old_gen + 1} to rotate).",
            )
        if gen > old_gen + 1:
            raise ConfigError(
                key,
                gen,
                f"the deployed key generation is {old_gen}; {gen} would list only generations {gen} and {gen - 1}, "
                f"so key {old_gen}, which encrypted the data, would be dropped before anything re-encrypts it.",
                f"raise the generation one step at a time: set {key} to {old_gen + 1}, rotate, then go on.",
            )
        if gen == old_gen + 1 and not a.fernet.keep_previous:
            raise ConfigError(
                "airflow.fernetKey.keepPrevious",
                False,
                f"this `up` raises the generation from {old_gen} to {gen}: without keepPrevious the previous key "
                "leaves the list before the rotation Job re-encrypts what it encrypted.",
                "raise the generation with keepPrevious true (the default) and rotate: true; after the Job has "
                "completed, set keepPrevious false in a later `up`.",
            )


def _claim_key(claim: str, stack: StackConfig) -> str:
    if claim.endswith("-logs"):
        return "logs.mode"
    if claim.endswith("-dags"):
        return "airflow.dags.mode"
    if claim.endswith("-metadata-backups"):
        return "maintenance.backup"
    return "monitoring.mode"


def _in_stack() -> bool:
    """Is the program a stack's own (not a component package serving another language)?"""
    import pulumi.runtime

    return pulumi.runtime.get_root_resource() is not None


def guard(platform: str, stack: StackConfig) -> None:
    """Refuse a change from what the platform named `platform` deployed last that would lose data."""
    if _in_stack():
        check_change(previous_identity(output_name(platform)), stack, stack.identity_change)


def record(platform: str, stack: StackConfig) -> None:
    """Export the identity the next run's `guard` compares with."""
    import pulumi

    if _in_stack():
        pulumi.export(output_name(platform), identity(stack))


def previous_identity(output: str = OUTPUT) -> dict[str, Any] | None:
    """The identity output of this stack's last deployment (None on its first)."""
    import pulumi
    from pulumi.runtime.sync_await import _sync_await

    org = pulumi.get_organization() or "organization"
    ref = pulumi.StackReference(f"{org}/{pulumi.get_project()}/{pulumi.get_stack()}")
    details = _sync_await(ref.get_output_details(output))
    value = details.value if details.value is not None else details.secret_value
    return dict(value) if isinstance(value, Mapping) else None
