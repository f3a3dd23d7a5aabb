"""Airflow 3's REST API, as a user reaches it: a JWT from `POST /auth/token` with the admin login,
then `/api/v2` (unpause and trigger a DAG, follow its run, read each task's log). Stdlib only."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FINISHED = ("success", "failed")


class AirflowApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.status = status
        super().__init__(f"{method} {path}: HTTP {status}: {body[:600]}")


@dataclass
class AirflowApi:
    base_url: str  # http://127.0.0.1:<port>
    token: str = ""
    timeout: float = 30

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url.rstrip("/") + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise AirflowApiError(method, path, exc.code, exc.read().decode(errors="replace")) from None
        return json.loads(raw) if raw else None

    def log_in(self, username: str, password: str) -> None:
        """A JWT for the user (Airflow 3: `POST /auth/token`), used by every later request."""
        answer = self.request("POST", "/auth/token", {"username": username, "password": password})
        self.token = str(answer["access_token"])

    def health(self) -> dict[str, Any]:
        health: dict[str, Any] = self.request("GET", "/api/v2/monitor/health")
        return health

    def dag_ids(self) -> list[str]:
        answer = self.request("GET", "/api/v2/dags?limit=100")
        return [str(dag["dag_id"]) for dag in answer["dags"]]

    def dag(self, dag_id: str) -> dict[str, Any]:
        dag: dict[str, Any] = self.request("GET", f"/api/v2/dags/{dag_id}")
        return dag

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str) -> str:
        run = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        run = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")
        return str(run["state"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances"
        items: list[dict[str, Any]] = self.request("GET", path)["task_instances"]
        return items

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """The task's log as Airflow serves it (from the logs volume), one line per entry."""
        run = urllib.parse.quote(run_id, safe="")
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/logs/{try_number}?full_content=true"
        answer = self.request("GET", path)
        return log_text(answer.get("content") if isinstance(answer, dict) else answer)

    def wait_run(self, dag_id: str, run_id: str, timeout: float, on_poll: Callable[[], None] = lambda: None) -> str:
        """Poll the run until it has finished (its state back) or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            on_poll()
            state = self.run_state(dag_id, run_id)
            if state in FINISHED:
                return state
            time.sleep(2)
        raise TimeoutError(f"run {run_id} of {dag_id} still {state} after {timeout:.0f}s")


def log_text(content: Any) -> str:
    """Airflow 3 serves a log as structured entries ({"event": ..., "timestamp": ...}) or text."""
    if isinstance(content, str):
        return content
    lines = []
    for entry in content or []:
        if isinstance(entry, dict):
            lines.append(str(entry.get("event", "")))
        else:
            lines.append(str(entry))
    return "\n".join(lines)
