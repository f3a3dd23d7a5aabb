"""Part `rollout` of node-prod (issue 25, scenario 6): an image rollout while a client keeps
asking the api-server Service for `/api/v2/monitor/health` (through the forwarder, as every
REST call of the scenario goes), one request every POLL_SECONDS on a connection of its own. The
stack's Airflow image is tagged anew in the node's containerd (the same image under another
name, as a registry push of a rebuilt image would be), `airflow.image.tag` set to it, and
`pulumi up` rolls every Airflow workload. The goal is no failed request: the api-servers'
rolling update must hand over without a gap (docs/e2e.md says what the first run found).
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

from ..harness import StepError
from ..scenarios import wait_images
from .airflow_steps import wait_ready
from .host import sh
from .oci import normalise
from .parts import NodeRun, Part
from .prod_common import title, wait_healthy

NAME = "rollout"
POLL_SECONDS = 0.2
REQUEST_TIMEOUT = 5.0
AFTER_SECONDS = 5.0  # polling goes on this long after every pod is Ready on the new image
TAG_SUFFIX = "-rollout"
HEALTH = "/api/v2/monitor/health"


@dataclass
class Poller:
    """GET `url` every `interval` seconds in a thread of its own; each answer kept as (seconds
    since start, None for a 200, else what went wrong)."""

    url: str
    interval: float = POLL_SECONDS
    samples: list[tuple[float, str | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def once(self) -> str | None:
        try:
            with urllib.request.urlopen(self.url, timeout=REQUEST_TIMEOUT) as answer:
                answer.read()
                return None if answer.status == 200 else f"HTTP {answer.status}"
        except Exception as exc:  # every way a request fails is a failed request
            return f"{type(exc).__name__}: {exc}"[:160]

    def _loop(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            tick = time.monotonic()
            self.samples.append((tick - started, self.once()))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - tick)))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="health-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=REQUEST_TIMEOUT + 5)


def summary(samples: list[tuple[float, str | None]]) -> tuple[int, int, str]:
    """(requests, failed, a line: when the failures were and what they were)."""
    failed = [(t, why) for t, why in samples if why is not None]
    if not failed:
        return len(samples), 0, f"{len(samples)} requests, 0 failed"
    kinds = Counter(why.split(":")[0] for _, why in failed)
    spans = f"first at {failed[0][0]:.1f}s, last at {failed[-1][0]:.1f}s"
    shown = ", ".join(f"{n} x {k}" for k, n in kinds.most_common())
    return len(samples), len(failed), f"{len(samples)} requests, {len(failed)} failed ({spans}): {shown}"


def retag(image: str, suffix: str = TAG_SUFFIX) -> str:
    """`repository:tag` -> `repository:tag<suffix>` (a digest-pinned reference is refused)."""
    if "@" in image:
        raise StepError(f"the Airflow image is pinned by digest ({image}): no tag to roll")
    repository, _, tag = image.rpartition(":")
    return f"{repository}:{tag}{suffix}"


def airflow_image(r: NodeRun) -> str:
    release = str(r.d.airflow.get("releaseName", "airflow"))
    scheduler = r.kube.read("apps/v1", "Deployment", f"{release}-scheduler", r.namespace)
    if scheduler is None:
        raise StepError(f"no Deployment {release}-scheduler in {r.namespace}")
    return str(scheduler["spec"]["template"]["spec"]["containers"][0]["image"])


def api_servers(r: NodeRun) -> list[str]:
    return sorted(
        p["metadata"]["name"]
        for p in r.kube.list("v1", "Pod", r.namespace)
        if (p["metadata"].get("labels") or {}).get("component") == "api-server"
    )


def run(r: NodeRun) -> None:
    step = f"a new image rolled out by pulumi up: {HEALTH} through the Service every {POLL_SECONDS}s, none failing"
    with r.h.steps.step(title(NAME, step)):
        started = time.monotonic()
        image = airflow_image(r)
        new = retag(image)
        sh(*r.node.ctr("images", "tag", "--force", normalise(image), normalise(new)))
        r.echo(f"    {normalise(image)} tagged {normalise(new)} in the node's containerd")
        before = api_servers(r)
        poller = Poller(r.api.base_url.rstrip("/") + HEALTH)
        poller.start()
        try:
            r.d.airflow.setdefault("image", {})["tag"] = new.rpartition(":")[2]
            r.d.write()
            up = time.monotonic()
            r.d.up()
            r.echo(f"    pulumi up: {time.monotonic() - up:.1f}s")
            wait_images(r.d, new)
            wait_ready(r.d, r.namespace)
            r.echo(
                f"    every Airflow workload on {new}, every pod Ready: {time.monotonic() - up:.1f}s after the up began"
            )
            time.sleep(AFTER_SECONDS)  # the last old pods' endpoints leaving: polled a little longer
        finally:  # the requests' count is printed even when the rollout itself did not finish
            poller.stop()
            total, failed, line = summary(poller.samples)
            r.echo(f"    {HEALTH} during the rollout: {line}")
            for t, why in [s for s in poller.samples if s[1] is not None][:10]:
                r.echo(f"    | {t:6.1f}s {why}")
        r.echo(f"    api-servers before: {', '.join(before)}; after: {', '.join(api_servers(r))}")
        took = wait_healthy(r)
        r.echo(f"    every component healthy ({took:.1f}s more); part {NAME}: {time.monotonic() - started:.1f}s")
        if failed:
            raise StepError(f"{failed} of {total} requests to {HEALTH} failed during the rollout")


PART = Part(NAME, run)
