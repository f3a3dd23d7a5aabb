# Longer than 600 lines: one module holds every Pulumi scenario of the e2e run, each a short sequence of steps.
"""The Pulumi scenarios: the real engine, providers and charts against a fresh local control
plane each (README, "End-to-end run").

Each scenario gets a `Deployment`: its own control plane, its own copy of the project and
its own stack in a local backend. Each step prints its duration; a failing step names the
failing command and the last lines of its log (run.py).
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.core.cluster_target import SECRET_MUTABLE_KEY
from components.core.merge import deep_merge

from . import checks, stuck
from .cluster import ControlPlane
from .harness import (
    ROOT,
    STACK,
    WAIT_SECONDS,
    Pulumi,
    StepError,
    Steps,
    check_cluster,
    check_namespaces,
    check_replica_change,
    copy_project,
    describe_workloads,
    install_plugins,
    kube_minor,
    pulumi_env,
    set_replicas,
    user_namespaces,
    verify_retention,
    write_stack_config,
)
from .kube import Kube, wait_for

CHART_VERSIONS = {"airflow": "1.21.0", "spark-operator": "2.5.2", "kube-prometheus-stack": "88.5.3", "keda": "2.20.2"}
TEAMS = [
    {"name": "analytics", "quota": {"cpu": "4", "memory": "8Gi"}},
    {"name": "ml", "namespace": "ml-tasks", "allowExec": True},
]
# What the e2e stacks turn off, through each chart's documented values (extraValues), because
# under kwok nothing answers an admission webhook: the API server would call the webhook's
# Service and every matching request would fail or hang.
SPARK_NO_WEBHOOK = {"webhook": {"enable": False}}
PROMETHEUS_NO_WEBHOOK = {"prometheusOperator": {"admissionWebhooks": {"enabled": False}, "tls": {"enabled": False}}}
UPGRADE_IMAGES = (("3.2.0", None), ("3.2.1", None), ("3.2.1", "3.2.1-python3.12"))


@dataclass
class Harness:
    """What every scenario shares: tools, the chart repository, the work folder."""

    steps: Steps
    found: dict[str, Path]
    work: Path
    stages: list[Path]
    charts: Callable[[str], dict[str, str]]  # chart name -> the stack's `chart` object
    charts_dir: Path  # the chart archives (the offline preview reads them for the fidelity check)
    planes: list[ControlPlane] = field(default_factory=list)
    plugins_installed: bool = False
    screenshots: Path | None = None  # where the node scenario's UI screenshots are kept (besides the run's folder)

    def chart(self, name: str) -> dict[str, str]:
        return self.charts(name)


@dataclass
class Deployment:
    """One control plane, one project copy, one stack."""

    harness: Harness
    name: str
    plane: ControlPlane
    kube: Kube
    project: Path
    pulumi: Pulumi
    config: dict[str, Any]
    stack: str = STACK
    # The secret keys set with `pulumi config set --secret` (key without the project -> value): the
    # fidelity check gives them to the offline preview (AIRFLOW_K8S_SECRET_<KEY>), which predicts
    # what derives from them (the migration Job's name follows an external database's host and name).
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def steps(self) -> Steps:
        return self.harness.steps

    @contextmanager
    def step(self, what: str, *, setup: bool = False) -> Iterator[None]:
        with self.steps.step(f"[{self.name}] {what}", setup=setup):
            yield

    def echo(self, line: str) -> None:
        self.steps.echo("    " + line)

    def write(self) -> None:
        write_stack_config(self.project, self.config)

    @property
    def airflow(self) -> dict[str, Any]:
        airflow: dict[str, Any] = self.config["airflow-k8s:airflow"]
        return airflow

    @property
    def namespace(self) -> str:
        return str(self.airflow.get("namespace", "airflow"))

    def namespaces(self) -> list[str]:
        return user_namespaces(self.kube)

    def up(self, *extra: str) -> str:
        summary = self.pulumi.summary(self.pulumi.run("up", "--yes", "--skip-preview", *extra))
        self.echo(summary)
        return summary

    def up_no_changes(self) -> None:
        self.echo(self.pulumi.summary(self.pulumi.run("up", "--yes", "--expect-no-changes")))

    def preview_json(self) -> dict[str, Any]:
        plan: dict[str, Any] = self.pulumi.json("preview", "--json")
        return plan

    def export(self) -> dict[str, Any]:
        export: dict[str, Any] = self.pulumi.json("stack", "export", "--show-secrets")
        return export

    def check_all(self) -> None:
        """The Airflow namespace (migration Job complete) and every other user namespace."""
        check_cluster(self.kube, self.namespace)
        others = [ns for ns in self.namespaces() if ns != self.namespace]
        check_namespaces(self.kube, others)
        for ns in self.namespaces():
            described = describe_workloads(self.kube, ns)
            if described:
                self.echo(f"{ns}: {described}")


def start(harness: Harness, name: str, config: dict[str, Any], node_names: list[str] | None = None) -> Deployment:
    """A fresh control plane and project copy for scenario `name`, its stack initialised."""
    work = harness.work / name
    steps = harness.steps
    with steps.step(f"[{name}] start a control plane; copy the project; stack init", setup=True):
        kwargs: dict[str, Any] = {"node_names": node_names} if node_names else {}
        plane = ControlPlane(work / "cluster", harness.found, harness.stages, steps.echo, **kwargs)
        harness.planes.append(plane)
        kube = plane.start()
        deployment = deploy_project(harness, name, plane, kube, config)
    return deployment


def deploy_project(harness: Harness, name: str, plane: ControlPlane, kube: Kube, config: dict[str, Any]) -> Deployment:
    """A copy of the project and its stack in a local backend, against `plane` (started)."""
    work = harness.work / name
    project = copy_project(work / "project")
    env = pulumi_env(work, harness.found, plane.kubeconfig_path)
    env["PULUMI_HOME"] = str(harness.work / "pulumi-home")  # plugins installed once per run
    env[RUN_MARKER] = str(harness.work)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pulumi = Pulumi(harness.found["pulumi"], project, env, logs)
    pulumi.stall = functools.partial(stall_watch, kube)
    if not harness.plugins_installed:
        install_plugins(pulumi, harness.found)
        harness.plugins_installed = True
    pulumi.env["PULUMI_IGNORE_AMBIENT_PLUGINS"] = "true"
    pulumi.run("login", env["PULUMI_BACKEND_URL"])
    pulumi.run("stack", "init", STACK, "--secrets-provider", "passphrase")
    config["airflow-k8s:cluster"] = {**config.get("airflow-k8s:cluster", {}), "kubernetesVersion": kube_minor(kube)}
    deployment = Deployment(harness, name, plane, kube, project, pulumi, config)
    deployment.write()
    harness.steps.echo(f"    API server {plane.server}; project {project}")
    return deployment


RUN_MARKER = "AIRFLOW_K8S_E2E_RUN"


# --- stack configs -------------------------------------------------------------------------


def stall_watch(kube: Kube) -> Callable[[], str | None]:
    """e2e.stuck's stall check over every user namespace, those that `up` creates included."""
    watched: list[str] | None = None
    check: Callable[[], str | None] = lambda: None  # noqa: E731

    def stalled() -> str | None:
        nonlocal watched, check
        names = user_namespaces(kube)
        if names != watched:  # a new namespace is progress: watch it from now on
            watched, check = names, stuck.stall_check(kube, names)
        return check()

    return stalled


