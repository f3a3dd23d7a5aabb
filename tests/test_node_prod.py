"""The `node-prod` scenario (in every full run, after `node`: docs/e2e.md), offline: the stack it
deploys is prod's shape on the node and one the components accept, every image its pods name can
be built here, its PostgreSQL outside the cluster speaks TLS only, and its checks read the logs
the way they are written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.airflow.config.airflow import parse_database_url
from components.offline.preview import preview
from components.platform.config import parse_stack
from e2e import run
from e2e.harness import STACK, copy_project, write_stack_config
from e2e.node import external_db, host, images, scenario_prod
from e2e.node.image_check import POSTGRES_REF
from e2e.node.recipes import PGBOUNCER_EXPORTER_STANDIN, select
from tests.helpers import DB_URL, ROOT


def node_config() -> dict[str, Any]:
    """What e2e.node.scenario.node_stack_config gives: dev's keys, DAGs and logs in the node's folder."""
    dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    cfg = {k: dev[k] for k in dev if k.split(":", 1)[1] in ("airflow", "logs", "cluster", "maintenance")}
    cfg["airflow-k8s:airflow"]["dags"]["hostPath"]["path"] = "/data/node/dags"
    cfg["airflow-k8s:logs"]["hostPath"]["path"] = "/data/node/logs"
    return cfg


def parsed(cfg: dict[str, Any]) -> Any:
    raw = {k.split(":", 1)[1]: json.dumps(v) for k, v in cfg.items() if k.startswith("airflow-k8s:")}
    raw["databaseUrl"] = DB_URL
    return parse_stack(raw, {"databaseUrl"})


class TestTheStack:
    def test_it_is_prods_airflow_shape_with_two_schedulers_and_two_api_servers(self):
        stack = parsed(scenario_prod.prod_stack(node_config()))
        airflow = stack.airflow
        assert airflow.executor == "CeleryExecutor"
        assert airflow.database.mode == "external" and airflow.database.pgbouncer.enabled
        assert airflow.database.pgbouncer.replicas == 2 and airflow.database.pgbouncer.metadata_pool_size == 20
        assert airflow.flower.enabled
        assert (airflow.scheduler.replicas, airflow.api_server.replicas, airflow.workers.replicas) == (2, 2, 1)

    def test_it_keeps_the_dev_sizes_and_takes_images_from_the_node(self):
        cfg = scenario_prod.prod_stack(node_config())
        airflow = cfg["airflow-k8s:airflow"]
        assert airflow["scheduler"]["resources"]["requests"]["cpu"] == "250m"  # prod asks for a core each
        assert "resources" not in airflow["database"]["pgbouncer"]
        assert "pullPolicy" not in airflow.get("image", {})  # prod's Always asks a registry
        assert airflow["extraValues"]["images"]["pgbouncerExporter"] == dict(
            zip(("repository", "tag"), PGBOUNCER_EXPORTER_STANDIN.rsplit(":", 1), strict=True)
        )
        assert cfg["airflow-k8s:databaseUrl"] == {"secure": "set-after-stack-init"}

    def test_the_node_config_it_starts_from_is_left_as_it_was(self):
        cfg = node_config()
        scenario_prod.prod_stack(cfg)
        assert cfg["airflow-k8s:airflow"]["executor"] == "KubernetesExecutor"

    def test_the_database_url_requires_tls_and_parses(self):
        url = external_db.database_url("10.89.0.1", 40123, "p@ss/wo#rd")
        assert url.endswith("?sslmode=require")
        target = parse_database_url(url)
        assert (target.host, target.port, target.password, target.sslmode) == (
            "10.89.0.1",
            40123,
            "p@ss/wo#rd",
            "require",
        )


class TestInEveryFullRun:
    def test_node_prod_runs_in_all_after_the_node_scenario(self):
        assert "node-prod" not in run.TRIAL_SCENARIOS
        order = list(run.PULUMI_SCENARIOS)  # what `all` (CI) runs, in order
        assert order.index("node-prod") == order.index("node") + 1
        assert set(scenario_prod.PROD_SCENARIOS) == {"node-prod"}


@pytest.fixture(scope="module")
def prod_node_preview(tmp_path_factory: pytest.TempPathFactory) -> Any:
    project = copy_project(tmp_path_factory.mktemp("node-prod") / "project")
    write_stack_config(project, scenario_prod.prod_stack(node_config()))
    with pytest.MonkeyPatch.context() as patch:
        charts = ROOT.parent / "shared" / "charts"  # beside the checkout, not beside the copy
        if charts.is_dir():
            patch.setenv("AIRFLOW_K8S_CHARTS", str(charts))
        return preview(project, STACK, tmp_path_factory.mktemp("out"), run_checkov=False, releases_exist=False)


class TestItsImages:
    def test_every_image_its_pods_name_can_be_built_here(self, prod_node_preview: Any):
        needed = images.pod_images(prod_node_preview.objects)
        chosen = [select(ref) for ref in needed]
        assert PGBOUNCER_EXPORTER_STANDIN in {c.name for c in chosen if c is not None}
        assert images.unbuildable(needed | {POSTGRES_REF}) == []

    def test_the_exporter_stand_in_says_what_it_is_not(self):
        chosen = select(PGBOUNCER_EXPORTER_STANDIN)
        assert chosen is not None and chosen.recipe.summary.startswith("NOT pgbouncer_exporter")


class TestTheExternalDatabase:
    def test_it_listens_on_the_given_address_only_and_refuses_connections_without_tls(self):
        conf = external_db.override_conf("10.89.0.1")
        assert "listen_addresses = '10.89.0.1'" in conf and "ssl = on" in conf
        assert "hostnossl all all 0.0.0.0/0 reject" in external_db.PG_HBA
        assert external_db.PG_HBA.index("hostnossl") < external_db.PG_HBA.index("hostssl")

    def test_its_log_counts_connections_with_and_without_tls(self):
        log = (
            "LOG:  connection authorized: user=airflow database=airflow SSL enabled (protocol=TLSv1.3)\n"
            "LOG:  connection authorized: user=airflow database=airflow\n"
        )
        assert external_db.tls_connections(log) == (1, 1)

    def test_prepared_statements_lost_by_the_pool_are_found_in_its_log(self):
        log = (
            'ERROR:  prepared statement "__asyncpg_stmt_1__" does not exist\n'
            'ERROR:  prepared statement "_pg3_0" already exists\n'
            "LOG:  statement: PREPARE x AS SELECT 1\n"
        )
        assert len(external_db.prepared_statement_errors(log)) == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs in namespaces: root only")
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
@pytest.mark.skipif(None in images.cached([POSTGRES_REF]).values(), reason="the PostgreSQL image is not cached")
class TestTheServerRuns:
    def test_a_tls_login_trusting_only_its_ca_works_and_one_without_tls_is_refused(self, tmp_path: Path):
        archive = images.cached([POSTGRES_REF])[POSTGRES_REF]
        assert archive is not None
        db = external_db.ExternalPostgres(tmp_path / "db", archive, "127.0.0.1", host.free_port())
        try:
            db.start()
            shown = db.psql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", "verify-full")
            refused = db.psql("SELECT 1", "disable")
        finally:
            db.stop()
        assert shown.returncode == 0 and shown.stdout.strip() == "t", shown.stderr
        assert refused.returncode != 0 and "no encryption" in refused.stderr
        assert not (tmp_path / "db").exists()
        assert external_db.tls_connections((tmp_path / "postgresql.log").read_text()) == (2, 0)
