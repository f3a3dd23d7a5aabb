"""How the images of the prod stack's operators and of Spark are made (recipes.py names these):
KEDA, Prometheus, prometheus-operator and its config reloader, the Spark operator, and Spark
itself, assembled from Maven Central's jars on Debian's Java. The Go programs come from their
modules as the Go module proxy serves them (`Context.go_build`); docs/images.md lists how each
image differs from the official one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from e2e.node import debian
from e2e.node.builders import PATH, Context, _busybox_tree, _install, _nonroot_tree, _write
from e2e.node.oci import ImageConfig

# ---------------------------------------------------------------------------------------------
# Go programs whose modules have `replace` directives (`go install module@version` refuses
# them): built inside the module's source from the Go module proxy (Context.go_build).


def _prometheus_version_flags(version: str) -> str:
    return " ".join(
        f"-X github.com/prometheus/common/version.{key}={value}"
        for key, value in (("Version", version), ("Branch", "HEAD"), ("BuildUser", "e2e.node.images"))
    )


KEDA_MODULE = "github.com/kedacore/keda/v2"
# image name -> (package in the module, binary at the image's root)
KEDA_PROGRAMS = {
    "keda": ("./cmd/operator", "keda"),
    "keda-metrics-apiserver": ("./cmd/adapter", "keda-adapter"),
    "keda-admission-webhooks": ("./cmd/webhooks", "keda-admission-webhooks"),
}


def keda_binary(ctx: Context, image: str, version: str) -> Path:
    package, name = KEDA_PROGRAMS[image]
    stamp = f"-X {KEDA_MODULE}/version.Version={version}"
    return ctx.go_build(f"{KEDA_MODULE}@v{version}", package, name, stamp)


def _keda(ctx: Context, image: str, version: str, *flags: str) -> ImageConfig:
    binary = keda_binary(ctx, image, version)
    root = _nonroot_tree(ctx)
    _install(binary, root / binary.name)
    entrypoint = (f"/{binary.name}", *flags, "--zap-log-level=info", "--zap-encoder=console")
    return ImageConfig(user="65532:65532", env={"PATH": PATH}, entrypoint=entrypoint, workdir="/")


def keda(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    return _keda(ctx, "keda", params["version"])


def keda_metrics_apiserver(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    return _keda(ctx, "keda-metrics-apiserver", params["version"], "--secure-port=6443")


def keda_admission_webhooks(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    return _keda(ctx, "keda-admission-webhooks", params["version"])


PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
# Modules of their own inside it that its go.mod replaces with their folders.
PROMETHEUS_OPERATOR_NESTED = ("pkg/apis/monitoring", "pkg/client")


def prometheus_operator_binary(ctx: Context, package: str, name: str, version: str) -> Path:
    module = f"{PROMETHEUS_OPERATOR_MODULE}@v{version}"
    stamp = _prometheus_version_flags(version)
    return ctx.go_build(module, package, name, stamp, nested=PROMETHEUS_OPERATOR_NESTED)


def _on_busybox(ctx: Context, binary: Path, target: str) -> ImageConfig:
    root = _busybox_tree(ctx, debian.NEWER)
    _install(binary, root / target.lstrip("/"))
    return ImageConfig(user="65534", env={"PATH": PATH}, entrypoint=(target,))


def prometheus_operator(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    binary = prometheus_operator_binary(ctx, "./cmd/operator", "operator", params["version"])
    return _on_busybox(ctx, binary, "/bin/operator")


def prometheus_config_reloader(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    name = "prometheus-config-reloader"
    binary = prometheus_operator_binary(ctx, f"./cmd/{name}", name, params["version"])
    return _on_busybox(ctx, binary, f"/bin/{name}")


def prometheus_module_version(version: str) -> str:
    """Prometheus 3.x.y is the Go module's v0.3xx.y (2.x.y was v0.x.y)."""
    major, minor, patch = (int(part) for part in version.split("."))
    return f"v0.{major * 100 + minor if major >= 3 else minor}.{patch}"


# The default configuration (the operator always passes its own): Prometheus scrapes itself.
PROMETHEUS_CONFIG = """global:
  scrape_interval: 15s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["localhost:9090"]
"""