def dev_config(harness: Harness, keys: tuple[str, ...] = ("airflow", "logs", "cluster")) -> dict[str, Any]:
    """Pulumi.dev.yaml's `keys`, with every chart from the local repository."""
    dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    # With the provider setting a Fernet rotation needs (the cluster: the harness points it at its own).
    chosen = [k for k in dev if k.split(":", 1)[1] in keys or k == SECRET_MUTABLE_KEY]
    config: dict[str, Any] = {k: json.loads(json.dumps(dev[k])) for k in chosen}
    return local_charts(harness, config)


def local_charts(harness: Harness, config: dict[str, Any]) -> dict[str, Any]:
    """Every chart from the local repository; the charts' admission webhooks off (kwok)."""
    # Spark and kube-prometheus-stack through their extraValues, KEDA through its typed key.
    config["airflow-k8s:airflow"]["chart"] = harness.chart("airflow")
    spark = config.get("airflow-k8s:spark")
    if isinstance(spark, dict) and spark.get("enabled", True):
        spark["chart"] = harness.chart("spark-operator")
        spark["extraValues"] = deep_merge(spark.get("extraValues") or {}, SPARK_NO_WEBHOOK)
    monitoring = config.get("airflow-k8s:monitoring")
    if isinstance(monitoring, dict) and monitoring.get("mode") == "install":
        install = monitoring.setdefault("install", {})
        install["chart"] = harness.chart("kube-prometheus-stack")
        install["extraValues"] = deep_merge(install.get("extraValues") or {}, PROMETHEUS_NO_WEBHOOK)
    keda = config.get("airflow-k8s:keda")
    if isinstance(keda, dict) and keda.get("mode") == "install":
        install = keda.setdefault("install", {})
        install["chart"] = harness.chart("keda")
        install["webhooks"] = False  # the typed key (README: keda.install.webhooks)
    return config


