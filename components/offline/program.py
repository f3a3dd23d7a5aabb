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
from pulumi.runtime import mocks as pulumi_mocks, rpc
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


def whole_numbers(value: Any) -> Any:
    """Numbers as the program gave them: Pulumi's wire format (a protobuf Struct) carries every
    number as a double, so `8793` arrives as `8793.0`; the provider turns it back into an
    integer, and so does the preview."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
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
    """Mocks that echo inputs and give random resources realistic, deterministic values.

    `previous_outputs` are the outputs of the stack's last deployment, as a StackReference to
    the stack itself reads them (none: a stack that was never deployed)."""

    def __init__(self, previous_outputs: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.previous_outputs = dict(previous_outputs or {})
        # The engine marks these outputs secret (a resource's additionalSecretOutputs, such as
        # RandomPassword.result); the recording monitor sets them before each new_resource.
        self.secret_outputs: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        id_, state = self._new_resource(args)
        for key in self.secret_outputs:
            if key in state and not is_secret(state[key]):
                state[key] = rpc.wrap_rpc_secret(state[key])
        return id_, state

    def _new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        seed = f"{args.typ}:{args.name}"
        if args.typ == "pulumi:pulumi:StackReference":
            return args.name, {"name": args.name, "outputs": dict(self.previous_outputs), "secretOutputNames": []}
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
        if isinstance(self.mocks, RecordingMocks):
            self.mocks.secret_outputs = list(request.additionalSecretOutputs)
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
                    inputs=whole_numbers(rpc.deserialize_properties(request.object)),
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
    from ..platform.stack_file import read as read_stack_file

    project = _load_yaml(project_file.read_text())["name"]
    # Read as the Pulumi CLI reads it (YAML scalars, duplicate keys): see components/platform/stack_file.py.
    raw, _ = read_stack_file(stack_file.read_text(), project)
    config: dict[str, str] = {}
    secret_keys: set[str] = set()
    origin: dict[str, str] = {}
    # The stack's plain values, decoded, for placeholders shaped after them (teamSecrets).
    plain = {
        full.split(":", 1)[1]: (json.loads(v) if v.startswith(("{", "[")) else v)
        for full, v in raw.items()
        if full.startswith(f"{project}:") and isinstance(v, str)
    }
    for full, value in raw.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            short = full.split(":", 1)[1]
            env_name = secret_env_name(short)
            if env.get(env_name):
                config[full] = env[env_name]
                origin[full] = f"environment ({env_name})"
            else:
                config[full] = placeholder_for(short, plain)
                origin[full] = "placeholder"
            secret_keys.add(full)
        else:
            if value.startswith(("{", "[")) and "secure" in value:
                _reject_nested_secure(full, json.loads(value))
            config[full] = value
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


def secret_env_name(key: str) -> str:
    """The environment variable the preview takes a secret key's value from (`AIRFLOW_K8S_SECRET_<KEY>`)."""
    return "AIRFLOW_K8S_SECRET_" + "".join(c if c.isalnum() else "_" for c in key).upper()


def placeholder_sslmode(raw_config: Mapping[str, Any] | None) -> str:
    """The sslmode a stand-in databaseUrl needs: verify-full beside `airflow.database.caCertificate`
    (which only a verifying mode may have), else require."""
    airflow = (raw_config or {}).get("airflow")
    database = airflow.get("database") if isinstance(airflow, Mapping) else None
    has_ca = isinstance(database, Mapping) and database.get("caCertificate") is not None
    return "verify-full" if has_ca else "require"


def placeholder_for(key: str, raw_config: Mapping[str, Any] | None = None) -> str:
    """A value of the right shape for a secret key, plainly marked as a placeholder.

    Object-valued keys get an object: `connections` and `variables` an empty one (no ids are
    known), `teamSecrets` one key per Secret each team declares in `teams` (`raw_config`:
    the stack file's config, for the teams). `previousFernetKeys` gets a well-formed key."""
    if key == "databaseUrl":
        sslmode = placeholder_sslmode(raw_config)
        return f"postgresql://airflow:{SECRET_PLACEHOLDER_PREFIX}@db.placeholder.invalid:5432/airflow?sslmode={sslmode}"
    if key == "gitSshKey":
        return f"-----BEGIN OPENSSH PRIVATE KEY-----\n{SECRET_PLACEHOLDER_PREFIX}\n-----END OPENSSH PRIVATE KEY-----\n"
    if key in ("connections", "variables"):
        return "{}"
    if key == "teamSecrets":
        teams = (raw_config or {}).get("teams") or []
        shaped = {
            str(team["name"]): {
                str(name): {"value": f"{SECRET_PLACEHOLDER_PREFIX}-{team['name']}-{name}"}
                for name in team.get("secrets") or []
            }
            for team in teams
            if isinstance(team, dict) and team.get("name")
        }
        return json.dumps(shaped)
    if key == "previousFernetKeys":
        return base64.urlsafe_b64encode(hashlib.sha256(SECRET_PLACEHOLDER_PREFIX.encode()).digest()).decode()
    return f"{SECRET_PLACEHOLDER_PREFIX}-{key}"


def run_program(
    root: Path,
    stack: str,
    *,
    config: dict[str, str] | None = None,
    secret_keys: set[str] | None = None,
    project: str | None = None,
    program: Path | None = None,
    previous_outputs: Mapping[str, Any] | None = None,
) -> ProgramRun:
    """Run `root/__main__.py` (or `program`) for `stack` under recording mocks; `previous_outputs`
    are what the stack's last deployment exported (none: never deployed)."""
    origin: dict[str, str] = {}
    if config is None:
        project, config, secret_keys, origin = load_stack_config(root, stack)
    project = project or _load_yaml((root / "Pulumi.yaml").read_text())["name"]
    mocks = RecordingMocks(previous_outputs)
    monitor = RecordingMonitor(mocks)
    reset_options(project=project, stack=stack)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(dict(config), sorted(secret_keys or set()))

    main = program or root / "__main__.py"
    declared: dict[tuple[str, str], int] = {}
    added = str(root) not in sys.path
    if added:
        sys.path.insert(0, str(root))
    try:

        def program_main() -> None:
            # The order the program declares resources (registration order depends on when
            # each one's inputs resolve): a transformation runs in every constructor.
            def record(args: pulumi.ResourceTransformationArgs) -> None:
                declared.setdefault((args.type_, args.name), len(declared))

            pulumi.runtime.register_stack_transformation(record)
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
    order = {id(r): declared.get((r.type, r.name), len(declared) + i) for i, r in enumerate(monitor.registered)}
    return ProgramRun(
        project=project,
        stack=stack,
        resources=sorted(monitor.registered, key=lambda r: order[id(r)]),
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
