"""Why a deployment is not progressing: the pending objects of some namespaces, each with its
last Event (what the controller, scheduler or volume binder last said about it).

A Helm Release waits for its workloads until its timeout (15 minutes); the cluster usually
says within seconds why they will never be ready: a claim no volume can bind, a pod no
node matches, a Job whose pod cannot start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .kube import ApiError, Kube

MAX_OBJECTS = 12
MAX_MESSAGE = 300

# (apiVersion, kind) in the order they usually block each other: a claim blocks a pod,
# a pod blocks its Job or Deployment.
WATCHED = (
    ("v1", "PersistentVolumeClaim"),
    ("v1", "Pod"),
    ("batch/v1", "Job"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
)


def _condition(obj: dict[str, Any], kind: str) -> str | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return str(cond.get("status"))
    return None


def pending_state(obj: dict[str, Any]) -> str | None:
    """What is pending about one object ("Pending", "0/1 ready", ...), or None when it is done."""
    kind = obj.get("kind")
    status = obj.get("status") or {}
    if kind == "PersistentVolumeClaim":
        phase = status.get("phase") or "Pending"
        return None if phase == "Bound" else phase
    if kind == "Pod":
        phase = status.get("phase") or "Pending"
        if phase in ("Running", "Succeeded"):
            return None
        waiting = [
            str(s["state"]["waiting"].get("reason"))
            for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
            if (s.get("state") or {}).get("waiting")
        ]
        return phase + (f" ({', '.join(waiting)})" if waiting else "")
    if kind == "Job":
        if _condition(obj, "Complete") == "True":
            return None
        if _condition(obj, "Failed") == "True":
            return "Failed"
        return f"not complete (active={status.get('active', 0)}, failed={status.get('failed', 0)})"
    if kind == "Deployment":
        want = (obj.get("spec") or {}).get("replicas", 1)
        if _condition(obj, "Available") == "True" and status.get("availableReplicas", 0) >= want:
            return None
        return f"not Available ({status.get('availableReplicas', 0)}/{want} available)"
    if kind == "StatefulSet":
        want = (obj.get("spec") or {}).get("replicas", 1)
        if status.get("readyReplicas", 0) >= want:
            return None
        return f"not ready ({status.get('readyReplicas', 0)}/{want} ready)"
    return None


def _event_time(event: dict[str, Any]) -> str:
    series = event.get("series") or {}
    return str(
        series.get("lastObservedTime")
        or event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def last_events(events: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> the newest Event about that object."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        about = event.get("involvedObject") or event.get("regarding") or {}
        key = (str(about.get("kind")), str(about.get("name")))
        if key not in newest or _event_time(event) >= _event_time(newest[key]):
            newest[key] = event
    return newest


def _describe_event(event: dict[str, Any] | None) -> str:
    if event is None:
        return "no event"
    message = " ".join(str(event.get("message") or event.get("note") or "").split())
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return f"last event {event.get('reason')}: {message}"


def pending_objects(kube: Kube, namespace: str) -> list[tuple[str, str, str]]:
    """(kind, name, what is pending) of every watched object of `namespace` that is not done."""
    found = []
    for api_version, kind in WATCHED:
        try:
            items = kube.list(api_version, kind, namespace)
        except ApiError as exc:
            if exc.status == 404:
                continue
            raise
        for obj in items:
            obj.setdefault("kind", kind)
            state = pending_state(obj)
            if state is not None:
                found.append((kind, str(obj["metadata"]["name"]), state))
    return found


def _pending_lines(kube: Kube, namespaces: list[str]) -> list[tuple[str, str]]:
    """(what is pending about which object, the line that also names its last Event)."""
    lines = []
    for namespace in namespaces:
        pending = pending_objects(kube, namespace)
        if not pending:
            continue
        events = last_events(kube.list("v1", "Event", namespace))
        for kind, name, state in pending:
            head = f"{kind} {namespace}/{name}: {state}"
            lines.append((head, f"{head}; {_describe_event(events.get((kind, name)))}"))
    return lines


def _report(lines: list[str]) -> str | None:
    if not lines:
        return None
    more = len(lines) - MAX_OBJECTS
    return "\n".join(lines[:MAX_OBJECTS] + ([f"... and {more} more pending"] if more > 0 else []))


def pending_report(kube: Kube, namespaces: list[str]) -> str | None:
    """One line per pending object (claims not Bound, pods not Running or Succeeded, Jobs not
    complete, Deployments not Available, StatefulSets not ready) with its last Event; None
    when nothing in `namespaces` is pending."""
    return _report([line for _, line in _pending_lines(kube, namespaces)])


def stall_check(kube: Kube, namespaces: list[str]) -> Callable[[], str | None]:
    """A `stall` callable for e2e.process.run_bounded: the pending report while the same
    objects stay pending in the same state; None when nothing is pending or anything changed
    since the last call (an object got done, a new one appeared: that is progress). Events
    alone are no progress: a scheduler repeating why it cannot place a pod is still stuck."""
    last: list[list[str] | None] = [None]

    def check() -> str | None:
        lines = _pending_lines(kube, namespaces)
        heads = [head for head, _ in lines]
        progressed = heads != last[0]
        last[0] = heads
        return None if progressed or not lines else _report([line for _, line in lines])

    return check