# --- checks shared by scenarios ---------------------------------------------------------------


@contextmanager
def secrets_in_environment(secrets: dict[str, str]) -> Iterator[None]:
    """`AIRFLOW_K8S_SECRET_<KEY>` for each secret key while the block runs, as before afterwards."""
    from components.offline.program import secret_env_name

    names = {secret_env_name(key): value for key, value in secrets.items()}
    before = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def fidelity(d: Deployment) -> None:
    """What the offline preview predicts for this stack against what the API server holds."""
    from . import fidelity as measure

    with secrets_in_environment(d.secrets):
        predicted = measure.predicted_objects(d.project, d.stack, charts=d.harness.charts_dir)
    finished = finished_and_deleted(d.kube, predicted)
    for job in finished:
        d.echo(f"Job {job}: ran to completion and was deleted by its ttlSecondsAfterFinished (Event Completed)")
    predicted = [
        o
        for o in predicted
        if f"{o['metadata'].get('namespace')}/{o['metadata']['name']}" not in finished or o.get("kind") != "Job"
    ]
    live = measure.live_objects(d.kube, predicted, d.namespaces())
    differences = measure.compare(predicted, live)
    d.echo(f"{len(predicted)} objects predicted, {len(live)} live, {len(differences)} differences")
    for line in differences:
        d.echo(f"  {line}")
    if differences:
        raise StepError(f"the offline preview's prediction differs from the cluster in {len(differences)} ways")


def fidelity_step(d: Deployment, when: str = "") -> None:
    """The fidelity check as a step of its own (after every `up` that changes what runs)."""
    with d.step(f"fidelity{' ' + when if when else ''}: the offline preview's objects against the live ones"):
        fidelity(d)


def finished_and_deleted(kube: Kube, predicted: list[dict[str, Any]]) -> set[str]:
    """`namespace/name` of each predicted Job with a ttlSecondsAfterFinished that is no longer in
    the cluster but whose Completed Event is: it ran, and was deleted as its TTL says."""
    out = set()
    for obj in predicted:
        meta = obj.get("metadata") or {}
        if obj.get("kind") != "Job" or (obj.get("spec") or {}).get("ttlSecondsAfterFinished") is None:
            continue
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name"))
        if kube.read("batch/v1", "Job", name, namespace) is not None:
            continue
        events = kube.list("v1", "Event", namespace)
        if any(
            e.get("reason") == "Completed"
            and (e.get("involvedObject") or {}).get("kind") == "Job"
            and (e.get("involvedObject") or {}).get("name") == name
            for e in events
        ):
            out.add(f"{namespace}/{name}")
    return out


def guarded_change(d: Deployment, what: str, change: Callable[[], None], expect: Callable[[], None]) -> None:
    """Apply a config change: no pulumi-random resource replaced or deleted (from the plan), no
    Secret's data changed (through the API), every workload back Available (`expect`)."""
    before = checks.secret_fingerprints_in(d.kube, d.namespaces())
    change()
    d.write()
    plan = d.preview_json()
    replaced = checks.random_replacements(plan)
    d.echo(f"plan: {checks.plan_ops(plan)}")
    if replaced:
        raise StepError(f"{what} would replace generated secrets:\n" + "\n".join(replaced))
    d.up()
    expect()
    changed = checks.changed_secrets(before, checks.secret_fingerprints_in(d.kube, d.namespaces()))
    if changed:
        raise StepError(f"{what} changed Secrets:\n" + "\n".join(changed))


