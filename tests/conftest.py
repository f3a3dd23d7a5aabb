import atexit
import importlib.abc
import importlib.machinery
import importlib.util
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class _InstalledName(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`pulumi_airflow_k8s[.x]`, the name the wheel installs this checkout's components/ under, is
    that very package here: the docs' snippets, written for users, run as written."""

    NAME = "pulumi_airflow_k8s"

    def find_spec(self, fullname: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == self.NAME or fullname.startswith(self.NAME + "."):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return importlib.import_module("components" + spec.name[len(self.NAME) :])

    def exec_module(self, module: types.ModuleType) -> None:
        """Already executed under its folder's name."""


sys.meta_path.insert(0, _InstalledName())

# No test reaches a chart repository off this machine: a chart that is not local is "fetched" from a
# loopback port that refuses (tests that fetch serve a local repository and set their own), into a
# cache of the test run's own, never the user's.
os.environ["AIRFLOW_K8S_CHART_REPOSITORY"] = "http://127.0.0.1:9"
_CHART_CACHE = tempfile.mkdtemp(prefix="airflow-k8s-test-charts-")
os.environ["AIRFLOW_K8S_CHART_CACHE"] = _CHART_CACHE
atexit.register(shutil.rmtree, _CHART_CACHE, ignore_errors=True)

# The preview's server-side dry run starts a local kube-apiserver: only tests/test_dry_run.py asks for
# it (Target("local")), every other preview of the suite runs without.
os.environ["AIRFLOW_K8S_DRY_RUN"] = "off"
# Likewise Airflow's own checks (an Airflow import per preview): tests/test_airflow_checks.py turns them on.
os.environ["AIRFLOW_K8S_AIRFLOW_CHECKS"] = "off"
