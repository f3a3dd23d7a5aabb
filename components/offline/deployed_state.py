"""What is deployed, as a preview's baseline: a `pulumi stack export` of the stack.

`./run.sh preview --baseline-state FILE` compares with the stack's deployed state instead of
the last successful preview. From the export (`pulumi stack export --file FILE`, with or
without `--show-secrets`) it takes every resource the program declared (URN, type, parent and
the inputs the state records, secret values masked) and, for each Helm Release, the values the
deployed release was installed with (the Release's outputs: `values`, `chart`, `version`,
`name`, `namespace`). The preview renders those with the same Helm and capabilities as the
program's own Releases, so each object's change is against what the deployed values render,
like `helm diff upgrade`.

A resource of the export is the program's resource of the same type and name under the same
parents, whatever stack and project its URN names (an export of stack `production` serves a
preview of `prod`). A secret inside a Release's values that the export holds encrypted (exported
without `--show-secrets`) renders as `[secret]`; the components never hand a chart a secret
value (the preview's `release-secret` rule), so none is expected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .program import Registered
from .report import REDACTED

RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
STACK_TYPE = "pulumi:pulumi:Stack"
#: How Pulumi's state marks a secret value: {SECRET_SIG: SECRET_VALUE, "ciphertext" | "plaintext": ...}.
SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270"


class DeployedStateError(ValueError):
    """The file is not a usable `pulumi stack export`: one line that says why."""


@dataclass
class DeployedState:
    """The resources of an export as a preview's state (objects of the Releases still to render)."""

    path: Path
    stack: str  # the stack its URNs name
    resources: list[dict[str, Any]]
    releases: list[Registered]  # each deployed Release, its inputs those it was installed with
    outputs: dict[str, Any]
    hidden: list[str] = field(default_factory=list)  # Release values encrypted in the export

    def state(self, objects: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """The baseline, with the objects each Release renders (by URN)."""
        resources = [{**r, "objects": objects.get(r["urn"], [])} for r in self.resources]
        return {"version": 1, "stack": self.stack, "resources": resources, "outputs": self.outputs}


def _is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


def masked(value: Any) -> Any:
    """Secret values as `[secret]` (as the preview shows its own), keys sorted, nulls and the
    engine's own `__` keys dropped, whole numbers as integers."""
    if _is_secret(value):
        return REDACTED
    if isinstance(value, dict):
        return {k: masked(value[k]) for k in sorted(value) if value[k] is not None and not k.startswith("__")}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def revealed(value: Any, hidden: list[str], path: str = "") -> Any:
    """Secret values in plain text where the export shows them (`--show-secrets`), else
    `[secret]` (their paths added to `hidden`)."""
    if _is_secret(value):
        if "plaintext" in value:
            return revealed(json.loads(value["plaintext"]), hidden, path)
        hidden.append(path or ".")
        return REDACTED
    if isinstance(value, dict):
        return {k: revealed(v, hidden, f"{path}.{k}" if path else k) for k, v in value.items()}
    if isinstance(value, list):
        return [revealed(v, hidden, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _identities(resources: list[tuple[str, str, str, str]]) -> dict[str, tuple[tuple[str, str], ...]]:
    """URN -> the resource's identity, the (type, name) of it and each ancestor below the stack:
    what a URN says, however the engine or a test's mocks spell it. `resources`: (urn, type,
    name, parent URN)."""
    by_urn = {urn: (kind, name, parent) for urn, kind, name, parent in resources}
    found: dict[str, tuple[tuple[str, str], ...]] = {}

    def identity(urn: str, depth: int = 0) -> tuple[tuple[str, str], ...]:
        if urn not in by_urn or depth > 100:
            return ()
        if urn not in found:
            kind, name, parent = by_urn[urn]
            found[urn] = (*identity(parent, depth + 1), (kind, name))
        return found[urn]

    for urn in by_urn:
        identity(urn)
    return found


def read_export(path: Path, declared: list[Registered]) -> DeployedState:
    """The resources of the export in `path`, each under the URN of the resource of the program's
    run (`declared`) that it is (same type and name, under the same parents); a resource the
    program no longer declares keeps a URN of its own (the preview shows it deleted)."""
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise DeployedStateError(f"--baseline-state {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise DeployedStateError(f"--baseline-state {path} is not JSON ({exc.msg}, line {exc.lineno})") from None
    deployment = raw.get("deployment") if isinstance(raw, dict) else None
    found = deployment.get("resources") if isinstance(deployment, dict) else None
    if not isinstance(found, list):
        raise DeployedStateError(
            f"--baseline-state {path} is not a `pulumi stack export` (no deployment.resources); "
            "write one with `pulumi stack export --stack <stack> --file <file>`"
        )
    live = [r for r in found if isinstance(r, dict) and isinstance(r.get("urn"), str) and not r.get("delete")]
    exported_stack = next((r["urn"].removeprefix("urn:pulumi:").split("::", 1)[0] for r in live), "")
    theirs = _identities([(r["urn"], str(r.get("type", "")), r["urn"].rsplit("::", 1)[-1], str(r.get("parent") or ""))
                          for r in live if r.get("type") != STACK_TYPE])  # fmt: skip
    ours = _identities([(r.urn, r.type, r.name, r.parent) for r in declared])
    urn_of = {identity: urn for urn, identity in ours.items()}
    declared_urns = {r.urn for r in declared}
    stack_urn = next((r.parent for r in declared if r.parent not in declared_urns), "")
    mapped = {urn: urn_of.get(identity, urn) for urn, identity in theirs.items()}

    resources: list[dict[str, Any]] = []
    releases: list[Registered] = []
    outputs: dict[str, Any] = {}
    hidden: list[str] = []
    for res in live:
        urn, kind = res["urn"], str(res.get("type", ""))
        if kind == STACK_TYPE:
            outputs = masked(res.get("outputs") or {})
            continue
        if kind.startswith("pulumi:providers:") and urn.rsplit("::", 1)[-1].startswith("default"):
            continue  # the engine's default providers: not declared by the program
        name = urn.rsplit("::", 1)[-1]
        parent = mapped.get(str(res.get("parent") or ""), stack_urn)
        entry = {"urn": mapped[urn], "type": kind, "name": name, "parent": parent}
        resources.append({**entry, "inputs": masked(res.get("inputs") or {})})
        if kind == RELEASE_TYPE:
            releases.append(_release(mapped[urn], name, parent, res, hidden))
    return DeployedState(path, exported_stack, resources, releases, outputs, hidden)


def _release(urn: str, name: str, parent: str, res: dict[str, Any], hidden: list[str]) -> Registered:
    """The Release as it was installed: its outputs (what the provider deployed) over its inputs."""
    inputs = res.get("inputs") or {}
    outputs = res.get("outputs") or {}
    deployed = {}
    for key in ("chart", "version", "name", "namespace", "repositoryOpts", "values"):
        value = outputs.get(key, inputs.get(key))
        if value is not None:
            deployed[key] = revealed(value, hidden, f"{name}.{key}")
    return Registered(urn=urn, type=RELEASE_TYPE, name=name, parent=parent, custom=True, inputs=deployed)
