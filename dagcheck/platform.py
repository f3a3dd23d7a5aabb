"""Step 3: the platform's own rules, checked against the stack the DAGs will run on.

The stack is read by the components' own parser (`components.platform.config.parse_stack`), so
dags-check and `pulumi up` agree on what exists: the namespaces Airflow's task accounts
may start pods in (Airflow's own, each team's), the ServiceAccounts the stack creates
there, the Secrets each team's namespace holds, each namespace's Pod Security level, and
the Spark job namespaces and accounts.

Templated fields (`{{ var.value.get("name", "default") }}`, as `k8s_conventions` writes
them) are resolved the way the task would see them on this stack: the Variables the
stack delivers (`variables`, `taskImages`, Spark's), else the default in the template.
A value that can only be known when the task runs is a note, not a guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.airflow.config.task_images import pin_problem, task_image_variables
from components.platform.config import StackConfig
from components.platform.environment import merged
from components.spark.values import airflow_variables as spark_variables
from components.teams.config import Team

from .findings import Finding, Level

_VAR_GET = re.compile(
    r"""^\{\{\s*var\.value\.get\(\s*(["'])(?P<name>[^"']+)\1\s*(?:,\s*(["'])(?P<default>[^"']*)\3\s*)?\)\s*\}\}$"""
)
_VAR_ATTR = re.compile(r"^\{\{\s*var\.value\.(?P<name>[A-Za-z0-9_]+)\s*\}\}$")

RESTRICTED_ASKS = (
    'allowPrivilegeEscalation != false (container "base" must set securityContext.allowPrivilegeEscalation=false)',
    'unrestricted capabilities (container "base" must set securityContext.capabilities.drop=["ALL"])',
    'runAsNonRoot != true (pod or container "base" must set securityContext.runAsNonRoot=true)',
    'seccompProfile (pod or container "base" must set securityContext.seccompProfile.type to "RuntimeDefault" '
    'or "Localhost")',
)
POD_DEFAULTS_FIX = (
    "pass **pod_defaults() from k8s_conventions (a non-root uid, every capability dropped, RuntimeDefault)"
)


def delivered_variables(stack: StackConfig) -> dict[str, str]:
    """The Airflow Variables the stack hands every task (as AirflowRelease `variables`)."""
    platform = {**spark_variables(stack.spark), **task_image_variables(stack.task_images)}
    return merged(stack.variables, platform, "variables")


@dataclass(frozen=True)
class Resolved:
    value: str | None
    """The value on this stack, or None when it is only known at run time."""
    source: str
    """Where it came from, for messages: `the literal`, `Variable 'x'`, `the default of Variable 'x'`."""


def resolve(value: Any, variables: Mapping[str, str]) -> Resolved:
    if value is None:
        return Resolved(None, "unset")
    text = str(value)
    match = _VAR_GET.match(text) or _VAR_ATTR.match(text)
    if match:
        name = match.group("name")
        if name in variables:
            return Resolved(variables[name], f"Variable {name!r} (set by the stack)")
        default = match.groupdict().get("default")
        if default is not None:
            return Resolved(default, f"the default of Variable {name!r} (the stack does not set it)")
        return Resolved(None, f"Variable {name!r}")
    if "{{" in text or "{%" in text:
        return Resolved(None, "a template")
    return Resolved(text, "the literal")


@dataclass(frozen=True)
class Namespaces:
    """What the stack grants, by namespace."""

    stack: StackConfig

    @property
    def airflow(self) -> str:
        return self.stack.airflow.namespace

    def team(self, namespace: str) -> Team | None:
        return next((t for t in self.stack.teams if t.namespace == namespace), None)

    def pod_namespaces(self) -> list[str]:
        return [self.airflow, *(t.namespace for t in self.stack.teams)]

    def accounts(self, namespace: str) -> list[str]:
        team = self.team(namespace)
        return ["default", team.service_account] if team else ["default"]

    def secrets(self, namespace: str) -> list[str]:
        team = self.team(namespace)
        declared = [ref.split("/", 1)[1] for ref in self.stack.cluster.secrets if ref.split("/", 1)[0] == namespace]
        return [*(team.secrets if team else ()), *declared]

    def pod_security(self, namespace: str) -> str | None:
        team = self.team(namespace)
        return team.pod_security if team else None

    def describe(self) -> str:
        teams = ", ".join(f"{t.namespace} (team {t.name})" for t in self.stack.teams)
        return f"{self.airflow} (Airflow's own)" + (f", {teams}" if teams else "; no teams")


class Checker:
    def __init__(self, stack: StackConfig, stack_name: str) -> None:
        self.stack = stack
        self.name = stack_name
        self.ns = Namespaces(stack)
        self.variables = delivered_variables(stack)
        self.findings: list[Finding] = []

    def add(self, task: Mapping[str, Any], level: Level, message: str, fix: str) -> None:
        where = f"task {task['dag_id']}.{task['task_id']}"
        self.findings.append(Finding(task["file"], int(task["line"]), level, "platform", f"{where}: {message}", fix))

    def unknown(self, task: Mapping[str, Any], what: str, resolved: Resolved) -> None:
        self.add(
            task,
            "INFO",
            f"{what} comes from {resolved.source}, known only when the task runs; not checked",
            "give it a default (k8s_conventions.variable(name, default)) or set it in the stack's variables",
        )

    # -- KubernetesPodOperator -------------------------------------------------------------

    def pod(self, task: Mapping[str, Any]) -> None:
        ns = resolve(task.get("namespace"), self.variables)
        if ns.source == "unset":  # the provider falls back to the namespace of the pod running the task
            ns = Resolved(self.ns.airflow, "unset: the namespace of the task's own pod")
        image = resolve(task.get("image"), self.variables)
        self.image(task, image, "image")
        if ns.value is None:
            self.unknown(task, "the namespace", ns)
            return
        namespace = ns.value
        if namespace not in self.ns.pod_namespaces():
            self.add(
                task,
                "ERROR",
                f"namespace {namespace!r} ({ns.source}) is not granted by stack {self.name!r}: Airflow's task accounts "
                f"may create pods only in {self.ns.describe()}, so the pod is refused (403 Forbidden)",
                "use a granted namespace (k8s_conventions.task_namespace(), or a team's), or add a team with "
                f"namespace {namespace!r} to the stack's `teams`",
            )
            return
        account = resolve(task.get("service_account") or "default", self.variables)
        if account.value is not None and account.value not in self.ns.accounts(namespace):
            self.add(
                task,
                "ERROR",
                f"service account {account.value!r} does not exist in namespace {namespace!r}: the pod is refused "
                f"(error looking up service account {namespace}/{account.value})",
                f"use one the stack creates there: {', '.join(self.ns.accounts(namespace))}",
            )
        self.secrets(task, namespace)
        self.security(task, namespace)

    def image(self, task: Mapping[str, Any], image: Resolved, what: str) -> None:
        if image.value is None:
            self.unknown(task, f"the {what}", image)
            return
        problem = pin_problem(image.value)
        if problem:
            self.add(
                task,
                "ERROR",
                f"{what} {image.value!r} ({image.source}) {problem}",
                "pin it by tag or digest (python:3.13.7-slim-bookworm, repo@sha256:...); for k8s_conventions roles "
                "set the stack's taskImages.<role>",
            )

    def secrets(self, task: Mapping[str, Any], namespace: str) -> None:
        team = self.ns.team(namespace)
        for secret in task.get("secrets") or []:
            name, via = secret.get("name"), secret.get("via")
            if team is None:
                self.add(
                    task,
                    "ERROR",
                    f"reads Secret {name!r} ({via}) in Airflow's namespace {namespace!r}: task pods there would share "
                    "it with Airflow's own credentials, and the stack declares no task Secrets there",
                    "run the task in a team's namespace and list the Secret in that team's `secrets` "
                    "(its data in `teamSecrets`)",
                )
            elif name not in self.ns.secrets(namespace):
                index = self.stack.teams.index(team)
                self.add(
                    task,
                    "ERROR",
                    f"reads Secret {name!r} ({via}), which team {team.name!r} does not have in {namespace!r} "
                    f"(teams[{index}].secrets: {', '.join(team.secrets) or 'none'}): the pod stays in "
                    "CreateContainerConfigError",
                    f"add {name!r} to teams[{index}].secrets and its data to `teamSecrets`, or use one of the team's",
                )

    def security(self, task: Mapping[str, Any], namespace: str) -> None:
        level = self.ns.pod_security(namespace)
        if level is None:
            return
        if task.get("custom_pod"):
            self.add(
                task,
                "INFO",
                f"the pod comes from full_pod_spec or pod_template_file; its Pod Security ({level}) is not checked",
                "check it with `kubectl apply --dry-run=server` in the namespace",
            )
            return
        pod, container = task.get("pod_security") or {}, task.get("container_security") or {}
        if container.get("privileged") or task.get("host_network"):
            self.add(
                task,
                "ERROR",
                f"a privileged or host-network pod violates Pod Security {level!r} in {namespace!r}: the pod is "
                f'refused (pods "..." is forbidden: violates PodSecurity "{level}:latest")',
                "drop privileged / hostnetwork",
            )
        if level != "restricted":
            return

        def either(key: str) -> Any:
            return container.get(key) if container.get(key) is not None else pod.get(key)

        missing = []
        if container.get("allowPrivilegeEscalation") is not False:
            missing.append(RESTRICTED_ASKS[0])
        if "ALL" not in ((container.get("capabilities") or {}).get("drop") or []):
            missing.append(RESTRICTED_ASKS[1])
        if either("runAsNonRoot") is not True or either("runAsUser") == 0:
            missing.append(RESTRICTED_ASKS[2])
        if (either("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            missing.append(RESTRICTED_ASKS[3])
        if missing:
            self.add(
                task,
                "ERROR",
                f"the pod violates Pod Security 'restricted' in {namespace!r} and is refused: pods \"...\" is "
                f'forbidden: violates PodSecurity "restricted:latest": {", ".join(missing)}',
                POD_DEFAULTS_FIX + "; an image that must run as root needs the team's podSecurity.level 'baseline' "
                "with a reason",
            )
        elif either("runAsUser") is None:
            self.add(
                task,
                "INFO",
                "runAsNonRoot without runAsUser: an image whose USER is root is stopped by the kubelet with "
                "'container has runAsNonRoot and image will run as root'",
                "set run_as_user to the image's non-root uid (pod_defaults(uid=...))",
            )

    # -- SparkKubernetesOperator -----------------------------------------------------------

    def spark(self, task: Mapping[str, Any]) -> None:
        spark = self.stack.spark
        if not spark.enabled:
            self.add(
                task,
                "ERROR",
                f"submits a SparkApplication, but stack {self.name!r} runs no Spark Operator: nothing would run it",
                "set the stack's `spark` key (spark: {} takes the defaults)",
            )
            return
        ns = resolve(task.get("namespace"), self.variables)
        if ns.value is None:
            self.unknown(task, "the SparkApplication's namespace", ns)
        elif ns.value not in spark.job_namespace_names:
            self.add(
                task,
                "ERROR",
                f"SparkApplication namespace {ns.value!r} ({ns.source}) is not a Spark job namespace of stack "
                f"{self.name!r} ({', '.join(spark.job_namespace_names)}): Airflow may not create it there and the "
                "operator does not watch it",
                f"use namespace={spark.default_job_namespace!r} (Variable 'spark_job_namespace'), or add the namespace "
                "to spark.jobNamespaces",
            )
        app = task.get("spark")
        if app is None:
            self.add(
                task,
                "INFO",
                "the SparkApplication (template_spec / application_file) could not be read here; its accounts are "
                "not checked",
                "pass template_spec, or an application_file next to the DAG file",
            )
            return
        for role, expected in (
            ("driver", spark.service_accounts.driver),
            ("executor", spark.service_accounts.executor),
        ):
            account = resolve(app.get(f"{role}_service_account"), self.variables)
            if account.source == "unset" and role == "executor":
                continue
            if account.value is None and account.source != "unset":
                self.unknown(task, f"the {role}'s service account", account)
            elif account.value != expected:
                shown = "none (the namespace's 'default')" if account.value is None else repr(account.value)
                self.add(
                    task,
                    "ERROR",
                    f"spec.{role}.serviceAccount is {shown}: the stack grants Spark {role}s {expected!r} "
                    f"(spark.serviceAccounts.{role}), "
                    + (
                        "so the driver cannot create its executors"
                        if role == "driver"
                        else "so the executors run with an account the stack did not make for them"
                    ),
                    f"set spec.{role}.serviceAccount to {expected!r} (Variable 'spark_{role}_service_account')",
                )
        if app.get("image") is not None:
            self.image(task, resolve(app["image"], self.variables), "SparkApplication image")


def check(stack: StackConfig, stack_name: str, tasks: Sequence[Mapping[str, Any]]) -> list[Finding]:
    checker = Checker(stack, stack_name)
    for task in tasks:
        if task.get("kind") == "spark":
            checker.spark(task)
        else:
            checker.pod(task)
    return checker.findings
