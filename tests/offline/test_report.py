"""The preview reads like `pulumi preview`: a tree by component, change marks against the last
preview of the stack, changed fields with --diff, secrets masked, values files and outputs.

A small project made here (one component: a Namespace, a random password, a Secret, a
ConfigMap and a Release of a small local chart) is previewed, changed, and previewed again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.offline.__main__ import main
from components.offline.preview import PreviewResult, preview, table
from components.offline.report import (
    CREATE,
    DELETE,
    REPLACE,
    SAME,
    UPDATE,
    Change,
    Row,
    change_lines,
    diff,
    render_tree,
)
from tests.helpers import ROOT

PROGRAM = """\
import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

config = pulumi.Config()
SHOP_CFG = "[core]\\ndags_folder = /dags\\nparallelism = {parallelism}\\n\\n[logging]\\nlevel = INFO\\n"


class Shop(pulumi.ComponentResource):
    def __init__(self, name, opts=None):
        super().__init__("small:index:Shop", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        namespace = config.get("namespace") or "shop"
        ns = k8s.core.v1.Namespace(f"{name}-namespace", metadata={"name": namespace}, opts=child)
        self.password = random.RandomPassword(f"{name}-password", length=config.get_int("length") or 16, opts=child)
        k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": "shop-login", "namespace": ns.metadata["name"]},
            string_data={"password": self.password.result},
            opts=child,
        )
        if config.get_bool("settings"):
            k8s.core.v1.ConfigMap(
                f"{name}-settings",
                metadata={"name": "shop-settings", "namespace": ns.metadata["name"]},
                data={"color": config.get("color") or "blue"},
                opts=child,
            )
        if config.get_int("parallelism"):
            k8s.core.v1.ConfigMap(
                f"{name}-config",
                metadata={"name": "shop-config", "namespace": ns.metadata["name"]},
                data={"shop.cfg": SHOP_CFG.format(parallelism=config.get_int("parallelism"))},
                opts=child,
            )
        values = {"replicas": config.get_int("replicas") or 1, "port": 8793, "image": config.get("image") or "a:1"}
        if config.get_bool("leak"):
            values["password"] = self.password.result  # a secret in a Release's values: a problem
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            chart="./chart",
            name="shop",
            namespace=ns.metadata["name"],
            values=values,
            opts=child,
        )
        self.register_outputs({})


shop = Shop("shop")
pulumi.export("password", shop.password.result)
pulumi.export("namespace", "shop")
pulumi.export("port", 8793)
"""

TEMPLATES = {
    "deployment.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: {{ .Values.image | quote }}
          ports:
            - containerPort: {{ .Values.port }}
""",
    "job.yaml": """\
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-migrate
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: {{ .Values.image | quote }}
""",
    "extra.yaml": """\
{{- if gt (int .Values.replicas) 1 }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .Release.Name }}-web
spec:
  maxUnavailable: 1
  selector:
    matchLabels: {app: web}
{{- end }}
""",
}