def airflow_images(spec: dict[str, Any]) -> list[str]:
    """The images of a pod spec's containers that run Airflow: `apache/airflow`, but not the
    chart's PgBouncer and its exporter, which that repository carries under `airflow-*` tags."""
    refs = [str(c.get("image", "")) for c in spec.get("containers") or []]
    return [r for r in refs if r.startswith("apache/airflow:") and not r.split(":", 1)[1].startswith("airflow-")]


def wait_images(d: Deployment, image: str) -> None:
    """Every Deployment and StatefulSet of the Airflow chart that runs Airflow runs `image`, and is
    Available."""

    def rolled() -> str | None:
        stale = []
        for w in checks.live_workloads(d.kube, d.namespace):
            if w["kind"] not in ("Deployment", "StatefulSet") or "postgresql" in w["metadata"]["name"]:
                continue
            main = airflow_images(checks.pod_spec_of(w) or {})
            if main and image not in main:
                stale.append(f"{w['kind']}/{w['metadata']['name']} runs {main}")
        return "; ".join(stale) or None

    wait_for(f"Airflow workloads on {image}", rolled, timeout=WAIT_SECONDS, interval=2)
    check_cluster(d.kube, d.namespace)


# --- scenarios ---------------------------------------------------------------------------------


def scenario_dev(h: Harness) -> None:
    """The dev stack without Spark and monitoring: preview, up, up again, a replica change, destroy."""
    d = start(h, "dev", dev_config(h))
    with d.step("pulumi preview", setup=True):
        d.echo(d.pulumi.summary(d.pulumi.run("preview", "--diff")))
    with d.step("pulumi up: workloads Available, referenced Secrets present"):
        d.up()
        d.check_all()
    fidelity_step(d)
    with d.step("pulumi up again: no changes"):
        d.up_no_changes()
    with d.step("scheduler replicas 1 -> 2: only the Release updates, no Secret changed"):
        before = checks.secret_fingerprints(checks.live_secrets(d.kube, d.namespace))
        set_replicas(d.config, "scheduler", 2)
        d.write()
        problems = checks.plan_problems(d.preview_json(), allowed_updates=("kubernetes:helm.sh/v3:Release",))
        if problems:
            raise StepError("the replica change would do more than update the Release:\n" + "\n".join(problems))
        d.up()
        check_replica_change(d.kube, d.namespace, before)
    fidelity_step(d, "after the replica change")
    with d.step("pulumi destroy: retained objects stay"):
        destroy_and_verify(d)


def again_fidelity_destroy(d: Deployment) -> None:
    """The end of a deployed stack's scenario: up again (no changes), fidelity, destroy."""
    with d.step("pulumi up again: no changes"):
        d.up_no_changes()
    fidelity_step(d)
    with d.step("pulumi destroy", setup=True):
        destroy(d)


def destroy(d: Deployment) -> None:
    """`pulumi destroy`: it deletes everything but the protected resources (what holds data) and
    fails naming those; `pulumi destroy --exclude-protected` then ends cleanly, keeping them."""
    proc = d.pulumi.run("destroy", "--yes", "--skip-preview", check=False)
    d.echo(d.pulumi.summary(proc))
    if proc.returncode == 0:
        return
    output = proc.stdout + proc.stderr
    refused = sorted({m for line in output.splitlines() if (m := _protected_urn(line))})
    if not refused or any(
        line.strip().startswith("error:") and not _protected_urn(line) and line.strip() != "error: update failed"
        for line in output.splitlines()
    ):
        raise StepError(
            f"`pulumi destroy` exited {proc.returncode} for another reason than protection", d.pulumi.last_log
        )
    d.echo(f"refused to delete {len(refused)} protected resources: {', '.join(refused)}")
    d.echo(d.pulumi.summary(d.pulumi.run("destroy", "--yes", "--skip-preview", "--exclude-protected")))


def _protected_urn(line: str) -> str | None:
    if "cannot be deleted" not in line or "urn:pulumi:" not in line:
        return None
    return line.split("urn:pulumi:", 1)[1].split('"', 1)[0].rsplit("::", 1)[-1]


