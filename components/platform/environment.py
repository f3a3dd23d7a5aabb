"""Airflow connections and variables as code: the `connections` and `variables` stack keys.

Both end up in one Kubernetes Secret (`<release>-pulumi-environment`), as
`connections.json` and `variables.json`, that every Airflow container and the
KubernetesExecutor pod template mount and Airflow reads through its LocalFilesystemBackend,
before its database (airflow/values/secret_files.py).

- `connections` is always a secret (`pulumi config set --secret connections '<json>'`):
  an object of connection id -> Airflow connection URI (`postgresql://user:pw@host/db`) or
  Airflow's JSON form (`{"conn_type": ..., "host": ..., "password": ...}`).
- `variables` may be plain (readable in the stack file) or secret (when any value is
  sensitive): an object of key -> string; numbers, booleans, lists and objects become
  JSON text (read them with `Variable.get(key, deserialize_json=True)`).

Errors never show a secret value. Ids the platform sets itself (the Spark operator's
`kubernetes_default`, the remote-logging connection, Spark's variables) cannot be
declared again: the clash is an error naming both sides.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from ..airflow.config.dag_bundles import GitBundle
from ..airflow.values.secret_files import connection_owners
from ..core.ids import check_no_clash
from ..core.reader import ConfigError, ConfigTypeError, json_value, type_name
from ..logs.config import LogsConfig
from ..spark.config import SparkConfig
from ..spark.values import airflow_connections, airflow_variables

V = TypeVar("V")

_ID = re.compile(r"^[A-Za-z0-9_]{1,250}$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-_]*://")
CONNECTION_FIELDS = ("conn_type", "description", "host", "login", "password", "schema", "port", "extra")
HIDDEN = "[secret]"


def _check_id(key: str, ident: str, prefix: str) -> None:
    if not _ID.match(ident):
        raise ConfigError(
            key,
            ident,
            f"use 1-250 letters, digits and underscores: ids that also work as {prefix}<ID> environment "
            "variables, so moving one there (or from there) never renames it.",
        )


def _decode_object(key: str, raw: Any, secret: bool) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            raw = json_value(key, raw, secret=secret)
        except json.JSONDecodeError:
            raise ConfigError(
                key, HIDDEN if secret else raw, "expected a JSON object {id: value}.", _set_command(key, secret)
            ) from None
    if not isinstance(raw, Mapping):
        raise ConfigTypeError(
            key, HIDDEN if secret else raw, f"expected an object {{id: value}}, got {type_name(raw)}."
        )
    return dict(raw)


def _set_command(key: str, secret: bool) -> str:
    flag = "--secret " if secret else ""
    return f'pulumi config set {flag}{key} \'{{"<id>": "<value>"}}\''


def _upper_unique(key: str, entries: Mapping[str, Any]) -> None:
    seen: dict[str, str] = {}
    for ident in entries:
        other = seen.get(ident.upper())
        if other is not None:
            raise ConfigError(
                f"{key}.{ident}",
                ident,
                f"'{other}' is the same id to Airflow (ids are upper-cased into environment variables).",
            )
        seen[ident.upper()] = ident


def parse_connections(raw: Any, key: str = "connections") -> dict[str, str]:
    """Connection id -> its value (URI, or Airflow's JSON form)."""
    entries = _decode_object(key, raw, secret=True)
    out: dict[str, str] = {}
    for conn_id, value in entries.items():
        item = f"{key}.{conn_id}"
        _check_id(item, conn_id, "AIRFLOW_CONN_")
        if isinstance(value, str) and value.lstrip().startswith("{"):
            try:
                value = json_value(item, value, secret=True)
            except json.JSONDecodeError:
                raise ConfigError(item, HIDDEN, "starts with '{' but is not valid JSON.") from None
        if isinstance(value, str):
            if not _URI.match(value):
                raise ConfigError(
                    item,
                    HIDDEN,
                    "expected an Airflow connection URI (<conn-type>://[login[:password]@]host[:port][/schema]"
                    "[?extra]) or a JSON object with conn_type.",
                )
            out[conn_id] = value
            continue
        if not isinstance(value, Mapping):
            raise ConfigTypeError(item, HIDDEN, f"expected a URI or an object, got {type_name(value)}.")
        unknown = sorted(k for k in value if k not in CONNECTION_FIELDS)
        if unknown:
            raise ConfigError(
                f"{item}.{unknown[0]}", HIDDEN, f"not a connection field; allowed: {', '.join(CONNECTION_FIELDS)}."
            )
        if not isinstance(value.get("conn_type"), str) or not value["conn_type"]:
            raise ConfigError(f"{item}.conn_type", HIDDEN, "a connection in JSON form needs its conn_type.")
        port = value.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
            raise ConfigError(f"{item}.port", port, "expected a TCP port number from 1 to 65535.")
        out[conn_id] = json.dumps(dict(value), sort_keys=True)
    _upper_unique(key, out)
    return out


def parse_variables(raw: Any, *, secret: bool, key: str = "variables") -> dict[str, str]:
    """Variable key -> its value (text; JSON for anything else)."""
    entries = _decode_object(key, raw, secret=secret)
    out: dict[str, str] = {}
    for var, value in entries.items():
        item = f"{key}.{var}"
        _check_id(item, var, "AIRFLOW_VAR_")
        if value is None:
            raise ConfigError(item, None, "a variable needs a value (remove the key to drop the variable).")
        out[var] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    _upper_unique(key, out)
    return out


def merged(declared: Mapping[str, V], platform: Mapping[str, V], key: str) -> dict[str, V]:
    """The platform's entries and the declared ones, refusing any id both set."""
    check_no_clash(key, declared, {ident: ("platform", "the platform's value is used.") for ident in platform})
    return {**platform, **declared}


def platform_connections(
    spark: SparkConfig, logs: LogsConfig, bundle: GitBundle | None = None
) -> dict[str, tuple[str, str]]:
    """Connection ids the stack's own components set: id -> (config key, what to do instead)."""
    owners = {
        conn_id: ("spark", "SparkOperator sets it to the in-cluster Kubernetes API; name yours differently.")
        for conn_id in airflow_connections(spark)
    }
    return {**owners, **connection_owners(bundle, logs)}


def platform_variables(spark: SparkConfig) -> dict[str, tuple[str, str]]:
    advice = "it follows spark.jobNamespaces and spark.serviceAccounts; change those instead."
    return {key: ("spark", advice) for key in airflow_variables(spark)}


# The API server refuses a Secret whose values hold more than 1 MiB together (MaxSecretSize).
MAX_SECRET_BYTES = 1024 * 1024
# What the platform adds to the same Secret (Spark's connection and variables, task images, the
# remote-logging and git bundle connections) stays well under this.
PLATFORM_ENTRIES_BYTES = 16 * 1024


def check_secret_size(connections: Mapping[str, str], variables: Mapping[str, str]) -> None:
    """connections.json and variables.json share one Secret: together they must fit in 1 MiB."""
    from ..airflow.values.secret_files import connections_file, variables_file

    size = len(connections_file(connections).encode()) + len(variables_file(variables).encode())
    if size + PLATFORM_ENTRIES_BYTES <= MAX_SECRET_BYTES:
        return
    entries = [(f"connections.{k}", v) for k, v in connections.items()] + [
        (f"variables.{k}", v) for k, v in variables.items()
    ]
    key, value = max(entries, key=lambda entry: len(entry[1].encode()))
    raise ConfigError(
        key,
        f"[{len(value.encode())} bytes]",
        f"connections and variables reach Airflow in one Secret, and together they hold {size} bytes; the API server "
        f"refuses a Secret over 1 MiB ({MAX_SECRET_BYTES} bytes, {PLATFORM_ENTRIES_BYTES} of them kept for the "
        "platform's own entries). This is the largest entry.",
        "keep large data out of Variables: in the DAG repository, or an object store the DAG reads.",
    )


def parse_environment(
    values: Mapping[str, Any],
    secret_keys: set[str] | frozenset[str],
    *,
    spark: SparkConfig,
    logs: LogsConfig,
    bundle: GitBundle | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """The `connections` (secret) and `variables` (plain or secret) stack keys, checked against
    what the platform itself declares."""
    connections = parse_connections(values["connections"]) if "connections" in values else {}
    variables = parse_variables(values["variables"], secret="variables" in secret_keys) if "variables" in values else {}
    check_no_clash("connections", connections, platform_connections(spark, logs, bundle))
    check_no_clash("variables", variables, platform_variables(spark))
    check_secret_size(connections, variables)
    return connections, variables