class Shop:
    """The small project: its folder, and a preview of it with some config."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.out = root / "build" / "preview"
        (root / "chart" / "templates").mkdir(parents=True)
        (root / "chart" / "Chart.yaml").write_text("apiVersion: v2\nname: shop\nversion: 0.1.0\n")
        for name, text in TEMPLATES.items():
            (root / "chart" / "templates" / name).write_text(text)
        (root / "Pulumi.yaml").write_text("name: small\nruntime: python\n")
        (root / "__main__.py").write_text(PROGRAM)

    def preview(self, **config: Any) -> PreviewResult:
        stack = {"config": {f"small:{k}": v for k, v in config.items()}}
        (self.root / "Pulumi.shop.yaml").write_text(yaml.safe_dump(stack))
        return preview(self.root, "shop", self.out, run_checkov=False)


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    return Shop(tmp_path / "small")


def plan(result: PreviewResult) -> dict[str, str]:
    return {f"{r.type} {r.name}": r.op for r in result.rows}


def row(result: PreviewResult, type_: str, name: str) -> Row:
    (found,) = [r for r in result.rows if r.type == type_ and r.name == name]
    return found


class TestTheTree:
    def test_a_first_preview_creates_everything_in_a_tree_by_component(self, shop):
        result = shop.preview()
        assert [p.message for p in result.problems] == []
        assert [(r.depth, r.type, r.name) for r in result.rows] == [
            (0, "pulumi:pulumi:Stack", "small-shop"),
            (1, "small:index:Shop", "shop"),
            (2, "kubernetes:core/v1:Namespace", "shop-namespace"),
            (2, "random:index/randomPassword:RandomPassword", "shop-password"),
            (2, "kubernetes:core/v1:Secret", "shop-secret"),
            (2, "kubernetes:helm.sh/v3:Release", "shop-release"),
            (3, "apps/v1/Deployment", "shop/shop-web"),
            (3, "batch/v1/Job", "shop/shop-migrate"),
        ]
        assert {r.op for r in result.rows} == {CREATE}

    def test_rows_follow_the_engine_order_not_the_type_token(self, shop):
        result = shop.preview()
        names = [r.name for r in result.rows if r.depth == 2]
        # Registration order: the Namespace before what lives in it, the password before its Secret.
        assert names.index("shop-namespace") < names.index("shop-secret")
        assert names.index("shop-password") < names.index("shop-secret")
        assert names.index("shop-namespace") < names.index("shop-release")

    def test_the_printed_tree_has_marks_types_names_and_plans(self, shop):
        text = table(shop.preview())
        lines = text.splitlines()
        assert lines[0].startswith("Compared with none: no successful preview of stack 'shop' yet")
        assert lines[2].split() == ["Type", "Name", "Plan"]
        assert " +   pulumi:pulumi:Stack" in lines[3] and lines[3].rstrip().endswith("create")
        assert any("└─ batch/v1/Job" in line and "shop/shop-migrate" in line for line in lines)
        assert any("   ├─ kubernetes:core/v1:Namespace" in line for line in lines)
        assert any("   └─ kubernetes:helm.sh/v3:Release" in line for line in lines)
        assert any("      ├─ apps/v1/Deployment" in line for line in lines)
        assert "Resources:\n    + 8 to create" in text

    def test_outputs_are_printed_with_secrets_masked(self, shop):
        result = shop.preview()
        text = table(result)
        assert "Outputs:" in text
        assert 'namespace: "shop"' in text and "port     : 8793" in text
        assert "password : [secret]" in text
        assert result.run.outputs["password"] not in text

    def test_the_values_handed_to_each_release_are_written(self, shop):
        result = shop.preview(replicas=2)
        values = yaml.safe_load((result.out_dir / "values" / "shop-release.yaml").read_text())
        assert values == {"image": "a:1", "port": 8793, "replicas": 2}


class TestChangeMarks:
    def test_an_unchanged_stack_changes_nothing(self, shop):
        shop.preview()
        again = shop.preview()
        assert {r.op for r in again.rows} == {SAME}
        assert "Resources:\n    8 unchanged" in table(again)

    def test_a_changed_value_updates_the_release_and_its_objects(self, shop):
        shop.preview()
        again = shop.preview(replicas=3)
        assert plan(again)["kubernetes:helm.sh/v3:Release shop-release"] == UPDATE
        assert plan(again)["apps/v1/Deployment shop/shop-web"] == UPDATE
        assert plan(again)["policy/v1/PodDisruptionBudget shop/shop-web"] == CREATE
        assert plan(again)["batch/v1/Job shop/shop-migrate"] == SAME
        assert row(again, "apps/v1/Deployment", "shop/shop-web").changes == [Change("spec.replicas", 1, 3)]

    def test_an_object_the_release_no_longer_renders_is_deleted(self, shop):
        shop.preview(replicas=2)
        again = shop.preview(replicas=1)
        assert plan(again)["policy/v1/PodDisruptionBudget shop/shop-web"] == DELETE

    def test_a_new_and_a_removed_resource_are_created_and_deleted(self, shop):
        shop.preview(settings=True)
        assert plan(shop.preview())["kubernetes:core/v1:ConfigMap shop-settings"] == DELETE
        assert plan(shop.preview(settings=True))["kubernetes:core/v1:ConfigMap shop-settings"] == CREATE

    def test_a_renamed_kubernetes_object_is_replaced(self, shop):
        shop.preview()
        again = shop.preview(namespace="store")
        namespace = row(again, "kubernetes:core/v1:Namespace", "shop-namespace")
        assert namespace.op == REPLACE and "metadata.name" in namespace.note

    def test_a_random_resource_whose_input_changes_is_replaced(self, shop):
        shop.preview()
        assert plan(shop.preview(length=24))["random:index/randomPassword:RandomPassword shop-password"] == REPLACE

    def test_a_job_whose_template_changes_is_a_replace_helm_cannot_patch(self, shop):
        shop.preview()
        job = row(shop.preview(image="a:2"), "batch/v1/Job", "shop/shop-migrate")
        assert job.op == REPLACE
        assert "immutable field spec.template" in job.note and "new name" in job.note

    def test_the_previous_preview_is_kept_under_build_preview_stack(self, shop):
        result = shop.preview()
        assert result.out_dir == shop.out / "shop"
        state = json.loads((result.out_dir / "state.json").read_text())
        assert {r["name"] for r in state["resources"]} >= {"shop", "shop-release", "shop-secret"}


class TestDiffAndSecrets:
    def test_a_secret_held_whole_is_the_same_as_that_secret_by_its_keys(self):
        """An encrypted stack export holds a Secret's stringData as one secret; the preview by its keys."""
        assert diff({"stringData": "[secret]"}, {"stringData": {"password": "[secret]", "user": "[secret]"}}) == []
        assert diff({"stringData": {"a": "[secret]"}}, {"stringData": "[secret]"}) == []
        assert diff({"stringData": "[secret]"}, {"stringData": {"a": "plain"}}) == [
            Change("stringData", "[secret]", {"a": "plain"})
        ]

    def test_diff_shows_each_changed_field_with_old_and_new_values(self, shop):
        shop.preview()
        text = table(shop.preview(replicas=3), show_diff=True)
        assert "~ spec.replicas: 1 => 3" in text
        assert "~ values.replicas: 1 => 3" in text
        assert "+ metadata.name:" in text or "policy/v1/PodDisruptionBudget" in text

    def test_secret_values_show_as_secret_in_files_state_and_diff(self, shop):
        first = shop.preview()
        password = first.run.outputs["password"]
        again = shop.preview(length=24)
        text = table(again, show_diff=True)
        everything = text + "".join(p.read_text() for p in again.out_dir.rglob("*") if p.is_file())
        assert password not in everything
        secret = yaml.safe_load((again.out_dir / "resources" / "shop-secret.yaml").read_text())
        assert secret["stringData"] == {"password": "[secret]"}

    def test_a_rendered_secret_shows_its_keys_not_its_values(self):
        from components.offline.report import mask_secret_object

        obj = {"kind": "Secret", "data": {"token": "c2VjcmV0"}, "metadata": {"name": "x"}}
        assert mask_secret_object(obj)["data"] == {"token": "[secret]"}

    def test_diff_compares_nested_fields_and_lists(self):
        old = {"a": {"b": 1, "c": [1, 2]}, "gone": True}
        new = {"a": {"b": 2, "c": [1, 3, 4]}, "added": "x"}
        assert diff(old, new) == [
            Change("a.b", 1, 2),
            Change("a.c[1]", 2, 3),
            Change("a.c[2]", None, 4),
            Change("gone", True, None),
            Change("added", None, "x"),
        ]

    def test_the_tree_without_unchanged_rows_keeps_the_stack_row(self):
        rows = [Row(0, "pulumi:pulumi:Stack", "p-s", SAME), Row(1, "t", "a", SAME), Row(1, "t", "b", UPDATE)]
        lines = render_tree(rows, show_same=False).splitlines()
        assert len(lines) == 3 and "└─ t" in lines[2]


