"""The DagBag step of dags-check: load a DAG folder the way Airflow 3's dag-processor does.

Runs in the Airflow virtualenv (`.venv-dags`), started by `python -m dagcheck` with
`python -I dagcheck/load.py FOLDER OUTPUT`: isolated mode, so nothing but the bundle root
(which this script puts on `sys.path`, as the dag-processor does) and the virtualenv's
packages can be imported. It writes one JSON document to OUTPUT:

- `import_errors`: {file: traceback}, exactly what `airflow dags list-import-errors` shows;
- `dags`: the DAG ids per file;
- `tasks`: what the platform checks need of every KubernetesPodOperator and
  SparkKubernetesOperator task (namespace, service account, image, Secrets used, security
  contexts, the SparkApplication's namespace and accounts), as plain JSON, templated
  fields unrendered.

Only the standard library and Airflow are imported here: the project's own modules need
pulumi, which this virtualenv cannot hold.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any


def _plain(value: Any) -> Any:
    """A Kubernetes client model (or dict of them) as plain JSON with the API's camelCase keys."""
    if value is None:
        return None
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(value)


def _task_lines(path: Path) -> dict[str, int]:
    """task_id literal -> line of the call that creates it (the operator's line in the file)."""
    try:
        tree = ast.parse(path.read_text(), str(path))
    except (OSError, SyntaxError, ValueError):
        return {}
    lines: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == "task_id" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                    lines.setdefault(kw.value.value, node.lineno)
    return lines


def _secrets(task: Any) -> list[dict[str, Any]]:
    """Every Secret the pod would read: `secrets`, `env_from`, env `secretKeyRef`s, secret volumes."""
    found: list[dict[str, Any]] = []
    for secret in getattr(task, "secrets", None) or []:
        found.append({"name": getattr(secret, "secret", None), "via": "secrets"})
    for source in _plain(getattr(task, "env_from", None)) or []:
        ref = source.get("secretRef") if isinstance(source, dict) else None
        if ref:
            found.append({"name": ref.get("name"), "via": "env_from"})
    env = _plain(getattr(task, "env_vars", None)) or []
    for var in env if isinstance(env, list) else []:
        ref = ((var or {}).get("valueFrom") or {}).get("secretKeyRef") if isinstance(var, dict) else None
        if ref:
            found.append({"name": ref.get("name"), "via": f"env_vars {var.get('name')}"})
    for volume in _plain(getattr(task, "volumes", None)) or []:
        if isinstance(volume, dict) and volume.get("secret"):
            found.append({"name": volume["secret"].get("secretName"), "via": f"volume {volume.get('name')}"})
    return found


def _spark_application(task: Any, dag_file: Path, bundle: Path) -> dict[str, Any] | None:
    doc = getattr(task, "template_spec", None)
    source = getattr(task, "application_file", None)
    if doc is None and isinstance(source, str):
        import yaml

        text = source
        if source.endswith((".yaml", ".yml", ".json")):
            for base in (dag_file.parent, bundle):
                if (base / source).is_file():
                    text = (base / source).read_text()
                    break
            else:
                return None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            return None
    if isinstance(doc, dict) and isinstance(doc.get("spark"), dict):  # the provider's {spark:, kubernetes:} form
        doc = doc["spark"]
    return doc if isinstance(doc, dict) else None


def _task_facts(task: Any, dag_file: Path, bundle: Path, lines: dict[str, int]) -> dict[str, Any] | None:
    bases = [c.__name__ for c in type(task).__mro__]
    if "KubernetesPodOperator" not in bases:
        return None
    facts: dict[str, Any] = {
        "dag_id": task.dag_id,
        "task_id": task.task_id,
        "file": str(dag_file),
        "line": lines.get(task.task_id, 1),
        "operator": type(task).__name__,
        "namespace": getattr(task, "namespace", None),
    }
    if "SparkKubernetesOperator" in bases:
        app = _spark_application(task, dag_file, bundle)
        spec = (app or {}).get("spec") or {}
        facts["kind"] = "spark"
        facts["spark"] = None
        if app is not None:
            facts["spark"] = {
                "namespace": ((app.get("metadata") or {}).get("namespace")),
                "driver_service_account": (spec.get("driver") or {}).get("serviceAccount"),
                "executor_service_account": (spec.get("executor") or {}).get("serviceAccount"),
                "image": spec.get("image"),
            }
        return facts
    facts.update(
        kind="pod",
        image=getattr(task, "image", None),
        service_account=getattr(task, "service_account_name", None),
        secrets=_secrets(task),
        pod_security=_plain(getattr(task, "security_context", None)) or {},
        container_security=_plain(getattr(task, "container_security_context", None)) or {},
        host_network=bool(getattr(task, "hostnetwork", False)),
        custom_pod=bool(getattr(task, "full_pod_spec", None) or getattr(task, "pod_template_file", None)),
    )
    return facts


def load(folder: Path) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=folder, bundle_path=folder, bundle_name="dags-check", include_examples=False)
    tasks: list[dict[str, Any]] = []
    dags: dict[str, list[str]] = {}
    line_cache: dict[Path, dict[str, int]] = {}
    for dag in bag.dags.values():
        dag_file = Path(dag.fileloc)
        if not dag_file.is_absolute():
            dag_file = folder / dag_file
        dags.setdefault(str(dag_file), []).append(dag.dag_id)
        if dag_file not in line_cache:
            line_cache[dag_file] = _task_lines(dag_file)
        for task in dag.tasks:
            facts = _task_facts(task, dag_file, folder, line_cache[dag_file])
            if facts is not None:
                tasks.append(facts)
    errors = {
        str(folder / path) if not Path(path).is_absolute() else path: text for path, text in bag.import_errors.items()
    }
    return {"import_errors": errors, "dags": dags, "tasks": tasks}


def main(argv: list[str]) -> int:
    folder, output = Path(argv[0]).resolve(), Path(argv[1])
    home = tempfile.mkdtemp(prefix="dags-check-home-")
    os.environ.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__DAGS_FOLDER": str(folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
        }
    )
    # The dag-processor puts the bundle root on sys.path, so DAG files import their helpers.
    sys.path.insert(0, str(folder))
    try:
        output.write_text(json.dumps(load(folder), indent=1, sort_keys=True, default=str))
    finally:
        shutil.rmtree(home, ignore_errors=True)  # Airflow's home for this check only: nothing is kept
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