def prometheus(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    version = params["version"]
    module = f"github.com/prometheus/prometheus@{prometheus_module_version(version)}"
    stamp = _prometheus_version_flags(version)
    binaries = [ctx.go_build(module, f"./cmd/{name}", name, stamp, ("netgo",)) for name in ("prometheus", "promtool")]
    root = _nonroot_tree(ctx)
    for binary in binaries:
        _install(binary, root / "bin" / binary.name)
    _write(root / "etc/prometheus/prometheus.yml", PROMETHEUS_CONFIG)
    (root / "prometheus").mkdir()
    os.chown(root / "prometheus", 65532, 65532)
    return ImageConfig(
        user="65532:65532",
        env={"PATH": PATH},
        entrypoint=("/bin/prometheus",),
        cmd=("--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"),
        workdir="/prometheus",
    )


# ---------------------------------------------------------------------------------------------
# Spark, assembled from Maven Central's jars and Debian's Java 17, and the Spark operator on it

SPARK_HOME = "/opt/spark"
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"
# The tools that resolve Spark's jars and compile SparkPi, in a tree of their own.
SPARK_BUILD_DEBIAN = ("maven", "openjdk-17-jdk-headless")
SPARK_DEBIAN = ("openjdk-17-jre-headless", "tini", "procps", "bash")
SPARK_FILES = (
    "images/spark/pom.xml",
    "images/spark/SparkPi.java",
    "images/spark/entrypoint.sh",
    "images/spark/spark-class",
    "images/spark/spark-submit",
)
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


def _java_install(root: Path, packages: tuple[str, ...], ctx: Context) -> None:
    # The JRE's install script links its manual pages: their folder must exist, though the
    # base leaves manual pages out.
    (root / "usr/share/man/man1").mkdir(parents=True, exist_ok=True)
    debian.apt_install(root, packages, ctx.cache / "apt-archives", ctx.log)


def _own_authorities(root: Path) -> list[str]:
    """The certificates of the machine's CA bundle that the tree's Debian bundle lacks."""

    def pems(path: Path) -> list[str]:
        text = path.read_text() if path.is_file() else ""
        return re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.DOTALL)

    machine = pems(Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"))
    debians = set(pems(root / "etc/ssl/certs/ca-certificates.crt"))
    return [pem for pem in machine if pem not in debians]


def spark_jars(ctx: Context, version: str) -> Path:
    """Spark's run-time jars (images/spark/pom.xml, resolved from Maven Central with Debian's
    Maven) and examples/spark-examples.jar (images/spark/SparkPi.java), cached by version and
    the bytes of those two files."""
    pom = ctx.file("images/spark/pom.xml").read_text().replace("@SPARK_VERSION@", version)
    program = ctx.file("images/spark/SparkPi.java").read_bytes()
    key = hashlib.sha256(pom.encode() + b"\0" + program).hexdigest()[:16]
    folder = ctx.cache / "spark" / f"{version}-{key}"
    if (folder / "examples/spark-examples.jar").is_file():
        return folder
    helper = ctx.work / "spark-build"
    with ctx.step(f"Maven and the JDK ({' '.join(SPARK_BUILD_DEBIAN)})"):
        debian.copy_tree(debian.base(ctx.cache, ctx.log), helper)
        debian.with_network(helper)
        _java_install(helper, SPARK_BUILD_DEBIAN, ctx)
    project = ctx.work / "spark-project"
    _write(project / "pom.xml", pom)
    _write(project / "src/org/apache/spark/examples/SparkPi.java", program.decode())
    # The machine's certificate authorities that Debian's are not (a TLS-inspecting proxy's),
    # added to Java's for Maven's downloads, one file each (keytool imports one per call).
    for number, pem in enumerate(_own_authorities(helper)):
        _write(project / "cas" / f"{number}.crt", pem + "\n")
    repository = ctx.cache / "maven"
    repository.mkdir(parents=True, exist_ok=True)
    binds = ((project, "/tmp/project"), (repository, "/tmp/m2"))
    with ctx.step(f"Spark {version}'s jars from Maven Central"):
        debian.in_root(
            helper,
            "cd /tmp/project && cp /etc/ssl/certs/java/cacerts trust.p12\n"
            'for ca in cas/*.crt; do [ -e "$ca" ] || continue\n'
            'keytool -importcert -noprompt -alias "$ca" -file "$ca" '
            "-keystore trust.p12 -storepass changeit -storetype PKCS12 >/dev/null; done\n"
            "opts='-Dmaven.repo.local=/tmp/m2 -Djavax.net.ssl.trustStore=/tmp/project/trust.p12 "
            "-Djavax.net.ssl.trustStorePassword=changeit -Djavax.net.ssl.trustStoreType=PKCS12'\n"
            f"mvn -B -q $opts {MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies "
            "-DincludeScope=runtime -DoutputDirectory=/tmp/project/out/jars\n",
            ctx.log,
            binds=binds,
        )
    with ctx.step("javac SparkPi.java, spark-examples.jar"):
        debian.in_root(
            helper,
            "cd /tmp/project && mkdir -p classes out/examples\n"
            "javac --release 17 -nowarn -cp 'out/jars/*' -d classes src/org/apache/spark/examples/SparkPi.java\n"
            "jar --create --file out/examples/spark-examples.jar -C classes .\n",
            ctx.log,
            binds=binds,
        )
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(project / "out", partial)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def _spark_tree(ctx: Context, version: str) -> Path:
    """Debian's Java 17 with Spark's jars under /opt/spark, its launcher scripts of our own and
    the user spark (185), as the official image has them."""
    jars = spark_jars(ctx, version)
    root = ctx.debian_base()
    with ctx.step(f"apt-get install {' '.join(SPARK_DEBIAN)}"):
        _java_install(root, SPARK_DEBIAN, ctx)
    home = root / SPARK_HOME.lstrip("/")
    with ctx.step(f"Spark {version} into {SPARK_HOME}"):
        shutil.copytree(jars / "jars", home / "jars")
        _install(jars / "examples/spark-examples.jar", home / "examples/jars/spark-examples.jar", 0o644)
        for script in ("spark-class", "spark-submit"):
            _install(ctx.file(f"images/spark/{script}"), home / "bin" / script)
        _install(ctx.file("images/spark/entrypoint.sh"), root / "opt/entrypoint.sh")
        _write(home / "RELEASE", f"Spark {version} (Scala 2.13) assembled from Maven Central by e2e.node.images\n")
        (home / "conf").mkdir()
        ctx.in_root(
            "groupadd --system --gid 185 spark\n"
            "useradd --system --uid 185 --gid 185 --home-dir /home/spark --create-home --shell /bin/bash spark\n"
            f"mkdir -p {SPARK_HOME}/work-dir\n"
            f"chown 185:185 {SPARK_HOME}/work-dir && chmod g+w {SPARK_HOME}/work-dir\n"
        )
    return root


def _spark_env(version: str) -> dict[str, str]:
    return {
        "PATH": f"{SPARK_HOME}/bin:{PATH}",
        "JAVA_HOME": JAVA_HOME,
        "SPARK_HOME": SPARK_HOME,
        "SPARK_SCALA_VERSION": "2.13",
        "SPARK_VERSION": version,
        "LANG": "C.UTF-8",
    }


def spark(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    _spark_tree(ctx, params["version"])
    return ImageConfig(
        user="185",
        env=_spark_env(params["version"]),
        entrypoint=("/opt/entrypoint.sh",),
        workdir=f"{SPARK_HOME}/work-dir",
    )


SPARK_OPERATOR_MODULE = "github.com/kubeflow/spark-operator/v2"


def spark_operator_binary(ctx: Context, version: str) -> Path:
    stamp = f"-X k8s.io/component-base/version.gitVersion=v{version}"
    return ctx.go_build(f"{SPARK_OPERATOR_MODULE}@v{version}", "./cmd/operator", "spark-operator", stamp)


def spark_operator(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    binary = spark_operator_binary(ctx, params["version"])
    root = _spark_tree(ctx, params["spark"])
    _install(binary, root / "usr/bin/spark-operator")
    _install(ctx.file("images/spark-operator/entrypoint.sh"), root / "usr/bin/entrypoint.sh")
    with ctx.step("webhook certificate folder for spark"):
        certs = "/etc/k8s-webhook-server/serving-certs"
        ctx.in_root(f"mkdir -p {certs} && chown -R 185:185 {certs} && chmod -R g+rw {certs}")
    return ImageConfig(user="185:185", env=_spark_env(params["spark"]), entrypoint=("/usr/bin/entrypoint.sh",))
