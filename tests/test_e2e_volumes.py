"""e2e.volumes: the volume-provisioner stand-in (decisions on plain objects, then the thread
against a fake API server, then the real PV controller when the cluster binaries are here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e import tools
from e2e.cluster import KWOK_STAGES, ControlPlane
from e2e.kube import Kube, wait_for
from e2e.volumes import Provisioner, needs_volume, volume_can_bind, volume_for
from tests.fake_kube import FakeKube
from tests.helpers import ROOT


def claim(
    name: str = "logs",
    size: str = "100Gi",
    cls: str | None = "standard",
    modes: tuple[str, ...] = ("ReadWriteMany",),
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}, **spec}
    if cls is not None:
        body["storageClassName"] = cls
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "airflow", "uid": f"uid-{name}"},
        "spec": body,
        "status": {"phase": "Pending"},
    }


def volume(
    name: str = "pv",
    size: str = "100Gi",
    cls: str = "standard",
    modes: tuple[str, ...] = ("ReadWriteMany",),
    phase: str = "Available",
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"capacity": {"storage": size}, "accessModes": list(modes), "storageClassName": cls, **spec},
        "status": {"phase": phase},
    }


class TestWhichClaimsGetAVolume:
    def test_a_pending_claim_no_volume_can_take_gets_one(self):
        assert needs_volume(claim(), [volume(size="20Gi")])

    def test_a_claim_an_existing_volume_fits_is_left_to_the_pv_controller(self):
        assert not needs_volume(claim(), [volume()])
        assert not needs_volume(claim(size="10Gi"), [volume(size="20Gi")])

    def test_a_claim_that_names_its_volume_is_never_taken(self):
        assert not needs_volume(claim(volumeName="static-logs"), [])

    def test_bound_and_deleting_claims_and_clones_are_left_alone(self):
        bound = claim()
        bound["status"]["phase"] = "Bound"
        deleting = claim()
        deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        clone = claim(dataSource={"kind": "PersistentVolumeClaim", "name": "x"})
        assert not any(needs_volume(c, []) for c in (bound, deleting, clone))

    def test_each_thing_the_pv_controller_checks_can_rule_a_volume_out(self):
        c = claim(size="10Gi", modes=("ReadWriteMany",), selector={"matchLabels": {"tier": "logs"}})
        fits = volume(size="10Gi", labels={"tier": "logs"})
        assert volume_can_bind(fits, c)
        for why, other in {
            "class": volume(size="10Gi", cls="fast", labels={"tier": "logs"}),
            "size": volume(size="9Gi", labels={"tier": "logs"}),
            "mode": volume(size="10Gi", modes=("ReadWriteOnce",), labels={"tier": "logs"}),
            "selector": volume(size="10Gi", labels={"tier": "data"}),
            "bound elsewhere": volume(size="10Gi", labels={"tier": "logs"}, claimRef={"namespace": "a", "name": "b"}),
            "released": volume(size="10Gi", labels={"tier": "logs"}, phase="Released"),
            "block": volume(size="10Gi", labels={"tier": "logs"}, volumeMode="Block"),
        }.items():
            assert not volume_can_bind(other, c), why

    def test_a_volume_pre_bound_to_the_claim_fits_it(self):
        c = claim()
        ref = {"namespace": "airflow", "name": "logs", "uid": "uid-logs"}
        assert volume_can_bind(volume(claimRef=ref, phase="Available"), c)
        assert not volume_can_bind(volume(claimRef={**ref, "uid": "an-older-claim"}), c)

    def test_a_claim_without_a_class_only_takes_a_volume_without_one(self):
        assert volume_can_bind(volume(cls=""), claim(cls=""))
        assert not volume_can_bind(volume(cls="standard"), claim(cls=""))


class TestTheVolumeMade:
    def test_it_fits_the_claim_exactly_and_is_pre_bound_to_it(self, tmp_path):
        c = claim(
            size="100Gi",
            cls="no-such-class",
            modes=("ReadWriteMany", "ReadOnlyMany"),
            selector={
                "matchLabels": {"tier": "logs"},
                "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}],
            },
        )
        pv = volume_for(c, tmp_path)
        assert pv["metadata"]["name"] == "pvc-uid-logs"
        assert pv["spec"]["capacity"] == {"storage": "100Gi"}
        assert pv["spec"]["accessModes"] == ["ReadWriteMany", "ReadOnlyMany"]
        assert pv["spec"]["storageClassName"] == "no-such-class"
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        assert pv["spec"]["claimRef"] == {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": "airflow",
            "name": "logs",
            "uid": "uid-logs",
        }
        assert pv["spec"]["hostPath"]["path"] == str(tmp_path / "pvc-uid-logs")
        assert volume_can_bind(pv, c)

    def test_a_claim_without_size_or_modes_gets_defaults(self, tmp_path):
        c = claim(cls=None)
        del c["spec"]["resources"], c["spec"]["accessModes"]
        pv = volume_for(c, tmp_path)
        assert (pv["spec"]["capacity"]["storage"], pv["spec"]["accessModes"]) == ("1Gi", ["ReadWriteOnce"])
        assert pv["spec"]["storageClassName"] == ""


class TestTheProvisionerLoop:
    def test_it_waits_before_acting_then_makes_one_volume_per_claim_once(self, tmp_path):
        now = [0.0]
        kube = FakeKube([claim("big"), claim("small", size="1Gi"), volume("premade", size="20Gi")])
        prov = Provisioner(kube, tmp_path / "v", tmp_path / "log", delay=3, clock=lambda: now[0])
        assert prov.sync_once() == []  # first seen
        now[0] = 2.9
        assert prov.sync_once() == []
        now[0] = 3.0
        made = prov.sync_once()
        assert made == ["airflow/big -> pvc-uid-big (100Gi, class standard, ReadWriteMany)"]
        assert [o["metadata"]["name"] for o in kube.objects if o["kind"] == "PersistentVolume"] == [
            "premade",
            "pvc-uid-big",
        ]
        now[0] = 10.0
        assert prov.sync_once() == []  # the volume made now fits the claim: nothing more
        assert "airflow/big -> pvc-uid-big" in (tmp_path / "log").read_text()

    def test_a_claim_that_a_stack_volume_fits_in_time_is_not_taken(self, tmp_path):
        now = [0.0]
        kube = FakeKube([claim("logs")])
        prov = Provisioner(kube, tmp_path / "v", tmp_path / "log", delay=3, clock=lambda: now[0])
        prov.sync_once()
        kube.objects.append(volume("stack-logs"))
        now[0] = 5.0
        assert prov.sync_once() == []

    def test_the_thread_starts_and_stops(self, tmp_path):
        kube = FakeKube([claim("big")])
        prov = Provisioner(kube, tmp_path / "v", tmp_path / "log", delay=0, interval=0.05)
        prov.start()
        try:
            wait_for("a volume", lambda: None if prov.provisioned else "none yet", timeout=10, interval=0.05)
        finally:
            prov.stop()
        assert prov._thread is None
        assert len([o for o in kube.objects if o["kind"] == "PersistentVolume"]) == 1


# --- the real PV controller ----------------------------------------------------------------


def _cluster_binaries() -> dict[str, Path] | None:
    found: dict[str, Path] = {}
    install = ROOT.parent / "shared" / "tools" / "install.sh"
    bin_dir: Path | None = None
    if install.exists():
        proc = subprocess.run([str(install)], capture_output=True, text=True, check=False)
        if proc.returncode == 0 and proc.stdout.strip():
            bin_dir = Path(proc.stdout.strip().splitlines()[-1])
    for name in tools.CLUSTER_TOOLS:
        r = tools.resolve(name, tools.default_cache(), build_missing=False)
        if r.path is not None:
            found[name] = r.path
        elif bin_dir is not None and (bin_dir / name).exists():
            found[name] = bin_dir / name
        else:
            return None
    return found


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    binaries = _cluster_binaries()
    if binaries is None or shutil.which("openssl") is None:
        pytest.skip("the cluster binaries (../shared/tools) or openssl are not available")
    try:
        kwok = tools.module_dir("sigs.k8s.io/kwok", tools.KWOK_VERSION, tools.default_cache(), "kwok's stages")
    except tools.ToolError as exc:
        pytest.skip(str(exc))
    work = Path(tempfile.mkdtemp(prefix="e2e-volumes-"))
    cp = ControlPlane(work, binaries, [kwok / s for s in KWOK_STAGES], echo=lambda _: None, node_names=["laptop"])
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()
        shutil.rmtree(work, ignore_errors=True)


def _create(kube: Kube, *objs: dict[str, Any]) -> None:
    for obj in objs:
        obj = {k: v for k, v in obj.items() if k != "status"}
        obj["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "uid"}
        kube.create(obj)


@pytest.mark.skipif(os.environ.get("AIRFLOW_K8S_SKIP_CLUSTER_TESTS") == "1", reason="AIRFLOW_K8S_SKIP_CLUSTER_TESTS=1")
def pending_pod(name: str = "db-0", claim_name: str = "data", *, owned: bool = True, **status: Any) -> dict[str, Any]:
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. not found",
        **status,
    }
    owners = [{"kind": "StatefulSet", "name": "db", "controller": True}] if owned else []
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "airflow", "uid": f"uid-{name}", "ownerReferences": owners},
        "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}]},
        "status": {"phase": "Pending", "conditions": [condition]},
    }


def bound(c: dict[str, Any]) -> dict[str, Any]:
    c["status"] = {"phase": "Bound"}
    return c


class TestAPodTheSchedulerForgot:
    """Found on the node: the scheduler tried PostgreSQL's pod before its claim was bound and did not
    try again when it was, so `pulumi up` waited five minutes for the flush of unschedulable pods."""

    def test_a_controllers_pod_unschedulable_for_claims_that_are_all_bound_now_is_stuck(self):
        from e2e.volumes import stuck_on_bound_claims

        claims = [bound(claim("data"))]
        assert [p["metadata"]["name"] for p in stuck_on_bound_claims([pending_pod()], claims)] == ["db-0"]

    def test_it_is_not_stuck_while_a_claim_is_unbound_or_without_a_controller_or_once_on_a_node(self):
        from e2e.volumes import stuck_on_bound_claims

        assert stuck_on_bound_claims([pending_pod()], [claim("data")]) == []
        assert stuck_on_bound_claims([pending_pod(owned=False)], [bound(claim("data"))]) == []
        on_node = pending_pod()
        on_node["spec"]["nodeName"] = "node"
        assert stuck_on_bound_claims([on_node], [bound(claim("data"))]) == []
        other = pending_pod(message="0/1 nodes are available: 1 Insufficient cpu.")
        assert stuck_on_bound_claims([other], [bound(claim("data"))]) == []

    def test_the_provisioner_deletes_it_after_a_while_so_that_its_controller_makes_it_anew(self, tmp_path):
        from e2e.volumes import RETRY_UNSCHEDULED_AFTER_SECONDS

        now = [0.0]
        kube = FakeKube([bound(claim("data")), pending_pod()])
        prov = Provisioner(kube, tmp_path / "v", tmp_path / "log", delay=3, clock=lambda: now[0])
        assert prov.sync_once() == []
        now[0] = RETRY_UNSCHEDULED_AFTER_SECONDS - 0.1
        assert prov.sync_once() == []
        now[0] = RETRY_UNSCHEDULED_AFTER_SECONDS
        assert prov.sync_once() == ["airflow/db-0: unschedulable for a claim that is bound now; deleted, made anew"]
        assert not [o for o in kube.objects if o["kind"] == "Pod"]


class TestAgainstTheRealControlPlane:
    def test_nodes_are_named_after_what_the_stack_pins_besides_the_default_ones(self, plane):
        kube = plane.kube
        assert kube is not None
        nodes = {n["metadata"]["name"]: n for n in kube.list("v1", "Node")}
        assert sorted(nodes) == ["kwok-node-0", "kwok-node-1", "laptop"]
        assert nodes["laptop"]["metadata"]["labels"]["kubernetes.io/hostname"] == "laptop"

    def test_claims_of_any_size_class_and_mode_bind_and_static_binding_still_works(self, plane):
        kube = plane.kube
        assert kube is not None
        ns = "airflow"
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for name, provisioner, mode in (
            ("local-wffc", "kubernetes.io/no-provisioner", "WaitForFirstConsumer"),
            ("external", "example.com/nobody-answers", "Immediate"),
            ("manual", "kubernetes.io/no-provisioner", "Immediate"),
        ):
            kube.create(
                {
                    "apiVersion": "storage.k8s.io/v1",
                    "kind": "StorageClass",
                    "metadata": {"name": name},
                    "provisioner": provisioner,
                    "volumeBindingMode": mode,
                }
            )
        # A stack's own volume made before its claim, and a claim naming a volume made later.
        _create(kube, volume("stack-pv", size="3Gi", cls="manual", hostPath={"path": str(plane.work / "stack-pv")}))
        claims = {
            "big-default": claim("big-default", size="100Gi", cls=None, modes=("ReadWriteOnce",)),
            "small-default": claim("small-default", size="1Gi", cls=None, modes=("ReadWriteOnce",)),
            "no-such-class": claim("no-such-class", size="5Gi", cls="gp3"),
            "wait-for-consumer": claim("wait-for-consumer", size="2Gi", cls="local-wffc"),
            "external": claim("external", size="2Gi", cls="external", modes=("ReadOnlyMany",)),
            "no-class": claim("no-class", size="1Gi", cls=""),
            "stack-made": claim("stack-made", size="3Gi", cls="manual"),
            "names-its-volume": claim("names-its-volume", size="1Gi", cls="", volumeName="static-pv"),
        }
        for c in claims.values():
            c["metadata"]["namespace"] = ns
        _create(kube, *claims.values())
        time.sleep(5)  # longer than the provisioner's delay: it must not have taken the named claim
        assert kube.read("v1", "PersistentVolumeClaim", "names-its-volume", ns)["status"]["phase"] == "Pending"
        _create(kube, volume("static-pv", size="1Gi", cls="", hostPath={"path": str(plane.work / "static-pv")}))

        def bound() -> str | None:
            pending = [
                c["metadata"]["name"]
                for c in kube.list("v1", "PersistentVolumeClaim", ns)
                if c["status"].get("phase") != "Bound"
            ]
            return f"pending: {pending}" if pending else None

        wait_for("every claim Bound", bound, timeout=90, interval=0.5)
        volume_of = {
            c["metadata"]["name"]: c["spec"]["volumeName"] for c in kube.list("v1", "PersistentVolumeClaim", ns)
        }
        uid = {c["metadata"]["name"]: c["metadata"]["uid"] for c in kube.list("v1", "PersistentVolumeClaim", ns)}
        assert volume_of["stack-made"] == "stack-pv"
        assert volume_of["names-its-volume"] == "static-pv"
        assert volume_of["small-default"].startswith("e2e-volume-")  # the pre-made volumes still serve
        for name in ("big-default", "no-such-class", "wait-for-consumer", "external", "no-class"):
            assert volume_of[name] == f"pvc-{uid[name]}", name
        big = kube.read("v1", "PersistentVolume", volume_of["big-default"])
        assert big is not None and big["spec"]["capacity"]["storage"] == "100Gi"
        assert big["spec"]["storageClassName"] == "standard"
        assert plane.provisioner is not None and len(plane.provisioner.provisioned) == 5
