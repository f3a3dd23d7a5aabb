"""e2e.stuck: which objects keep a deployment waiting, and what the cluster last said about each."""

from __future__ import annotations

from typing import Any

from e2e.stuck import MAX_OBJECTS, pending_report, stall_check
from tests.fake_kube import FakeKube

NS = "airflow"


def obj(
    api_version: str, kind: str, name: str, status: dict[str, Any], spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": spec or {},
        "status": status,
    }


def claim(name: str, phase: str) -> dict[str, Any]:
    return obj("v1", "PersistentVolumeClaim", name, {"phase": phase})


def pod(name: str, phase: str, waiting: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if waiting:
        status["containerStatuses"] = [{"name": "c", "state": {"waiting": {"reason": waiting}}}]
    return obj("v1", "Pod", name, status)


def job(name: str, condition: str | None) -> dict[str, Any]:
    conditions = [{"type": condition, "status": "True"}] if condition else []
    return obj("batch/v1", "Job", name, {"conditions": conditions, "active": 1})


def deployment(name: str, available: int, replicas: int = 1) -> dict[str, Any]:
    cond = "True" if available >= replicas else "False"
    return obj(
        "apps/v1",
        "Deployment",
        name,
        {"availableReplicas": available, "conditions": [{"type": "Available", "status": cond}]},
        {"replicas": replicas},
    )


def statefulset(name: str, ready: int, replicas: int = 1) -> dict[str, Any]:
    return obj("apps/v1", "StatefulSet", name, {"readyReplicas": ready}, {"replicas": replicas})


def event(kind: str, name: str, reason: str, message: str, at: str, namespace: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.{at}", "namespace": namespace},
        "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
        "reason": reason,
        "message": message,
        "lastTimestamp": at,
    }


DONE = [
    claim("data", "Bound"),
    pod("web-1", "Running"),
    pod("migrate-1", "Succeeded"),
    job("migrate", "Complete"),
    deployment("web", 2, 2),
    statefulset("worker", 1),
]


class TestNothingPending:
    def test_a_namespace_where_everything_is_done_reports_none(self):
        assert pending_report(FakeKube(DONE), [NS]) is None

    def test_pending_objects_in_another_namespace_are_not_reported(self):
        other = claim("elsewhere", "Pending")
        other["metadata"]["namespace"] = "other"
        assert pending_report(FakeKube([*DONE, other]), [NS]) is None


class TestEachPendingKind:
    def test_a_claim_not_bound_is_named_with_its_last_event(self):
        kube = FakeKube(
            [
                *DONE,
                claim("logs", "Pending"),
                event("PersistentVolumeClaim", "logs", "Old", "older news", "2026-01-01T00:00:00Z"),
                event(
                    "PersistentVolumeClaim",
                    "logs",
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set",
                    "2026-01-01T00:05:00Z",
                ),
            ]
        )
        assert pending_report(kube, [NS]) == (
            "PersistentVolumeClaim airflow/logs: Pending; last event FailedBinding: "
            "no persistent volumes available for this claim and no storage class is set"
        )

    def test_a_pod_not_running_names_its_waiting_containers_and_the_scheduler_event(self):
        kube = FakeKube(
            [
                pod("scheduler-0", "Pending", waiting="ContainerCreating"),
                event(
                    "Pod",
                    "scheduler-0",
                    "FailedScheduling",
                    "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
                    "2026-01-01T00:00:00Z",
                ),
            ]
        )
        assert pending_report(kube, [NS]) == (
            "Pod airflow/scheduler-0: Pending (ContainerCreating); last event FailedScheduling: "
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
        )

    def test_a_failed_pod_counts_as_pending(self):
        assert "Pod airflow/p: Failed; no event" in (pending_report(FakeKube([pod("p", "Failed")]), [NS]) or "")

    def test_a_job_not_complete_a_deployment_not_available_and_a_statefulset_not_ready_are_named(self):
        report = pending_report(
            FakeKube([job("permissions", None), deployment("api", 1, 2), statefulset("triggerer", 0, 1)]), [NS]
        )
        assert report is not None
        assert report.splitlines() == [
            "Job airflow/permissions: not complete (active=1, failed=0); no event",
            "Deployment airflow/api: not Available (1/2 available); no event",
            "StatefulSet airflow/triggerer: not ready (0/1 ready); no event",
        ]

    def test_a_failed_job_says_failed(self):
        assert pending_report(FakeKube([job("migrate", "Failed")]), [NS]) == "Job airflow/migrate: Failed; no event"

    def test_an_event_about_another_object_of_the_same_name_but_another_kind_is_not_used(self):
        kube = FakeKube([claim("logs", "Pending"), event("Pod", "logs", "Scheduled", "x", "2026-01-01T00:00:00Z")])
        assert pending_report(kube, [NS]) == "PersistentVolumeClaim airflow/logs: Pending; no event"

    def test_long_messages_are_shortened_and_long_reports_say_how_many_more(self):
        many = [claim(f"c{i:02d}", "Pending") for i in range(MAX_OBJECTS + 3)]
        long_event = event("PersistentVolumeClaim", "c00", "R", "word " * 200, "2026-01-01T00:00:00Z")
        report = pending_report(FakeKube([*many, long_event]), [NS])
        assert report is not None
        lines = report.splitlines()
        assert len(lines) == MAX_OBJECTS + 1
        assert lines[-1] == "... and 3 more pending"
        assert lines[0].endswith("...") and len(lines[0]) < 400


class TestStallCheck:
    def test_the_same_pending_objects_are_a_stall_and_a_change_is_progress(self):
        kube = FakeKube([claim("logs", "Pending")])
        check = stall_check(kube, [NS])
        assert check() is None  # first look: nothing to compare with yet
        kube.objects.append(event("PersistentVolumeClaim", "logs", "FailedBinding", "none", "2026-01-01T00:00:00Z"))
        assert check() == "PersistentVolumeClaim airflow/logs: Pending; last event FailedBinding: none"
        kube.objects.append(pod("web-1", "Pending"))
        assert check() is None
        assert check() is not None
        kube.objects[:] = []
        assert check() is None
        assert check() is None
