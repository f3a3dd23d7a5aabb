"""Reads an Airflow Variable and a Connection: what the Fernet key protects, used by a task.

The task runs in the executor's own pod and asks Airflow (the Task Execution API, which
decrypts them with the Fernet key) for the Variable `example_keys_greeting` and the
Connection `example_keys_db`. It fails if either is missing. It prints the greeting, the
connection's host and login, and a SHA-256 prefix of its password (never the password).
The end-to-end run's node scenario stores both through the REST API, rotates the Fernet
key, upgrades Airflow and destroys and redeploys the stack, and runs this DAG after each
step (docs/e2e.md).
"""

from __future__ import annotations

import hashlib

from k8s_conventions import example_dag_args

try:  # Airflow 3
    from airflow.sdk import DAG, Connection, Variable, task
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.decorators import task  # type: ignore[no-redef]
    from airflow.models import Connection, Variable  # type: ignore[assignment,no-redef]

VARIABLE = "example_keys_greeting"
CONNECTION = "example_keys_db"


def describe(greeting: str, host: str | None, login: str | None, password: str | None) -> str:
    digest = hashlib.sha256((password or "").encode()).hexdigest()[:12]
    conn = f"connection {CONNECTION}: host={host} login={login} password-sha256={digest}"
    return f"variable {VARIABLE}={greeting}; {conn}"


with DAG(
    dag_id="example_keys",
    description="Reads a Variable and a Connection (decrypted with the Fernet key)",
    doc_md=__doc__,
    schedule=None,
    **example_dag_args("executor"),
):

    @task(task_id="read")
    def read() -> str:
        greeting = Variable.get(VARIABLE)
        if hasattr(Connection, "get"):  # Airflow 3's Task SDK
            conn = Connection.get(CONNECTION)
        else:
            conn = Connection.get_connection_from_secrets(CONNECTION)
        line = describe(greeting, conn.host, conn.login, conn.password)
        print(line)
        return line

    read()
