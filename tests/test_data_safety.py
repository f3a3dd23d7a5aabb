"""Data safety: what `pulumi destroy` keeps is what the DOCS says, and nothing that holds data is lost.

Every Namespace, PersistentVolume, PersistentVolumeClaim and StorageClass the dev and prod
programs declare, and the Fernet key, metadata and Postgres Secrets, must be retained on
delete (or protected), except the documented exemption; the DOCS's table lists exactly the
retained resources; the volumes keep their data (reclaim policy Retain); and no StatefulSet
the charts render deletes its claims.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components.offline.preview import PreviewResult, preview
from components.offline.program import ProgramRun, Registered, load_stack_config, run_program, unwrap
from tests.helpers import ROOT, docs_text

DOCS = docs_text()
KEPT_KINDS = ("Namespace", "PersistentVolume", "PersistentVolumeClaim", "StorageClass")
# Secrets whose loss loses data: Airflow's encrypted fields, the way to the database, and the
# bundled Postgres password its volume was initialised with.
KEPT_SECRETS = ("fernet-key-secret", "metadata-secret", "metadata-async-secret", "postgres-secret")
# Documented in the DOCS ("Not kept"): each holds only its operator's chart objects.
NOT_KEPT = {"spark-namespace", "keda-namespace"}
TEAMS_STACK = "with `teams`"


def kind(res: Registered) -> str:
    return res.type.rsplit(":", 1)[-1]


def kept(res: Registered) -> bool:
    return res.retain_on_delete or res.protect


def must_keep(res: Registered) -> bool:
    if kind(res) in KEPT_KINDS:
        return res.name not in NOT_KEPT
    return kind(res) == "Secret" and res.name.endswith(KEPT_SECRETS)


def with_teams() -> ProgramRun:
    project, config, secret_keys, _ = load_stack_config(ROOT, "prod")
    config[f"{project}:teams"] = json.dumps([{"name": "data"}, {"name": "ml", "namespace": "ml-jobs"}])
    return run_program(ROOT, "prod", config=config, secret_keys=secret_keys, project=project)


@pytest.fixture(scope="module")
def runs() -> dict[str, ProgramRun]:
    return {"dev": run_program(ROOT, "dev"), "prod": run_program(ROOT, "prod"), TEAMS_STACK: with_teams()}


@pytest.fixture(scope="module")
def previews(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PreviewResult]:
    out = tmp_path_factory.mktemp("data-safety")
    return {stack: preview(ROOT, stack, out, run_checkov=False) for stack in ("dev", "prod")}


def readme_section(title: str) -> str:
    start = DOCS.index(f"### {title}\n")
    end = DOCS.find("\n## ", start)
    nxt = DOCS.find("\n### ", start + 1)
    return DOCS[start : min(i for i in (end, nxt) if i != -1)]


def table_rows(text: str, first_header: str) -> list[list[str]]:
    """Rows (cells) of the markdown table whose first header cell is `first_header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def documented_retained() -> set[tuple[str, str]]:
    """(Pulumi resource, stack) pairs of the DOCS's table."""
    pairs = set()
    for cells in table_rows(readme_section("What `pulumi destroy` keeps"), "Pulumi resource"):
        name = cells[0].strip("`")
        stacks = [TEAMS_STACK] if cells[2] == TEAMS_STACK else [s.strip() for s in cells[2].split(",")]
        pairs |= {(name, stack) for stack in stacks}
    return pairs


def retained(runs: dict[str, ProgramRun]) -> set[tuple[str, str]]:
    pairs = set()
    for stack, run in runs.items():
        for res in run.resources:
            if kept(res):
                name = re.sub(r"^team-[a-z0-9-]+-namespace$", "team-<name>-namespace", res.name)
                if stack == TEAMS_STACK and not name.startswith("team-"):
                    continue  # the teams run is prod plus teams: only the teams' rows are its own
                pairs.add((name, stack))
    return pairs


