"""What an idle prod stack asks the scheduler for: CPU and memory requests, with and without KEDA.

Renders the prod stack (Pulumi.prod.yaml) through the offline preview twice: as configured
(Celery workers scaled by KEDA, from zero) and with the `keda` key removed (workers at
`airflow.workers.replicas`). Sums the requests of every pod the stack keeps running:
Deployment and StatefulSet replicas times their containers' requests (a workload a
ScaledObject targets counts at its `minReplicaCount`, what runs while no task is queued or
running), DaemonSets once (one node), Jobs and CronJobs not at all (they finish). Prints both,
the difference, and the workloads behind it.

    .venv/bin/python benchmarks/idle_requests.py
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.core.reader import quantity_value  # noqa: E402
from components.offline.preview import preview  # noqa: E402
from components.offline.program import load_stack_config, run_program  # noqa: E402

Workload = tuple[str, str, int, Decimal, Decimal]  # kind/namespace/name, replicas, cpu, memory (per pod)


def pod_requests(spec: dict[str, Any]) -> tuple[Decimal, Decimal]:
    cpu = memory = Decimal(0)
    for container in spec.get("containers", []):
        requests = (container.get("resources") or {}).get("requests") or {}
        cpu += quantity_value(str(requests.get("cpu", "0")))
        memory += quantity_value(str(requests.get("memory", "0")))
    return cpu, memory


def idle_workloads(objects: Iterable[dict[str, Any]]) -> list[Workload]:
    objects = list(objects)
    scaled = {
        (o["metadata"]["namespace"], o["spec"]["scaleTargetRef"]["name"]): int(o["spec"].get("minReplicaCount", 1))
        for o in objects
        if o.get("kind") == "ScaledObject"
    }
    out: list[Workload] = []
    for o in objects:
        kind = o.get("kind")
        if kind not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        meta = o["metadata"]
        key = (meta.get("namespace", "default"), meta["name"])
        replicas = 1 if kind == "DaemonSet" else int(o["spec"].get("replicas", 1))
        replicas = scaled.get(key, replicas)
        cpu, memory = pod_requests(o["spec"]["template"]["spec"])
        out.append((f"{kind}/{key[0]}/{key[1]}", key[1], replicas, cpu, memory))
    return out


def totals(workloads: list[Workload]) -> tuple[Decimal, Decimal]:
    return (
        sum((w[2] * w[3] for w in workloads), Decimal(0)),
        sum((w[2] * w[4] for w in workloads), Decimal(0)),
    )


def render_prod(keda: bool, out: Path) -> list[dict[str, Any]]:
    project, config, secret_keys, _ = load_stack_config(ROOT, "prod")
    if not keda:
        config.pop(f"{project}:keda", None)
    run = run_program(ROOT, "prod", config=config, secret_keys=secret_keys, project=project)
    result = preview(ROOT, "prod", out, run_checkov=False, program_run=run)
    if result.problems:
        raise SystemExit(f"the prod preview has problems: {result.problems[:3]}")
    return result.objects


def gib(value: Decimal) -> str:
    return f"{value / Decimal(2**30):.2f} GiB"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with_keda = idle_workloads(render_prod(True, Path(tmp) / "keda"))
        without = idle_workloads(render_prod(False, Path(tmp) / "fixed"))
    cpu_k, mem_k = totals(with_keda)
    cpu_f, mem_f = totals(without)
    print("idle prod requests (Deployments and StatefulSets at idle replicas, DaemonSets on one node)")
    print(f"  fixed workers (keda off):      cpu {cpu_f:.2f} cores, memory {gib(mem_f)}")
    print(f"  KEDA, workers from zero:       cpu {cpu_k:.2f} cores, memory {gib(mem_k)}")
    print(
        f"  saved while idle:              cpu {cpu_f - cpu_k:.2f} cores ({(cpu_f - cpu_k) / cpu_f:.0%}), "
        f"memory {gib(mem_f - mem_k)} ({(mem_f - mem_k) / mem_f:.0%})"
    )
    before = {w[0]: w for w in without}
    after = {w[0]: w for w in with_keda}
    print("  workloads that differ (replicas x per-pod cpu / memory):")
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name), after.get(name)
        if b is not None and a is not None and (b[2], b[3], b[4]) == (a[2], a[3], a[4]):
            continue
        for label, w in (("fixed", b), ("keda ", a)):
            if w is not None:
                print(f"    {label} {name}: {w[2]} x {w[3]} cpu / {gib(w[4])}")


if __name__ == "__main__":
    main()