class TestWhatTheDiffShows:
    def test_a_one_option_change_in_a_config_file_shows_as_that_one_line(self, shop):
        shop.preview(parallelism=32)
        text = table(shop.preview(parallelism=64), show_diff=True)
        lines = text.splitlines()
        at = next(i for i, line in enumerate(lines) if '~ data["shop.cfg"]: 1 of 6 lines changed' in line)
        assert [line.strip() for line in lines[at + 1 : at + 4]] == [
            "@@ line 3 in [core]",
            "- parallelism = 32",
            "+ parallelism = 64",
        ]
        assert "dags_folder" not in text and "level = INFO" not in text

    def test_long_values_are_wrapped_and_never_cut(self):
        image = "registry.example.com/" + "team/" * 40 + "airflow:3.2.0"
        lines = change_lines(Change("spec.image", "a:1", image), " " * 8, 80)
        assert all(len(line) <= 80 for line in lines) and len(lines) > 2
        assert lines[0][8:] + "".join(line[12:] for line in lines[1:]) == f'~ spec.image: "a:1" => "{image}"'

    def test_only_changed_rows_and_the_rows_above_them_are_listed_with_a_count_of_the_rest(self, shop):
        shop.preview()
        again = shop.preview(replicas=3)
        text = table(again)
        assert "shop/shop-web" in text and "Release" in text
        assert "batch/v1/Job" not in text and "kubernetes:core/v1:Secret" not in text
        hidden = sum(1 for r in again.rows if r.op == SAME) - 2  # the stack and the component row stay
        assert f"({hidden} unchanged not shown (--show-sames lists them))" in text
        everything = table(again, show_same=True)
        assert "batch/v1/Job" in everything and "unchanged not shown" not in everything

    def test_an_unchanged_stack_prints_only_its_stack_row(self, shop):
        shop.preview()
        text = table(shop.preview())
        tree = text.split("\n\n")[1].splitlines()
        assert len(tree) == 3 and "pulumi:pulumi:Stack" in tree[1] and "(7 unchanged not shown" in tree[2]

    def test_keys_that_are_not_plain_names_are_quoted_in_brackets(self):
        old = {"data": {"airflow.cfg": "a"}, "metadata": {"labels": {"app.kubernetes.io/name": "x", "tier": "a"}}}
        new = {"data": {"airflow.cfg": "b"}, "metadata": {"labels": {"app.kubernetes.io/name": "y", "tier": "b"}}}
        assert [c.path for c in diff(old, new)] == [
            'data["airflow.cfg"]',
            'metadata.labels["app.kubernetes.io/name"]',
            "metadata.labels.tier",
        ]


