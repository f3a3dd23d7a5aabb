"""Airflow's own validation of what a stack hands to Airflow, in the Airflow virtualenv (`.venv-dags`).

Started by the preview (components/offline/airflow_checks.py) as `python -I airflow_judge.py`: it
imports Airflow first (the slow part, while the preview renders the charts), then reads one JSON
document on stdin and writes one on stdout. Only the standard library and Airflow (with croniter,
its cron library) are imported here: the project's modules need pulumi, which this virtualenv
cannot hold.

In: {"connections": {key: URI or object}, "crons": {key: expression}, "pools": {key: name},
"variables": {key: name}, "config": [{"key": stack key or "", "section": ..., "option": ..., "value":
...}]}. Out: {"findings": [{"key": ..., "message": ...}], "airflow": version}. Each check calls the
code Airflow itself runs on that input:

- a connection: the LocalFilesystemBackend's `_create_connection` (how the stack's connections reach
  Airflow), then its `conn_type`, which must not be empty;
- a cron expression: croniter, as Airflow's cron timetables use it: one with no next date never fires;
- a pool name: `airflow pools import`'s `create_pool` checks (empty, longer than the pool column);
- a variable key: the length of the variable column;
- an `airflow.cfg` option: known to Airflow (or an installed provider) in that section, and readable
  as the type Airflow's configuration description gives it (`getint`, `getfloat`, `getboolean`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
from typing import Any

os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")
logging.disable(logging.WARNING)

with contextlib.redirect_stdout(io.StringIO()):
    import airflow
    from airflow.api.client.local_client import Client
    from airflow.configuration import AirflowConfigParser, conf
    from airflow.models.pool import Pool
    from airflow.models.variable import Variable
    from airflow.secrets.local_filesystem import _create_connection
    from croniter import CroniterBadDateError, croniter


def connection_findings(connections: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for key, value in connections.items():
        conn_id = key.rpartition(".")[2]
        try:
            conn = _create_connection(conn_id, value)
        except Exception as exc:
            text = str(exc)
            for secret in (value, value.get("password") if isinstance(value, dict) else None):
                if isinstance(secret, str) and secret:
                    text = text.replace(secret, "[not shown]")
            out.append({"key": key, "message": f"Airflow cannot read this connection: {type(exc).__name__}: {text}"})
            continue
        if not conn.conn_type:
            out.append(
                {
                    "key": key,
                    "message": "Airflow reads this connection with an empty conn_type (its URI scheme, or the "
                    "object's conn_type, names no connection type); hooks cannot use it",
                }
            )
    return out


def cron_findings(crons: dict[str, str]) -> list[dict[str, str]]:
    out = []
    for key, expression in crons.items():
        try:
            schedule = croniter(expression)
        except Exception:
            continue  # a syntax croniter does not take (such as Kubernetes' @every): the API server judges it
        try:
            schedule.get_next(float)
        except CroniterBadDateError:
            out.append({"key": key, "message": f"{expression!r} never fires: croniter finds no date that matches it"})
    return out


def pool_findings(pools: dict[str, str]) -> list[dict[str, str]]:
    out = []
    client = Client()
    original = Pool.create_or_update_pool
    try:
        Pool.create_or_update_pool = staticmethod(lambda **kw: Pool(pool=kw["name"], slots=kw["slots"]))
        for key, name in pools.items():
            try:
                client.create_pool(name=name, slots=1, description="", include_deferred=False)
            except Exception as exc:
                out.append({"key": key, "message": f"`airflow pools import` refuses this pool: {exc}"})
    finally:
        Pool.create_or_update_pool = original
    return out


def variable_findings(variables: dict[str, str]) -> list[dict[str, str]]:
    limit = Variable.key.property.columns[0].type.length
    return [
        {"key": key, "message": f"a variable key of {len(name)} characters: Airflow's variable table takes {limit}"}
        for key, name in variables.items()
        if limit and len(name) > limit
    ]


_GETTERS = {"integer": "getint", "float": "getfloat", "boolean": "getboolean"}


def config_findings(options: list[dict[str, str]]) -> list[dict[str, str]]:
    with contextlib.suppress(Exception):
        conf.load_providers_configuration()
    described = conf.configuration_description
    parser = AirflowConfigParser()
    out = []
    for entry in options:
        section, option, value, key = entry["section"], entry["option"], entry["value"], entry["key"]
        known = (described.get(section) or {}).get("options") or {}
        where = key or f"[{section}] {option} (in the rendered airflow.cfg)"
        if option not in known:
            if key:  # options of the chart's own defaults that Airflow no longer knows are not the stack's doing
                out.append(
                    {
                        "key": where,
                        "message": f"Airflow {airflow.__version__} has no option {option!r} in [{section}] "
                        "(nor does an installed provider): it is ignored",
                    }
                )
            continue
        getter = _GETTERS.get(str(known[option].get("type")))
        if getter is None or "{{" in value:
            continue
        if not parser.has_section(section):
            parser.add_section(section)
        parser.set(section, option, value)
        try:
            getattr(parser, getter)(section, option)
        except Exception as exc:
            out.append({"key": where, "message": f"Airflow cannot read it as {known[option]['type']}: {exc}"})
    return out


def main() -> int:
    request = json.loads(sys.stdin.read() or "{}")
    findings = [
        *connection_findings(request.get("connections") or {}),
        *cron_findings(request.get("crons") or {}),
        *pool_findings(request.get("pools") or {}),
        *variable_findings(request.get("variables") or {}),
        *config_findings(request.get("config") or []),
    ]
    sys.stdout.write(json.dumps({"airflow": airflow.__version__, "findings": findings}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
