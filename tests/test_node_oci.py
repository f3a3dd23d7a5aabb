"""Image archives for the real node (e2e/node/oci.py): named as containerd names them,
and the same root file system always gives the same image."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from e2e.node.oci import ImageConfig, archive_tags, normalise, write_archive


class TestNames:
    @pytest.mark.parametrize(
        ("ref", "expected"),
        [
            ("busybox:1.37.0", "docker.io/library/busybox:1.37.0"),
            ("apache/airflow:3.2.0", "docker.io/apache/airflow:3.2.0"),
            ("quay.io/prometheus/statsd-exporter:v0.29.0", "quay.io/prometheus/statsd-exporter:v0.29.0"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("localhost:5000/task", "localhost:5000/task:latest"),
            ("airflow-k8s-task", "docker.io/library/airflow-k8s-task:latest"),
        ],
    )
    def test_a_reference_is_named_the_way_containerd_names_it(self, ref: str, expected: str) -> None:
        assert normalise(ref) == expected


class TestArchive:
    def _rootfs(self, tmp_path: Path) -> Path:
        root = tmp_path / "root"
        (root / "bin").mkdir(parents=True)
        (root / "bin" / "hello").write_text("#!/bin/sh\necho hi\n")
        (root / "proc").mkdir()
        (root / "proc" / "leftover").write_text("never in a layer")
        return root

    def test_the_same_tree_gives_the_same_image_id(self, tmp_path: Path) -> None:
        root = self._rootfs(tmp_path)
        config = ImageConfig(user="50000:0", env={"A": "1"}, entrypoint=["/bin/hello"])
        first = write_archive(root, ["x:1"], config, tmp_path / "a.tar")
        (root / "bin" / "hello").touch()  # a new mtime changes nothing
        second = write_archive(root, ["x:1"], config, tmp_path / "b.tar")
        assert first == second

    def test_the_archive_carries_the_config_and_the_names(self, tmp_path: Path) -> None:
        root = self._rootfs(tmp_path)
        config = ImageConfig(user="50000:0", env={"AIRFLOW_HOME": "/opt/airflow"}, workdir="/opt/airflow")
        image_id = write_archive(root, ["apache/airflow:3.2.0"], config, tmp_path / "a.tar")
        assert archive_tags(tmp_path / "a.tar") == ["docker.io/apache/airflow:3.2.0"]
        with tarfile.open(tmp_path / "a.tar") as tar:
            member = tar.extractfile(f"{image_id}.json")
            assert member is not None
            image = json.loads(member.read())
            layer_name = json.loads(tar.extractfile("manifest.json").read())[0]["Layers"][0]  # type: ignore[union-attr]
            layer = tar.extractfile(layer_name)
            assert layer is not None
            with tarfile.open(fileobj=layer) as inner:
                names = inner.getnames()
        assert image["config"]["User"] == "50000:0"
        assert image["config"]["Env"] == ["AIRFLOW_HOME=/opt/airflow"]
        assert "./bin/hello" in names
        assert "./proc/leftover" not in names

    def test_an_archive_needs_a_name(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="at least one name"):
            write_archive(self._rootfs(tmp_path), [], ImageConfig(), tmp_path / "a.tar")
