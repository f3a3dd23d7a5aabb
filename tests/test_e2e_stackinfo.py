"""e2e.stackinfo: the node names a stack's config pins, so the e2e cluster can have them."""

from __future__ import annotations

import yaml

from components.logs.config import parse_logs
from e2e.stackinfo import pinned_node_names
from tests.helpers import ROOT


class TestPinnedNodeNames:
    def test_a_hostpath_logs_volume_pinned_to_a_node_names_it(self):
        config = {"airflow-k8s:logs": {"mode": "hostPath", "hostPath": {"path": "/data/logs", "node": "laptop-1"}}}
        assert pinned_node_names(config) == ["laptop-1"]
        assert parse_logs(config["airflow-k8s:logs"]).node == "laptop-1"  # the key the component reads

    def test_hostpath_dags_pinned_to_a_node_name_it(self):
        config = {"airflow-k8s:airflow": {"dags": {"mode": "hostPath", "hostPath": {"path": "/d", "node": "minikube"}}}}
        assert pinned_node_names(config) == ["minikube"]

    def test_a_hostname_node_selector_anywhere_is_found_and_other_selectors_are_not(self):
        config = {
            "airflow-k8s:airflow": {
                "scheduler": {"nodeSelector": {"kubernetes.io/hostname": "big-box", "disk": "ssd"}},
                "workers": {"nodeSelector": {"disk": "ssd"}},
                "extraValues": {"triggerer": {"nodeSelector": {"kubernetes.io/hostname": "other-box"}}},
            }
        }
        assert pinned_node_names(config) == ["big-box", "other-box"]

    def test_node_affinity_on_the_hostname_label_and_a_node_name_are_found(self):
        term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1", "n2"]}]}
        config = {
            "airflow-k8s:airflow": {
                "extraValues": {
                    "webserver": {"affinity": {"nodeAffinity": {"required": {"nodeSelectorTerms": [term]}}}},
                    "statsd": {"nodeName": "n3"},
                }
            }
        }
        assert pinned_node_names(config) == ["n1", "n2", "n3"]

    def test_spreading_over_hostnames_and_excluding_one_pin_nothing(self):
        config = {
            "airflow-k8s:airflow": {
                "affinity": {
                    "podAntiAffinity": {"topologyKey": "kubernetes.io/hostname"},
                    "nodeAffinity": {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn"}]},
                }
            }
        }
        assert pinned_node_names(config) == []

    def test_each_name_is_given_once_in_order_and_a_whole_stack_file_is_read_too(self):
        stack = {
            "config": {
                "airflow-k8s:logs": {"mode": "hostPath", "hostPath": {"path": "/l", "node": "a"}},
                "airflow-k8s:airflow": {"dags": {"hostPath": {"path": "/d", "node": "a"}}, "nodeName": "b"},
            }
        }
        assert pinned_node_names(stack) == ["a", "b"]

    def test_the_repository_stacks_pin_no_node(self):
        for name in ("dev", "prod"):
            config = yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())["config"]
            assert pinned_node_names(config) == [], name


class TestStandIns:
    """`./run.sh e2e --stack NAME`: each secret key gets a stand-in of the shape it expects."""

    HAND_MADE = {
        "kubernetes:context": "production",
        "airflow-k8s:airflow": {
            "dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git", "auth": "token"}},
        },
        "airflow-k8s:teams": [{"name": "data", "secrets": ["warehouse", "sftp"]}, {"name": "ml"}],
        "airflow-k8s:logs": {"mode": "remote", "remote": {"target": "gcs", "baseLogFolder": "gs://logs/airflow"}},
        "airflow-k8s:teamSecrets": {"secure": "v1:abc"},
        "airflow-k8s:connections": {"secure": "v1:def"},
        "airflow-k8s:variables": {"secure": "v1:ghi"},
        "airflow-k8s:gitToken": {"secure": "v1:jkl"},
        "airflow-k8s:logsConnection": {"secure": "v1:mno"},
        "airflow-k8s:previousFernetKeys": {"secure": "v1:pqr"},
    }

    def test_team_secrets_get_a_mapping_shaped_after_the_stacks_teams(self):
        import json

        from e2e.stackinfo import stand_ins

        shaped = json.loads(stand_ins(self.HAND_MADE)["airflow-k8s:teamSecrets"])
        assert set(shaped) == {"data", "ml"}
        assert set(shaped["data"]) == {"warehouse", "sftp"}
        assert all(isinstance(v, str) for data in shaped["data"].values() for v in data.values())

    def test_every_secret_key_gets_a_stand_in_and_the_stack_loads_clean_with_them(self):
        import json

        from components.platform.config import check_config
        from e2e.stackinfo import stand_ins

        values = stand_ins(self.HAND_MADE)
        secure = {k for k, v in self.HAND_MADE.items() if isinstance(v, dict) and "secure" in v}
        assert set(values) == secure
        config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in self.HAND_MADE.items() if k not in secure}
        stack = check_config({**config, **values}, secure)
        assert stack.team_secrets["data"]["sftp"] and stack.logs.remote is not None

    def test_every_secret_key_the_stack_edge_knows_is_among_those_shown_to_load_clean(self):
        from components.platform.config import EITHER_KEYS, PROJECT, SECRET_KEYS

        shown = {k for k, v in self.HAND_MADE.items() if isinstance(v, dict) and "secure" in v}
        for name in ("dev", "prod"):
            raw = yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())["config"]
            shown |= {k for k, v in raw.items() if isinstance(v, dict) and "secure" in v}
        assert {f"{PROJECT}:{key}" for key in (*SECRET_KEYS, *EITHER_KEYS)} <= shown

    def test_the_shipped_stacks_load_clean_with_their_stand_ins(self):
        import json

        from components.platform.config import check_config
        from e2e.stackinfo import stand_ins

        for name in ("dev", "prod"):
            raw = yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())["config"]
            values = stand_ins(raw)
            config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items() if k not in values}
            check_config({**config, **values}, set(values))


class TestTheFidelityChecksSecrets:
    """The fidelity check hands the offline preview the stand-ins `pulumi up` got, so what derives
    from a secret (the migration Job's name follows an external database's host and name) is
    predicted as it is made, not from the preview's own placeholder."""

    def test_the_preview_reads_the_stand_ins_while_the_check_runs_and_not_after(self, monkeypatch):
        from components.offline.program import load_stack_config
        from e2e.scenarios import secrets_in_environment
        from e2e.stackinfo import stand_ins

        monkeypatch.delenv("AIRFLOW_K8S_SECRET_DATABASEURL", raising=False)
        raw = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
        given = {key.split(":", 1)[1]: value for key, value in stand_ins(raw).items()}
        with secrets_in_environment(given):
            _, config, _, origin = load_stack_config(ROOT, "prod")
        assert config["airflow-k8s:databaseUrl"] == given["databaseUrl"]
        assert origin["airflow-k8s:databaseUrl"] == "environment (AIRFLOW_K8S_SECRET_DATABASEURL)"
        _, config, _, origin = load_stack_config(ROOT, "prod")
        assert origin["airflow-k8s:databaseUrl"] == "placeholder"