def destroy_and_verify(d: Deployment, namespaces: list[str] | None = None, exclude_protected: bool = False) -> None:
    """`destroy` (plain, then `--exclude-protected`; or `exclude_protected`: only that, as the docs
    say), then what the state retains is there and the rest is gone."""
    state = checks.state_resources(d.pulumi.json("stack", "export"))
    retained = {i for r in state if (r.get("retainOnDelete") or r.get("protect")) and (i := checks.kube_identity(r))}
    deleted = {i for r in state if not (r.get("retainOnDelete") or r.get("protect")) and (i := checks.kube_identity(r))}
    if exclude_protected:
        d.echo(d.pulumi.summary(d.pulumi.run("destroy", "--yes", "--skip-preview", "--exclude-protected")))
    else:
        destroy(d)
    for ns in namespaces or [d.namespace]:
        verify_retention(d.kube, {i for i in retained if i[2] in (ns, "")}, deleted, ns, d.steps)


def scenario_platform(h: Harness) -> None:
    """The whole platform: dev with Spark, kube-prometheus-stack and two teams."""
    config = dev_config(h, ("airflow", "logs", "cluster", "spark", "monitoring"))
    config["airflow-k8s:teams"] = json.loads(json.dumps(TEAMS))
    d = start(h, "platform", config)
    with d.step("pulumi up (first): every release, ServiceMonitors and PrometheusRule after their CRDs", setup=True):
        d.up()
    with d.step("check: workloads Available in every namespace; monitors and rules exist"):
        d.check_all()
        monitors = d.kube.list("monitoring.coreos.com/v1", "ServiceMonitor")
        rules = d.kube.list("monitoring.coreos.com/v1", "PrometheusRule")
        ours = [m for m in monitors if m["metadata"]["namespace"] == d.namespace]
        d.echo(f"ServiceMonitors: {sorted(m['metadata']['namespace'] + '/' + m['metadata']['name'] for m in ours)}")
        d.echo(f"PrometheusRules: {len(rules)} in the cluster")
        if not ours or not any(r["metadata"]["namespace"] == d.namespace for r in rules):
            raise StepError(f"no ServiceMonitor or PrometheusRule for Airflow in {d.namespace}")
    again_fidelity_destroy(d)


def scenario_upgrade(h: Harness) -> None:
    """3.2.0 -> 3.2.1 by image, a second image change at once, then KubernetesExecutor -> Celery."""
    config = dev_config(h)
    config["airflow-k8s:airflow"]["version"] = "3.2.0"
    d = start(h, "upgrade", config)
    with d.step("pulumi up on Airflow 3.2.0"):
        d.up()
        wait_images(d, "apache/airflow:3.2.0")
    fidelity_step(d, "on 3.2.0")
    for version, tag in UPGRADE_IMAGES[1:]:
        image = f"apache/airflow:{tag or version}"

        def change(version: str = version, tag: str | None = tag) -> None:
            d.airflow["version"] = version
            if tag:
                d.airflow.setdefault("image", {})["tag"] = tag

        with d.step(f"upgrade to {image}: no random replaced, no Secret changed, workloads Available"):
            guarded_change(d, f"the image change to {image}", change, functools.partial(wait_images, d, image))
        fidelity_step(d, f"after the upgrade to {image}")
    with d.step("executor KubernetesExecutor -> CeleryExecutor: same guarantees"):

        def celery() -> None:
            d.airflow["executor"] = "CeleryExecutor"

        def workers() -> None:
            check_cluster(d.kube, d.namespace)
            kinds = {w["metadata"]["name"] for w in checks.live_workloads(d.kube, d.namespace)}
            if not any("worker" in k for k in kinds) or not any("redis" in k for k in kinds):
                raise StepError(f"no Celery workers or Redis after the executor change: {sorted(kinds)}")

        guarded_change(d, "the executor change", celery, workers)
    fidelity_step(d, "after the executor change")
    with d.step("pulumi up again: no changes"):
        d.up_no_changes()


def scenario_comeback(h: Harness) -> None:
    """destroy, then up again on the same cluster: retained objects taken over, same keys."""
    # With `maintenance`: its backup claim is kept (and must be taken over) like the logs and DAGs claims.
    d = start(h, "comeback", dev_config(h, ("airflow", "logs", "cluster", "maintenance")))
    with d.step("pulumi up"):
        d.up()
        check_cluster(d.kube, d.namespace)
    before = kept_secrets(d)
    with d.step("pulumi destroy: retained Namespace, Secrets and volumes stay"):
        destroy_and_verify(d)
    with d.step("pulumi up again on the same cluster: retained objects taken over, no 'already exists'"):
        up_after_destroy(d, before, check=False)
        check_cluster(d.kube, d.namespace)
    with d.step("the Fernet key Secret holds the same key; no retained Secret changed"):
        same_secrets(d, before)
    fidelity_step(d, "after destroy and up again")
    with d.step("pulumi up again: no changes"):
        d.up_no_changes()


