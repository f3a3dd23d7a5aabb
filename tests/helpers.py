"""Shared test helpers: run the stack program under recording mocks, render its charts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from components.offline.program import ProgramRun, Registered, run_program, unwrap
from components.offline.render import find_chart, render

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "airflow-k8s"

SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
KNOWN_HOSTS = "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
DB_URL = "postgresql://airflow:s3cr%40t-db@db.internal:5432/airflow?sslmode=require"


def run_stack(
    airflow: dict[str, Any] | None = None,
    *,
    cluster: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    program: str | None = None,
    extra: dict[str, Any] | None = None,
    previous_outputs: dict[str, Any] | None = None,
) -> ProgramRun:
    """Run the real `__main__.py` (or tests/programs/<program>.py) with this config."""
    # The cluster a stack deploys to (a production stack must name it: components/core/cluster_target.py).
    # As the stack files: the provider may rewrite a Secret in place (a Fernet rotation needs it).
    config: dict[str, str] = {"kubernetes:context": "test-cluster", "kubernetes:enableSecretMutable": "true"}
    if airflow is not None:
        config[f"{PROJECT}:airflow"] = json.dumps(airflow)
    if cluster is not None:
        config[f"{PROJECT}:cluster"] = json.dumps(cluster)
    for key, value in (extra or {}).items():
        config[f"{PROJECT}:{key}"] = value if isinstance(value, str) else json.dumps(value)
    secret_keys = set()
    for key, value in (secrets or {}).items():
        config[f"{PROJECT}:{key}"] = value
        secret_keys.add(f"{PROJECT}:{key}")
    path = ROOT / "tests" / "programs" / f"{program}.py" if program else None
    return run_program(
        ROOT,
        "test",
        config=config,
        secret_keys=secret_keys,
        project=PROJECT,
        program=path,
        previous_outputs=previous_outputs,
    )


def stack_edge(text: str) -> Any:
    """A stack file's text through what `pulumi up` runs before declaring anything: read as the
    Pulumi CLI reads it (`secure:` values are plain text in tests), then the whole stack edge
    (components/platform/config.py `check_config`). Returns the StackConfig."""
    from components.platform.config import check_config
    from components.platform.stack_file import read

    raw, secret_full = read(text, PROJECT)
    config = {
        key: (value["secure"] if isinstance(value["secure"], str) else json.dumps(value["secure"]))
        if key in secret_full
        else value
        for key, value in raw.items()
    }
    return check_config(config, secret_full, PROJECT)


def of_type(run: ProgramRun, token_suffix: str) -> list[Registered]:
    return [r for r in run.resources if r.type.endswith(token_suffix)]


def releases(run: ProgramRun) -> list[Registered]:
    return of_type(run, "helm.sh/v3:Release")


def release(run: ProgramRun) -> Registered:
    (only,) = releases(run)
    return only


def values(run: ProgramRun) -> dict[str, Any]:
    return dict(unwrap(release(run).inputs)["values"])


def secrets_by_name(run: ProgramRun) -> dict[str, Registered]:
    return {unwrap(r.inputs)["metadata"]["name"]: r for r in of_type(run, "core/v1:Secret")}


def render_release(res: Registered) -> list[dict[str, Any]]:
    inputs = unwrap(res.inputs)
    archive = find_chart(ROOT, inputs["chart"], inputs.get("version"))
    return [r.obj for r in render(archive, inputs["values"], inputs["name"], inputs["namespace"])]


def inventory(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


def secret_file_sources(pod_spec: dict[str, Any], container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Files a container reads from AirflowRelease's secrets volume: path -> (Secret, key)."""
    from components.airflow.values.secret_files import SECRETS_DIR, SECRETS_VOLUME

    mounted = any(
        m["name"] == SECRETS_VOLUME and m["mountPath"] == SECRETS_DIR for m in container.get("volumeMounts", [])
    )
    volume = next((v for v in pod_spec.get("volumes", []) if v["name"] == SECRETS_VOLUME), None)
    if not mounted or volume is None:
        return {}
    return {
        f"{SECRETS_DIR}/{item['path']}": (source["secret"]["name"], item["key"])
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }


def file_commands(container: dict[str, Any]) -> dict[str, str]:
    """`AIRFLOW__X_CMD=cat <file>` entries of a container that Airflow runs: option -> file (a command
    whose option is also set plainly never runs: Airflow reads the plain variable first)."""
    plain = {e["name"] for e in container.get("env", []) if not e["name"].endswith("_CMD")}
    return {
        e["name"].removesuffix("_CMD"): e["value"].removeprefix("cat ")
        for e in container.get("env", [])
        if e["name"].endswith("_CMD") and e["name"].removesuffix("_CMD") not in plain
    }


def connections_files(run: ProgramRun) -> tuple[dict[str, Any], dict[str, Any]]:
    """(connections.json, variables.json) of the release's connections Secret, parsed."""
    data = unwrap(secrets_by_name(run)["airflow-pulumi-environment"].inputs)["stringData"]
    return json.loads(data["connections.json"]), json.loads(data["variables.json"])


def project_copy(parent: Path, stacks: dict[str, dict[str, Any]], files: tuple[str, ...] = ()) -> Path:
    """A copy of the project in `parent/project` (its program, the components linked, `../shared`
    beside it) with these stack files ({stack: the file's content}) and `files` copied as they are."""
    root = parent / "project"
    root.mkdir()
    for name in ("Pulumi.yaml", "__main__.py", *files):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text((ROOT / name).read_text())
    (root / "components").symlink_to(ROOT / "components")
    (parent / "shared").symlink_to(ROOT.parent / "shared")
    for stack, doc in stacks.items():
        (root / f"Pulumi.{stack}.yaml").write_text(json.dumps(doc))
    return root


def docs_text() -> str:
    """The user documentation: README.md, then every page of the docs site (mkdocs.yml's nav order).
    The tests that hold the documentation to the parsers read this."""
    import yaml

    def pages(nav: list[Any]) -> list[str]:
        out: list[str] = []
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            out += pages(value) if isinstance(value, list) else [str(value)]
        return out

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    texts = [(ROOT / "README.md").read_text()] + [(ROOT / "docs" / page).read_text() for page in pages(nav)]
    return "\n".join(texts)


def load_benchmark(name: str) -> Any:
    """benchmarks/<name>.py as a module (benchmarks/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
