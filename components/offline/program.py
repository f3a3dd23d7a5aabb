"""Run a Pulumi program under mocks and record every resource it declares.

The recording keeps what a real `pulumi preview` would send to the engine: type,
name, parent, dependencies, protect / retainOnDelete, aliases, and the resolved
inputs with secret markers intact (a secret value is wrapped as
`{SECRET_KEY: ..., "value": ...}`, exactly as Pulumi's RPC layer does).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import runpy
import string
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.settings import reset_options
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

SECRET_PLACEHOLDER_PREFIX = "PREVIEW-PLACEHOLDER"


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def is_secret(value: Any) -> bool:
    return bool(rpc.is_rpc_secret(value))


def unwrap(value: Any) -> Any:
    """Drop secret markers, recursively (for rendering)."""
    if is_secret(value):
        return unwrap(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def secret_paths(value: Any, path: str = "") -> list[str]:
    """Paths of every value marked secret in an input tree."""
    if is_secret(value):
        return [path or "."]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in secret_paths(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in secret_paths(v, f"{path}[{i}]")]
    return []


@dataclass
class Registered:
    """One resource as the engine would have received it."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    protect: bool = False
    retain_on_delete: bool = False
    dependencies: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    provider: str = ""
    # Each alias as sent: {"urn": ...} or the spec {"name", "type", "stack", "project", "parentUrn", "noParent"}.
    alias_specs: list[dict[str, Any]] = field(default_factory=list)


def _stable_text(seed: str, length: int, alphabet: str) -> str:
    out = ""
    counter = 0
    while len(out) < length:
        digest = hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        out += "".join(alphabet[b % len(alphabet)] for b in digest)
        counter += 1
    return out[:length]


def _alias_spec(alias: Any) -> dict[str, Any]:
    if alias.urn:
        return {"urn": alias.urn}
    spec = alias.spec
    return {
        "name": spec.name,
        "type": spec.type,
        "stack": spec.stack,
        "project": spec.project,
        "parentUrn": spec.parentUrn,
        "noParent": bool(spec.noParent),
    }


