"""Print a greeting, the time, the host name and the home folder.

The entrypoint of the task image (images/task/Dockerfile). In a task pod the host name
is the pod's name and the home folder is the image user's. `GREETING` replaces the
greeting; the example DAG sets it from the run.
"""

from __future__ import annotations

import os
import socket
import sys
from datetime import UTC, datetime

DEFAULT_GREETING = "Hello from the airflow-k8s task image!"


def report() -> list[str]:
    """The four lines the task prints."""
    return [
        os.environ.get("GREETING") or DEFAULT_GREETING,
        f"Time: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"Host: {socket.gethostname()}",
        f"Home: {os.path.expanduser('~')}",
    ]


def main() -> int:
    for line in report():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
