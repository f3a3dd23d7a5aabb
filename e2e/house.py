"""Two more Pulumi scenarios on the same control plane: the upgrade across AirflowPlatform, and
the component package's examples.

`upgrade`: the project as it was before AirflowPlatform existed (its components declared at the
root of the stack) is deployed with `pulumi up`; then this checkout's program runs over the same
stack. Its preview must create the AirflowPlatform component and nothing else: no replacement,
no deletion, no other creation (every moved resource is matched through its alias), and `up`
then leaves the Secrets' contents as they were.

`examples`: `examples/yaml` (the YAML language host) and `examples/typescript` (the Node.js
language host, `@pulumi/pulumi` from npm) add the component package with
`pulumi package add ../../components` and deploy Airflow: up, the workloads' checks, up again
with no changes, destroy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from . import checks, tools
from .kube import Kube
from .run import (
    ROOT,
    STACK,
    Pulumi,
    StepError,
    Steps,
    check_cluster,
    copy_project,
    describe_workloads,
    e2e_config,
    kube_minor,
    pulumi_env,
    write_stack_config,
)

PLATFORM_PATHS = ("components/platform.py", "components/platform/component.py")
PLATFORM_TYPE = "airflow-k8s:index:AirflowPlatform"
EXAMPLES = ("yaml", "typescript")
LANGUAGE_HOSTS = {"yaml": "pulumi-language-yaml", "typescript": "pulumi-language-nodejs"}


def base_before_platform() -> str:
    """The newest ancestor of HEAD without AirflowPlatform: the layout (and the features) existing
    stacks were deployed with, so the upgrade shows what the platform itself changes."""
    for commit in _git("rev-list", "HEAD").split():
        if not any(_has(commit, path) for path in PLATFORM_PATHS):
            return commit
    raise StepError("every commit has AirflowPlatform: there is no layout before it to upgrade from")


def _has(commit: str, path: str) -> bool:
    proc = subprocess.run(["git", "cat-file", "-e", f"{commit}:{path}"], cwd=ROOT, capture_output=True, check=False)
    return proc.returncode == 0


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


def _setup_pulumi(pulumi: Pulumi, work: Path, found: dict[str, Path]) -> None:
    pulumi.run("login", f"file://{work / 'state'}")
    for kind, name in (("kubernetes", "pulumi-resource-kubernetes"), ("random", "pulumi-resource-random")):
        version = {"kubernetes": tools.PULUMI_KUBERNETES_VERSION, "random": tools.PULUMI_RANDOM_VERSION}[kind]
        pulumi.run("plugin", "install", "resource", kind, version.lstrip("v"), "--file", str(found[name]))


def upgrade_problems(preview: dict[str, Any]) -> list[str]:
    """From `pulumi preview --json` over a stack deployed before AirflowPlatform: the platform
    component is the only creation, and nothing is replaced or deleted."""
    problems = []
    for step in preview.get("steps") or []:
        op, urn = step.get("op"), step.get("urn", "")
        if op in ("same", "read", "refresh"):
            continue
        if op == "create" and urn.endswith(f"::{PLATFORM_TYPE}::airflow"):
            continue
        if op == "update" and "helm.sh/v3:Release" in urn:
            continue  # values computed the same way; an update of the release is not a replacement
        problems.append(f"{op} {urn}")
    return problems


def upgrade_scenario(
    steps: Steps, kube: Kube, found: dict[str, Path], work: Path, chart: dict[str, str], kubeconfig: Path
) -> None:
    base = base_before_platform()
    old = work / "upgrade" / "old"
    config = e2e_config(chart, kube_minor(kube))
    namespace = config["airflow-k8s:airflow"].get("namespace", "airflow")
    logs = work / "upgrade" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = pulumi_env(work / "upgrade", found, kubeconfig)

    with steps.step(f"upgrade: deploy the project as of {base[:12]} (before AirflowPlatform)"):
        export_commit(base, old)
        project = _as_e2e_project(old)
        pulumi = Pulumi(found["pulumi"], project, env, logs)
        _setup_pulumi(pulumi, work / "upgrade", found)
        pulumi.run("stack", "init", STACK, "--secrets-provider", "passphrase")
        write_stack_config(project, config)
        steps.echo("    " + pulumi.summary(pulumi.run("up", "--yes", "--skip-preview")))
        check_cluster(kube, namespace)
    before = checks.secret_fingerprints(checks.live_secrets(kube, namespace))

    with steps.step("upgrade: this checkout over the same stack: preview creates AirflowPlatform only"):
        new = copy_project(work / "upgrade" / "new")
        for name in (f"Pulumi.{STACK}.yaml",):
            shutil.copy2(project / name, new / name)
        pulumi.project = new
        pulumi.run("stack", "select", STACK)  # the same stack, seen from the new project folder
        plan = pulumi.json("preview", "--json")
        problems = upgrade_problems(plan)
        if problems:
            raise StepError("moving under AirflowPlatform would do more than create it:\n" + "\n".join(problems))
        counts: dict[str, int] = {}
        for step in plan.get("steps") or []:
            counts[step.get("op", "?")] = counts.get(step.get("op", "?"), 0) + 1
        steps.echo("    plan: " + ", ".join(f"{op} {n}" for op, n in sorted(counts.items())))

    with steps.step("upgrade: pulumi up, then no changes; every Secret's contents as before"):
        steps.echo("    " + pulumi.summary(pulumi.run("up", "--yes", "--skip-preview")))
        pulumi.run("up", "--yes", "--expect-no-changes")
        after = checks.secret_fingerprints(checks.live_secrets(kube, namespace))
        changed = sorted(name for name, digest in before.items() if after.get(name) != digest)
        if changed:
            raise StepError("Secrets changed by the move under AirflowPlatform: " + ", ".join(changed))
        check_cluster(kube, namespace)

    with steps.step("upgrade: pulumi destroy --yes"):
        pulumi.run("destroy", "--yes", "--skip-preview")


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
    package's virtualenv made by uv from its requirements (the plugin runtime reuses it)."""
    dest = work / "examples-checkout"
    dest.mkdir(parents=True)
    shutil.copy2(ROOT / "requirements.txt", dest / "requirements.txt")
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
    config = {
        "config": {
            "airflow-typescript:chart": chart,
            "airflow-typescript:kubernetesVersion": kube_version,
            "airflow-typescript:namespace": "airflow-ts",
        }
    }
    (folder / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return "airflow-ts"


def examples_scenario(
    steps: Steps, kube: Kube, found: dict[str, Path], work: Path, chart: dict[str, str], kubeconfig: Path
) -> None:
    missing = [host for host in LANGUAGE_HOSTS.values() if not (found["pulumi"].parent / host).exists()]
    if missing:
        raise StepError(f"the examples need the language hosts beside pulumi: missing {', '.join(missing)}")
    with steps.step("examples: copy examples/ and components/, the package's virtualenv"):
        checkout = example_copy(work)
    for example in EXAMPLES:
        folder = checkout / "examples" / example
        logs = work / "examples-logs" / example
        logs.mkdir(parents=True, exist_ok=True)
        pulumi = Pulumi(found["pulumi"], folder, pulumi_env(work / f"example-{example}", found, kubeconfig), logs)
        with steps.step(f"examples/{example}: pulumi package add ../../components"):
            _setup_pulumi(pulumi, work / f"example-{example}", found)
            pulumi.run("package", "add", "../../components")
            namespace = example_program(example, folder, chart, kube_minor(kube))
            pulumi.run("stack", "init", STACK, "--secrets-provider", "passphrase")
        with steps.step(f"examples/{example}: pulumi up; workloads ready; up again with no changes"):
            steps.echo("    " + pulumi.summary(pulumi.run("up", "--yes", "--skip-preview")))
            check_cluster(kube, namespace)
            steps.echo("    " + describe_workloads(kube, namespace))
            pulumi.run("up", "--yes", "--expect-no-changes")
            outputs = json.loads(pulumi.run("stack", "output", "--json", "--show-secrets").stdout)
            if outputs.get("namespace") != namespace or not outputs.get("adminPassword"):
                raise StepError(f"examples/{example}: unexpected outputs {sorted(outputs)}")
        with steps.step(f"examples/{example}: pulumi destroy --yes"):
            pulumi.run("destroy", "--yes", "--skip-preview")


def main(argv: list[str] | None = None) -> int:
    """`python -m e2e.house [--keep] [--only upgrade|examples]`: the control plane and chart
    repository of `python -m e2e`, then these scenarios in place of its own."""
    import argparse

    from . import run as e2e_run

    parser = argparse.ArgumentParser(prog="python -m e2e.house", description=__doc__)
    parser.add_argument("--only", choices=("upgrade", "examples"), help="run one scenario (default: both)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, state)")
    args = parser.parse_args(argv)

    def scenarios(
        steps: Steps, kube: Kube, found: dict[str, Path], work: Path, chart: dict[str, str], kubeconfig: Path
    ) -> None:
        if args.only in (None, "upgrade"):
            upgrade_scenario(steps, kube, found, work, chart, kubeconfig)
        if args.only in (None, "examples"):
            examples_scenario(steps, kube, found, work, chart, kubeconfig)

    original = e2e_run.pulumi_scenario
    e2e_run.pulumi_scenario = scenarios  # the harness runs its Pulumi scenario here
    try:
        return e2e_run.run(e2e_run.Options(cache=tools.default_cache(), scenario="pulumi", keep=args.keep))
    finally:
        e2e_run.pulumi_scenario = original


if __name__ == "__main__":
    raise SystemExit(main())