class RecordingMocks(pulumi.runtime.Mocks):
    """Mocks that echo inputs and give random resources realistic, deterministic values."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        seed = f"{args.typ}:{args.name}"
        if args.typ == "random:index/randomBytes:RandomBytes":
            raw = hashlib.sha256(seed.encode()).digest() * (int(args.inputs.get("length", 32)) // 32 + 1)
            raw = raw[: int(args.inputs.get("length", 32))]
            state.update({"base64": base64.b64encode(raw).decode(), "hex": raw.hex()})
        elif args.typ in ("random:index/randomPassword:RandomPassword", "random:index/randomString:RandomString"):
            alphabet = string.ascii_letters + string.digits
            if args.inputs.get("special", True):
                alphabet += args.inputs.get("overrideSpecial") or "!@#$%&*()-_=+[]{}<>:?"
            state["result"] = _stable_text(seed, int(args.inputs.get("length", 16)), alphabet)
        elif args.typ == "kubernetes:helm.sh/v3:Release":
            state["status"] = {
                "name": args.inputs.get("name", args.name),
                "namespace": args.inputs.get("namespace", "default"),
                "chart": args.inputs.get("chart"),
                "version": args.inputs.get("version"),
                "status": "deployed",
                "revision": 1,
            }
        elif args.typ.startswith("kubernetes:") and isinstance(state.get("metadata"), dict):
            # Like the API server's: the same for the same object, another one when it changes.
            digest = hashlib.sha256(json.dumps(args.inputs, sort_keys=True, default=str).encode()).hexdigest()
            state["metadata"] = {**state["metadata"], "resourceVersion": str(int(digest[:12], 16))}
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock engine, keeping everything a real engine would see."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registered: list[Registered] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            aliases = [a.urn if a.urn else a.spec.name for a in request.aliases] if request.aliases else []
            self.registered.append(
                Registered(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    custom=request.custom,
                    inputs=rpc.deserialize_properties(request.object),
                    protect=bool(request.protect),
                    retain_on_delete=bool(request.retainOnDelete),
                    dependencies=list(request.dependencies),
                    aliases=[str(a) for a in aliases],
                    provider=request.provider,
                    alias_specs=[_alias_spec(a) for a in request.aliases],
                )
            )
        return response


@dataclass
class ProgramRun:
    project: str
    stack: str
    resources: list[Registered]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    placeholders: dict[str, str]
    config: dict[str, str] = field(default_factory=dict)

    def config_object(self, key: str) -> dict[str, Any]:
        """A structured config key of the project (e.g. `cluster`), or {}."""
        value = self.config.get(f"{self.project}:{key}")
        return json.loads(value) if value else {}


def load_stack_config(
    root: Path, stack: str, env: Mapping[str, str] | None = None, stack_file: Path | None = None
) -> tuple[str, dict[str, Any], set[str], dict[str, str]]:
    """Read Pulumi.yaml and Pulumi.<stack>.yaml the way the CLI hands config to a program.

    Secure values cannot be decrypted here. Each is taken from the environment variable
    `AIRFLOW_K8S_SECRET_<KEY>` when set, else replaced by a marked placeholder. Returns
    (project, config for set_all_config, secret keys, {key: "environment" | "placeholder"}).
    `stack_file` reads the stack's settings from another file than `root/Pulumi.<stack>.yaml`.
    """
    env = os.environ if env is None else env
    project_file = root / "Pulumi.yaml"
    stack_file = stack_file or root / f"Pulumi.{stack}.yaml"
    if not stack_file.exists():
        stacks = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))
        raise FileNotFoundError(f"no stack file {stack_file.name}; stacks here: {', '.join(stacks) or 'none'}")
    project = _load_yaml(project_file.read_text())["name"]
    raw = (_load_yaml(stack_file.read_text()) or {}).get("config") or {}
    config: dict[str, str] = {}
    secret_keys: set[str] = set()
    origin: dict[str, str] = {}
    for key, value in raw.items():
        full = key if ":" in key else f"{project}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            short = full.split(":", 1)[1]
            env_name = "AIRFLOW_K8S_SECRET_" + "".join(c if c.isalnum() else "_" for c in short).upper()
            if env.get(env_name):
                config[full] = env[env_name]
                origin[full] = f"environment ({env_name})"
            else:
                config[full] = placeholder_for(short)
                origin[full] = "placeholder"
            secret_keys.add(full)
        elif isinstance(value, dict | list):
            if "secure" in json.dumps(value):
                _reject_nested_secure(full, value)
            config[full] = json.dumps(value)
        else:
            config[full] = value if isinstance(value, str) else json.dumps(value)
    return project, config, secret_keys, origin


def _reject_nested_secure(key: str, value: Any, path: str = "") -> None:
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            raise ValueError(
                f"config key '{key}{path}' is a secret inside an object; this project keeps secrets in "
                "top-level keys (gitToken, gitSshKey, databaseUrl) so the rest of the object stays readable."
            )
        for k, v in value.items():
            _reject_nested_secure(key, v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _reject_nested_secure(key, v, f"{path}[{i}]")


def placeholder_for(key: str) -> str:
    """A value of the right shape for a secret key, plainly marked as a placeholder."""
    if key == "databaseUrl":
        return f"postgresql://airflow:{SECRET_PLACEHOLDER_PREFIX}@db.placeholder.invalid:5432/airflow?sslmode=require"
    if key == "gitSshKey":
        return f"-----BEGIN OPENSSH PRIVATE KEY-----\n{SECRET_PLACEHOLDER_PREFIX}\n-----END OPENSSH PRIVATE KEY-----\n"
    return f"{SECRET_PLACEHOLDER_PREFIX}-{key}"


def run_program(
    root: Path,
    stack: str,
    *,
    config: dict[str, str] | None = None,
    secret_keys: set[str] | None = None,
    project: str | None = None,
    program: Path | None = None,
) -> ProgramRun:
    """Run `root/__main__.py` (or `program`) for `stack` under recording mocks."""
    origin: dict[str, str] = {}
    if config is None:
        project, config, secret_keys, origin = load_stack_config(root, stack)
    project = project or _load_yaml((root / "Pulumi.yaml").read_text())["name"]
    mocks = RecordingMocks()
    monitor = RecordingMonitor(mocks)
    reset_options(project=project, stack=stack)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(dict(config), sorted(secret_keys or set()))

    main = program or root / "__main__.py"
    added = str(root) not in sys.path
    if added:
        sys.path.insert(0, str(root))
    try:

        def program_main() -> None:
            runpy.run_path(str(main), run_name="__main__")

        _sync_await(run_pulumi_func(program_main))
    except Exception as exc:
        # What the program had declared when it failed: bad config must fail before anything.
        exc.declared_before_error = list(monitor.registered)  # type: ignore[attr-defined]
        raise
    finally:
        if added:
            sys.path.remove(str(root))

    outputs, secret_outputs = _stack_outputs()
    return ProgramRun(
        project=project,
        stack=stack,
        resources=list(monitor.registered),
        outputs=outputs,
        secret_outputs=secret_outputs,
        placeholders=origin,
        config=dict(config),
    )


def _stack_outputs() -> tuple[dict[str, Any], set[str]]:
    root = pulumi.runtime.get_root_resource()
    raw: dict[str, Any] = getattr(root, "outputs", {}) or {}
    values: dict[str, Any] = {}
    secret: set[str] = set()

    async def resolve() -> None:
        for key, value in raw.items():
            out = pulumi.Output.from_input(value)
            values[key] = await out.future()
            if await out.is_secret():
                secret.add(key)

    _sync_await(resolve())
    return values, secret
