"""Two more Pulumi scenarios on the same control plane: the upgrade across AirflowPlatform, and
the component package's examples.

`moved`: the project as it was before AirflowPlatform existed (its components declared at the
root of the stack) is deployed with `pulumi up`; then this checkout's program runs over the same
stack. Its preview must create the AirflowPlatform component and nothing else: no replacement,
no deletion, no other creation (every moved resource is matched through its alias), and `up`
then leaves the Secrets' contents as they were.

`examples`: `examples/yaml` (the YAML language host) and `examples/typescript` (the Node.js
language host, `@pulumi/pulumi` from npm) add the component package with
`pulumi package add ../../components`; `examples/python` imports the components from the
distribution its requirements install (the checkout, `../..`). Each deploys Airflow: up, the
workloads' checks, up again with no changes, destroy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from . import checks
from .harness import ROOT, STACK, Pulumi, StepError, check_cluster, describe_workloads, kube_minor, pulumi_env
from .scenarios import Harness, destroy, dev_config, start

# The project as existing stacks were deployed with before AirflowPlatform: main just before the
# platform was merged (1348687 introduced it). A commit, not a file path: moving or renaming the
# platform's files later does not move the base (tests/test_e2e_house.py checks the record).
UPGRADE_BASE = "e9c7bd429f4e0100593eb135ddd209041b605221"
PLATFORM_TYPE = "airflow-k8s:index:AirflowPlatform"
EXAMPLES = ("yaml", "typescript", "python")
LANGUAGE_HOSTS = {"yaml": "pulumi-language-yaml", "typescript": "pulumi-language-nodejs"}
# The examples that use the component package (a plugin); the Python one imports the components.
PACKAGE_EXAMPLES = ("yaml", "typescript")
# What the Python example's requirements install (`../..`): the distribution's build files.
DISTRIBUTION_FILES = ("pyproject.toml", "README.md")


def upgrade_base() -> str:
    """The commit the `moved` scenario upgrades from (UPGRADE_BASE), once this clone is known to
    hold it as an ancestor of HEAD."""
    proc = subprocess.run(
        ["git", "merge-base", "--is-ancestor", UPGRADE_BASE, "HEAD"], cwd=ROOT, capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise StepError(
            f"the upgrade base {UPGRADE_BASE[:12]} (the project before AirflowPlatform) is not an ancestor of HEAD "
            "in this clone: a shallow clone has no history to upgrade from (fetch it: git fetch --unshallow)"
        )
    return UPGRADE_BASE


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StepError(f"`git {' '.join(args)}` exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def export_commit(commit: str, dest: Path) -> Path:
    """The project files of `commit` in `dest` (git archive: no work tree needed)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=False)
    if archive.returncode != 0:
        raise StepError(f"`git archive {commit}` failed: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def upgrade_problems(preview: dict[str, Any]) -> list[str]:
    """From `pulumi preview --json` over a stack deployed before AirflowPlatform: nothing is
    replaced or deleted, and the only creations are the platform component and resources the base
    never had. A moved resource whose alias is missing shows as a deletion plus a creation of the
    same type and name: both are named."""
    steps = preview.get("steps") or []
    deleted = {_type_and_name(s.get("urn", "")) for s in steps if s.get("op") in ("delete", "replace")}
    problems = []
    for step in steps:
        op, urn = step.get("op"), step.get("urn", "")
        if op in ("same", "read", "refresh"):
            continue
        if op == "create" and urn.endswith(f"::{PLATFORM_TYPE}::airflow"):
            continue
        if op == "create" and _type_and_name(urn) not in deleted:
            continue  # new in this checkout (the base never had it): a creation, not a move
        if op == "update" and "helm.sh/v3:Release" in urn:
            continue  # values computed the same way; an update of the release is not a replacement
        problems.append(f"{op} {urn}")
    return problems


def _type_and_name(urn: str) -> tuple[str, str]:
    """A URN's own type (the last of its type chain) and name: what stays the same when a resource
    moves under a new parent."""
    chain, _, name = urn.rpartition("::")
    return chain.rsplit("$", 1)[-1].rsplit("::", 1)[-1], name


def _as_e2e_project(folder: Path) -> Path:
    """An exported project made runnable like copy_project's (the harness's Python as its virtualenv)."""
    import sys

    project = yaml.safe_load((folder / "Pulumi.yaml").read_text())
    if isinstance(project.get("runtime"), str):
        project["runtime"] = {"name": project["runtime"]}
    project.setdefault("runtime", {"name": "python"}).setdefault("options", {})["virtualenv"] = sys.prefix
    (folder / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    return folder


def example_copy(work: Path) -> Path:
    """examples/ and the component package side by side (so `../../components` resolves), with the
    package's virtualenv made by uv from its requirements (the plugin runtime reuses it), and the
    Python example's virtualenv made from its own requirements in its folder, as Pulumi's pip
    toolchain would (the checkout's distribution, built from the files copied beside). Without uv
    on PATH, Pulumi makes both itself (the Python example's on its first `up`)."""
    dest = work / "examples-checkout"
    dest.mkdir(parents=True)
    for name in ("requirements.txt", *DISTRIBUTION_FILES):
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "venv", "node_modules", "sdks", "bin", "package-lock.json")
    shutil.copytree(ROOT / "components", dest / "components", ignore=ignore)
    shutil.copytree(ROOT / "examples", dest / "examples", ignore=ignore)
    uv = shutil.which("uv")
    if uv is not None:
        venv = dest / "components" / "venv"
        subprocess.run([uv, "venv", "--quiet", "--seed", str(venv)], check=True)
        subprocess.run(
            [
                uv,
                "pip",
                "install",
                "--quiet",
                "--python",
                str(venv / "bin" / "python"),
                "-r",
                str(dest / "components" / "requirements.txt"),
            ],
            check=True,
        )
        python = dest / "examples" / "python"
        subprocess.run([uv, "venv", "--quiet", "--seed", "venv"], cwd=python, check=True)
        subprocess.run(
            [uv, "pip", "install", "--quiet", "--python", "venv/bin/python", "-r", "requirements.txt"],
            cwd=python,
            check=True,
        )
    return dest


def example_program(example: str, folder: Path, chart: dict[str, str], kube_version: str) -> str:
    """Point the example at the local chart and API server version; its Airflow namespace."""
    if example == "yaml":
        path = folder / "Pulumi.yaml"
        program = yaml.safe_load(path.read_text())
        props = program["resources"]["airflow"]["properties"]
        props["airflow"]["chart"] = chart
        props["cluster"]["kubernetesVersion"] = kube_version
        path.write_text(yaml.safe_dump(program, sort_keys=False))
        return str(program["config"]["namespace"]["default"])
    project, namespace = {
        "typescript": ("airflow-typescript", "airflow-ts"),
        "python": ("airflow-python", "airflow-py"),
    }[example]
    config = {
        "config": {
            f"{project}:chart": chart,
            f"{project}:kubernetesVersion": kube_version,
            f"{project}:namespace": namespace,
        }
    }
    (folder / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return namespace


def scenario_moved(h: Harness) -> None:
    """A stack deployed before AirflowPlatform, then this checkout over it: only the platform is created."""
    base = upgrade_base()
    d = start(h, "moved", dev_config(h))
    new = d.project
    old = _as_e2e_project(export_commit(base, new.parent / "before-platform"))
    shutil.copy2(new / f"Pulumi.{STACK}.yaml", old / f"Pulumi.{STACK}.yaml")
    with d.step(f"pulumi up of the project as of {base[:12]} (before AirflowPlatform)"):
        d.pulumi.project = old
        d.pulumi.run("stack", "select", STACK)
        d.up()
        check_cluster(d.kube, d.namespace)
    before = checks.secret_fingerprints(checks.live_secrets(d.kube, d.namespace))
    with d.step("this checkout over the same stack: the preview creates AirflowPlatform and nothing else"):
        d.pulumi.project = new
        d.pulumi.run("stack", "select", STACK)  # the same stack, seen from the new project folder
        plan = d.preview_json()
        problems = upgrade_problems(plan)
        if problems:
            raise StepError("moving under AirflowPlatform would do more than create it:\n" + "\n".join(problems))
    with d.step("pulumi up, then no changes; every Secret's contents as before"):
        d.up()
        d.up_no_changes()
        after = checks.secret_fingerprints(checks.live_secrets(d.kube, d.namespace))
        changed = sorted(name for name, digest in before.items() if after.get(name) != digest)
        if changed:
            raise StepError("Secrets changed by the move under AirflowPlatform: " + ", ".join(changed))
        check_cluster(d.kube, d.namespace)
    with d.step("pulumi destroy", setup=True):
        destroy(d)


def scenario_examples(h: Harness) -> None:
    """examples/yaml and examples/typescript add the component package, examples/python imports the
    components; each deploys Airflow."""
    missing = [host for host in LANGUAGE_HOSTS.values() if not (h.found["pulumi"].parent / host).exists()]
    if missing:
        raise StepError(f"the examples need the language hosts beside pulumi: missing {', '.join(missing)}")
    d = start(h, "examples", dev_config(h))
    with d.step("copy examples/ and components/; the package's virtualenv", setup=True):
        checkout = example_copy(d.project.parent)
    for example in EXAMPLES:
        folder = checkout / "examples" / example
        logs = d.project.parent / "examples-logs" / example
        logs.mkdir(parents=True, exist_ok=True)
        env = {**d.pulumi.env, **pulumi_env(d.project.parent / f"example-{example}", h.found, d.plane.kubeconfig_path)}
        env["PULUMI_HOME"] = d.pulumi.env["PULUMI_HOME"]  # the plugins the harness installed
        pulumi = Pulumi(h.found["pulumi"], folder, env, logs)
        adds = "pulumi package add ../../components; " if example in PACKAGE_EXAMPLES else ""
        with d.step(f"examples/{example}: {adds}stack init", setup=True):
            pulumi.run("login", env["PULUMI_BACKEND_URL"])
            if example in PACKAGE_EXAMPLES:
                pulumi.run("package", "add", "../../components")
            namespace = example_program(example, folder, h.chart("airflow"), kube_minor(d.kube))
            pulumi.run("stack", "init", STACK, "--secrets-provider", "passphrase")
        with d.step(f"examples/{example}: pulumi up; workloads ready; up again with no changes"):
            d.echo(pulumi.summary(pulumi.run("up", "--yes", "--skip-preview")))
            check_cluster(d.kube, namespace)
            d.echo(describe_workloads(d.kube, namespace))
            pulumi.run("up", "--yes", "--expect-no-changes")
            outputs = json.loads(pulumi.run("stack", "output", "--json", "--show-secrets").stdout)
            if outputs.get("namespace") != namespace or not outputs.get("adminPassword"):
                raise StepError(f"examples/{example}: unexpected outputs {sorted(outputs)}")
        with d.step(f"examples/{example}: pulumi destroy", setup=True):
            proc = pulumi.run("destroy", "--yes", "--skip-preview", check=False)
            if proc.returncode != 0:
                pulumi.run("destroy", "--yes", "--skip-preview", "--exclude-protected")


# Registered with the harness's own scenarios (`./run.sh e2e --scenario moved|examples`).
HOUSE_SCENARIOS = {"moved": scenario_moved, "examples": scenario_examples}