class TestRetention:
    @pytest.mark.parametrize("stack", ["dev", "prod", TEAMS_STACK])
    def test_every_namespace_volume_claim_class_and_data_secret_is_kept_on_destroy(self, runs, stack):
        lost = [f"{kind(r)} {r.name}" for r in runs[stack].resources if must_keep(r) and not kept(r)]
        assert lost == []

    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_the_stack_declares_the_data_secrets_it_keeps(self, runs, stack):
        names = {r.name for r in runs[stack].resources if kind(r) == "Secret" and kept(r)}
        # The Postgres password Secret in both database modes: switching back to bundled finds it.
        expected = {
            "airflow-fernet-key-secret",
            "airflow-metadata-secret",
            "airflow-metadata-async-secret",
            "airflow-postgres-secret",
        }
        assert names == expected

    @pytest.mark.parametrize("stack", ["dev", "prod", TEAMS_STACK])
    def test_every_kept_object_is_protected_as_well_as_retained_so_the_next_up_takes_it_over(self, runs, stack):
        # Retained only, it leaves the state on destroy but stays in the cluster: the next `up` fails
        # with "already exists" (the backup claim did). Key material is state only: protected.
        half = [
            r.name
            for r in runs[stack].resources
            if kept(r) and not (r.protect and (r.retain_on_delete or r.type.startswith("random:")))
        ]
        assert half == []

    def test_the_only_exemptions_are_the_spark_operators_and_kedas_own_namespaces(self, runs):
        exempt = {r.name for run in runs.values() for r in run.resources if kind(r) in KEPT_KINDS and not kept(r)}
        assert exempt == NOT_KEPT

    def test_a_retained_team_namespace_is_kept_for_every_team(self, runs):
        names = {r.name for r in runs[TEAMS_STACK].resources if kind(r) == "Namespace" and kept(r)}
        assert {"team-data-namespace", "team-ml-namespace"} <= names

    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_every_volume_the_stack_declares_keeps_its_data_when_released(self, runs, stack):
        """Volumes and classes the stack declares reclaim by Retain; every claim is kept, and a claim on
        a class the stack declares gets that Retain class (a claim on a cluster class, as all of prod's
        are, is kept and reclaims as its class says: the docs' "What `pulumi destroy` keeps")."""
        volumes = [r for r in runs[stack].resources if kind(r) in ("PersistentVolume", "StorageClass")]
        claims = [r for r in runs[stack].resources if kind(r) == "PersistentVolumeClaim"]
        assert claims, f"{stack} declares no claim: nothing was checked"
        classes: dict[str, str] = {}
        for res in volumes:
            inputs = unwrap(res.inputs)
            if kind(res) == "PersistentVolume":
                assert inputs["spec"]["persistentVolumeReclaimPolicy"] == "Retain", res.name
            else:
                classes[inputs["metadata"]["name"]] = inputs["reclaimPolicy"]
                assert inputs["reclaimPolicy"] == "Retain", res.name
        for res in claims:
            assert kept(res), res.name
            spec: dict[str, Any] = unwrap(res.inputs).get("spec") or {}
            if spec.get("storageClassName") in classes:
                assert classes[spec["storageClassName"]] == "Retain", res.name
        if stack == "dev":  # hostPath volumes of its own: the logs' class and volume, the DAGs' volume
            assert {kind(r) for r in volumes} == {"PersistentVolume", "StorageClass"}


class TestChartVolumes:
    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_no_statefulset_the_charts_render_deletes_its_claims(self, previews, stack):
        checked = 0
        for obj in previews[stack].objects:
            policy = obj.get("spec", {}).get("persistentVolumeClaimRetentionPolicy") or {}
            if obj["kind"] in ("StatefulSet", "Prometheus", "Alertmanager"):
                assert policy.get("whenDeleted", "Retain") == "Retain", obj["metadata"]["name"]
                assert policy.get("whenScaled", "Retain") == "Retain", obj["metadata"]["name"]
                checked += 1
        assert checked, f"{stack} renders no StatefulSet: nothing was checked"

    def test_the_readme_lists_exactly_the_statefulsets_that_make_claims(self, previews):
        documented = set()
        for cells in table_rows(
            readme_section("What `pulumi destroy` keeps"), "StatefulSet (or the operator resource that makes one)"
        ):
            documented |= {(cells[0].strip("`"), s.strip()) for s in cells[1].split(",")}
        rendered = set()
        for stack, result in previews.items():
            for obj in result.objects:
                spec = obj.get("spec", {})
                makes_claims = (obj["kind"] == "StatefulSet" and spec.get("volumeClaimTemplates")) or (
                    obj["kind"] in ("Prometheus", "Alertmanager") and spec.get("storage")
                )
                if makes_claims:
                    rendered.add((f"{obj['kind']}/{obj['metadata']['name']}", stack))
        assert rendered == documented


class TestReadme:
    def test_the_destroy_table_lists_exactly_what_the_stacks_retain(self, runs):
        assert documented_retained() == retained(runs)

    def test_the_exemption_is_documented(self):
        section = readme_section("What `pulumi destroy` keeps")
        for name in NOT_KEPT:
            assert f"`{name}`" in section.split("Not kept:", 1)[1]


def test_the_readme_table_parser_reads_the_readme_format():
    rows = table_rows("| a | b |\n| --- | --- |\n| `x` | y |\n\ntext", "a")
    assert rows == [["`x`", "y"]]