def kept_secrets(d: Deployment) -> dict[str, str]:
    """`namespace/name` -> fingerprint of each Secret the stack protects (kept by a destroy)."""
    state = checks.state_resources(d.pulumi.json("stack", "export"))
    kept = {f"{i[2]}/{i[3]}" for r in state if r.get("protect") and (i := checks.kube_identity(r)) and i[1] == "Secret"}
    fernet = fernet_secret(d)
    if f"{d.namespace}/{fernet[0]}" not in kept:
        raise StepError(f"the Fernet key Secret {d.namespace}/{fernet[0]} is not protected")
    return {k: v for k, v in checks.secret_fingerprints_in(d.kube, [d.namespace]).items() if k in kept}


def up_after_destroy(d: Deployment, before: dict[str, str], check: bool = True) -> None:
    """`pulumi up` after a destroy: it takes over the kept objects (no 'already exists'); with
    `check`, the kept Secrets (the Fernet key's among them) are as they were (`same_secrets`)."""
    proc = d.pulumi.run("up", "--yes", "--skip-preview", check=False)
    d.echo(d.pulumi.summary(proc))
    if proc.returncode != 0:
        hint = " ('already exists')" if "already exists" in proc.stdout + proc.stderr else ""
        raise StepError(f"`pulumi up` after destroy exited {proc.returncode}{hint}", d.pulumi.last_log)
    if check:
        same_secrets(d, before)


def same_secrets(d: Deployment, before: dict[str, str]) -> None:
    """The kept Secrets (`kept_secrets` before the destroy) hold the same data, the Fernet key's too."""
    after = {k: v for k, v in checks.secret_fingerprints_in(d.kube, [d.namespace]).items() if k in before}
    fernet = fernet_secret(d)
    if before.get(f"{d.namespace}/{fernet[0]}") != fernet[1]:
        raise StepError(f"the Fernet key Secret {d.namespace}/{fernet[0]} holds another key after destroy + up")
    changed = checks.changed_secrets(before, after)
    if changed:
        raise StepError("Secrets changed across destroy + up:\n" + "\n".join(changed))
    d.echo(f"Fernet key Secret {fernet[0]}: same data; kept Secrets compared: {sorted(before)}")


def fernet_secret(d: Deployment) -> tuple[str, str]:
    """(name, fingerprint) of the Fernet key Secret AirflowRelease owns."""
    from components.airflow.values.chart import SecretNames

    name = SecretNames(str(d.airflow.get("releaseName", "airflow"))).fernet_key
    fingerprints = checks.secret_fingerprints(checks.live_secrets(d.kube, d.namespace))
    if name not in fingerprints:
        raise StepError(f"no Fernet key Secret {name} in {d.namespace}")
    return name, fingerprints[name]


def scenario_identity(h: Harness) -> None:
    """releaseName, then namespace, changed on a deployed stack: refused before anything
    changes (with what would be lost and how to migrate), or safe."""
    d = start(h, "identity", dev_config(h))
    with d.step("pulumi up"):
        d.up()
        check_cluster(d.kube, d.namespace)
    original = dict(d.airflow)
    for key, value in (("releaseName", "airflow-renamed"), ("namespace", "airflow-moved")):
        try:  # each key is its own step: a failure of the first does not hide the second's outcome
            with d.step(f"change {key} {original.get(key)!r} -> {value!r}: refused with a way forward, or safe"):
                identity_change(d, key, value)
        except StepError as exc:
            d.echo(f"FAILED: {exc}")
        d.config["airflow-k8s:airflow"] = dict(original)
        d.write()


