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