class TestBaseline:
    def test_a_failed_preview_is_never_the_baseline(self, shop):
        shop.preview(replicas=2)
        failed = shop.preview(replicas=3, leak=True)
        assert [p.rule for p in failed.problems] == ["release-secret"]
        fixed = shop.preview(replicas=2)
        assert {r.op for r in fixed.rows} == {SAME}
        assert fixed.baseline is not None and fixed.baseline.kind == "preview"

    def test_the_baseline_used_is_printed(self, shop):
        first = shop.preview()
        assert table(first).startswith(
            f"Compared with none: no successful preview of stack 'shop' yet ({shop.out / 'shop' / 'state.json'}), "
            "so everything shows as to create."
        )
        text = table(shop.preview())
        assert text.startswith(
            f"Compared with the last successful preview of stack 'shop' ({shop.out / 'shop' / 'state.json'}, 20"
        )


class TestTheCommand:
    def test_json_writes_the_changes_for_ci(self, shop, tmp_path, capsys):
        shop.preview(parallelism=32)
        (shop.root / "Pulumi.shop.yaml").write_text(yaml.safe_dump({"config": {"small:parallelism": 64}}))
        report = tmp_path / "ci" / "changes.json"
        args = ["shop", "--root", str(shop.root), "--out", str(shop.out), "--no-checkov", "--json", str(report)]
        assert main(args) == 0
        assert f"Changes written to {report}" in capsys.readouterr().out
        written = json.loads(report.read_text())
        assert written["baseline"]["kind"] == "preview" and written["exitCode"] == 0
        assert written["changes"] == {"same": 8, "update": 1}
        (changed,) = written["changed"]
        assert (changed["op"], changed["type"], changed["name"]) == (
            "update",
            "kubernetes:core/v1:ConfigMap",
            "shop-config",
        )
        (field,) = changed["changes"]
        assert field["path"] == 'data["shop.cfg"]'
        assert field["lines"] == ["@@ line 3 in [core]", "- parallelism = 32", "+ parallelism = 64"]

    def test_diff_flag_prints_changed_fields(self, shop, capsys):
        shop.preview()
        shop.preview(replicas=3)  # state now has 3
        (shop.root / "Pulumi.shop.yaml").write_text(yaml.safe_dump({"config": {"small:replicas": 4}}))
        args = ["shop", "--root", str(shop.root), "--out", str(shop.out), "--no-checkov", "--diff"]
        assert main(args) == 0
        assert "~ spec.replicas: 3 => 4" in capsys.readouterr().out

    def test_the_dev_stack_previews_from_the_command(self, tmp_path, capsys):
        assert main(["dev", "--root", str(ROOT), "--out", str(tmp_path), "--no-checkov", "--fresh"]) == 0
        out = capsys.readouterr().out
        assert "airflow-k8s:index:AirflowRelease" in out and "apps/v1/Deployment" in out