def identity_change(d: Deployment, key: str, value: str) -> None:
    namespaces = d.namespaces()
    objects = checks.object_identities(d.kube, namespaces)
    secrets = checks.secret_fingerprints_in(d.kube, namespaces)
    fernet = fernet_secret(d)
    d.airflow[key] = value
    d.write()
    proc = d.pulumi.run("up", "--yes", check=False)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        errors = [line.strip() for line in output.splitlines() if line.strip().startswith("error:")]
        diagnostics = output.split("Diagnostics:", 1)[-1]
        message = refusal_lines(diagnostics, key)
        d.echo("refused: " + " | ".join(dict.fromkeys(line[:600] for line in (message or errors)[:3])))
        after = checks.object_identities(d.kube, d.namespaces())
        problems = []
        if not message:
            problems.append(f"no error names {key} with what would be lost and how to migrate")
        if after != objects:
            problems.append(f"the cluster changed: +{sorted(after - objects)[:5]} -{sorted(objects - after)[:5]}")
        if checks.changed_secrets(secrets, checks.secret_fingerprints_in(d.kube, d.namespaces())):
            problems.append("Secrets changed although the change was refused")
        if problems:
            raise StepError("; ".join(problems), d.pulumi.last_log)
        d.echo(f"OUTCOME: refused before anything changed ({len(objects)} objects, {len(secrets)} Secrets unchanged)")
        return
    # Accepted: safe only if the old release's data went with it (no new, empty Airflow beside it).
    ns = d.namespace
    check_cluster(d.kube, ns)
    new_fernet = fernet_secret(d)
    releases = {
        w["metadata"].get("labels", {}).get("release")
        for n in d.namespaces()
        for w in checks.live_workloads(d.kube, n)
        if w["kind"] == "Deployment" and "scheduler" in w["metadata"]["name"]
    }
    problems = []
    if new_fernet[1] != fernet[1]:
        problems.append("the Fernet key changed (data encrypted before is unreadable)")
    if len(releases) != 1:
        problems.append(f"{len(releases)} Airflow schedulers run side by side: {sorted(map(str, releases))}")
    if problems:
        raise StepError(f"changing {key} was accepted but is not safe: " + "; ".join(problems), d.pulumi.last_log)
    d.echo("OUTCOME: accepted and safe (one Airflow, same Fernet key)")


LOSS = re.compile(r"\b(lose|loses|losing|lost)\b", re.IGNORECASE)
WAY_FORWARD = re.compile(r"(?<![-\w])(migrat(e|ion|ing)\b|Fix:|to move)", re.IGNORECASE)


def refusal_lines(diagnostics: str, key: str) -> list[str]:
    """The lines of Pulumi's diagnostics that name `key`, say what would be lost and give a way
    forward (how to migrate, a `Fix:`); diff lines and identifiers such as migrateDatabaseJob do
    not count, nor does Pulumi's own "protected" refusal (which names no loss)."""
    lines = [line.strip() for line in diagnostics.splitlines()]
    return [
        line
        for line in lines
        if key in line
        and LOSS.search(line)
        and WAY_FORWARD.search(line)
        and "=>" not in line
        and not line.startswith(("~", "+", "-"))
    ]


TENANTS_PROGRAM = Path(__file__).resolve().parent / "programs" / "two_tenants.py"


def scenario_tenants(h: Harness) -> None:
    """Two AirflowRelease instances in one stack, in two namespaces."""
    config: dict[str, Any] = {"airflow-k8s:airflow": {"chart": h.chart("airflow")}}
    d = start(h, "tenants", config)
    (d.project / "__main__.py").write_text(TENANTS_PROGRAM.read_text())
    with d.step("pulumi up: two releases, each Available in its namespace"):
        d.up()
        for ns in ("tenant-a", "tenant-b"):
            check_cluster(d.kube, ns)
            d.echo(f"{ns}: {describe_workloads(d.kube, ns)}")
    fidelity_step(d, "of both tenants")
    with d.step("pulumi up again: no changes"):
        d.up_no_changes()
    with d.step("pulumi destroy: both releases' workloads gone, retained objects stay"):
        destroy_and_verify(d, ["tenant-a", "tenant-b"])


def scenario_stop(h: Harness) -> None:
    """An interrupted `pulumi up` stops its whole process group; the stack recovers."""
    d = start(h, "stop", dev_config(h))
    with d.step("interrupt `pulumi up` (SIGINT) once its plugins run: no process left behind"):
        interrupt_up(d)
    with d.step("recover: pulumi refresh --clear-pending-creates, then up: workloads Available"):
        d.pulumi.run("refresh", "--yes", "--clear-pending-creates", "--skip-preview")
        d.up()
        check_cluster(d.kube, d.namespace)


def marked_processes(marker: str) -> list[str]:
    """`pid name` of every process whose environment carries RUN_MARKER=marker."""
    found = []
    needle = f"{RUN_MARKER}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(f"{entry.name} {(entry / 'comm').read_text().strip()}")
        except OSError:
            continue
    return found


def interrupt_up(d: Deployment) -> None:
    """Run `pulumi up` through e2e.process in a child Python, SIGINT that child once the
    language host and a provider run, and look for anything of the run still alive."""
    log = d.pulumi.logs / "interrupted-up.log"
    code = (
        "import os, sys; from pathlib import Path; from e2e import process\n"
        "process.run_bounded(sys.argv[1:], cwd=Path.cwd(), env=dict(os.environ), log=Path(os.environ['E2E_LOG']),"
        " timeout=600)\n"
    )
    env = {**d.pulumi.env, "E2E_LOG": str(log), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", code, str(d.pulumi.binary), "--non-interactive", "up", "--yes", "--skip-preview"]
    child_log = (d.pulumi.logs / "interrupted-harness.log").open("w")
    child = subprocess.Popen(
        cmd, cwd=d.project, env=env, start_new_session=True, stdout=child_log, stderr=subprocess.STDOUT
    )
    marker = d.pulumi.env[RUN_MARKER]

    def plugins_running() -> str | None:
        names = " ".join(marked_processes(marker))
        if child.poll() is not None:
            raise StepError(f"`pulumi up` ended by itself ({child.returncode}) before it could be interrupted", log)
        ok = "pulumi-language" in names and "pulumi-resource" in names
        return None if ok else f"running: {names or 'nothing yet'}"

    try:
        wait_for("the language host and a provider plugin", plugins_running, timeout=120, interval=0.2)
        time.sleep(2)
        d.echo("running before the interrupt: " + ", ".join(marked_processes(marker)))
        os.kill(child.pid, signal.SIGINT)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        child_log.close()
    time.sleep(1)
    left = marked_processes(marker)
    if left:
        raise StepError(f"processes left running after the interrupt: {', '.join(left)}", log)
    d.echo(f"interrupted (exit {child.returncode}); nothing of the run left running")


def scenario_stack(h: Harness, stack: str) -> None:
    """Any stack file of the repository, its charts local and webhooks off, its secrets filled
    with stand-ins: preview, up (bounded: a stuck up names the pending object), up again, destroy."""
    from . import stackinfo

    doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()) or {}
    raw = doc.get("config") or {}
    secure = {k: v for k, v in raw.items() if isinstance(v, dict) and "secure" in v}
    config = local_charts(h, {k: v for k, v in raw.items() if k not in secure})
    nodes = stackinfo.pinned_node_names(config)
    d = start(h, f"stack-{stack}", config, node_names=nodes)
    # The stack names its cluster (kubernetes:context and the like): point it at this one.
    cluster_keys = {"kubernetes:context": "e2e", "kubernetes:cluster": "e2e"}
    cluster_keys["kubernetes:kubeconfig"] = str(d.plane.kubeconfig_path)
    for key, value in cluster_keys.items():
        if key in d.config:
            d.config[key] = value
    d.write()
    with d.step(
        "stand-in values for the stack's secrets, each of its key's shape (pulumi config set --secret)", setup=True
    ):
        for key, value in sorted(stackinfo.stand_ins(raw).items()):
            d.pulumi.run("config", "set", "--secret", key, "--", value)
            d.secrets[key.split(":", 1)[-1]] = value
        d.echo(f"secrets: {sorted(secure) or 'none'}; pinned nodes: {nodes or 'none'}")
    with d.step("pulumi preview", setup=True):
        d.echo(d.pulumi.summary(d.pulumi.run("preview")))
    with d.step("pulumi up (a stuck up stops, naming the pending object)", setup=True):
        d.up()
    with d.step("check: workloads Available in every namespace"):
        d.check_all()
    again_fidelity_destroy(d)


SCENARIOS: dict[str, Callable[[Harness], None]] = {
    "pulumi": scenario_dev,
    "platform": scenario_platform,
    "upgrade": scenario_upgrade,
    "comeback": scenario_comeback,
    "identity": scenario_identity,
    "tenants": scenario_tenants,
    "stop": scenario_stop,
}
