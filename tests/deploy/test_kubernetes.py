"""deploy/kubernetes: manifests parse, references resolve, args are real CLI arguments."""

from __future__ import annotations

import importlib.util
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from agents.config import KafkaSettings, parse_config
from pipeline.streams.settings import StreamSettings, from_environment
from tests.deploy.cli_args import parse_error, pectrack_argv
from tests.deploy.promql import ALERTS, ROOT
from tests.support.tls import TlsPki

K8S = ROOT / "deploy" / "kubernetes"
EXTERNAL_SECRETS = {"pectrack-mailbox-passwords"}  # created by the operator, never committed

REQUIRED = {
    "Namespace": [],
    "ConfigMap": ["data"],
    "Service": ["spec.selector", "spec.ports"],
    "Deployment": ["spec.selector.matchLabels", "spec.template.spec.containers"],
    "StatefulSet": [
        "spec.serviceName",
        "spec.selector.matchLabels",
        "spec.template.spec.containers",
    ],
    "ServiceMonitor": ["spec.selector.matchLabels", "spec.endpoints"],
    "PrometheusRule": ["spec.groups"],
    "Kafka": ["spec.kafka.listeners", "spec.entityOperator.topicOperator"],
    "KafkaNodePool": ["spec.replicas", "spec.roles", "spec.storage"],
    "KafkaTopic": ["spec.partitions", "spec.replicas"],
    "KafkaUser": ["spec.authentication.type"],
}


def _get(document: dict[str, Any], dotted: str) -> Any:
    value: Any = document
    for part in dotted.split("."):
        assert isinstance(value, dict), f"missing {dotted}"
        assert part in value, f"missing {dotted}"
        value = value[part]
    return value


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return found


def _kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def _workloads(documents: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from (d for d in documents if d["kind"] in ("Deployment", "StatefulSet"))


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_generate", K8S / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_resource_has_its_required_fields(documents: list[dict[str, Any]]) -> None:
    """Each document has apiVersion/kind/name, the pectrack namespace, and its kind's fields."""
    assert {d["kind"] for d in documents} == set(REQUIRED)
    for document in documents:
        name = f"{document['kind']}/{document['metadata']['name']}"
        assert document["apiVersion"], name
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "pectrack", name
        for field in REQUIRED[document["kind"]]:
            assert _get(document, field) is not None, f"{name}: null {field}"


def test_kustomization_lists_every_manifest() -> None:
    """`kubectl apply -k` applies every file of the directory."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_selectors_match_pod_labels(documents: list[dict[str, Any]]) -> None:
    """Workload selectors match their pod template; each Service selects some pods."""
    pod_labels = []
    for workload in _workloads(documents):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), workload["metadata"]["name"]
        pod_labels.append(labels)
    for name, service in _kind(documents, "Service").items():
        assert any(service["spec"]["selector"].items() <= pod.items() for pod in pod_labels), name


def test_services_and_monitors_name_real_ports(documents: list[dict[str, Any]]) -> None:
    """Service target ports exist on the pods; ServiceMonitors select a Service and port."""
    services = _kind(documents, "Service")
    for name, service in services.items():
        pods = [
            w
            for w in _workloads(documents)
            if service["spec"]["selector"].items()
            <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        for port in service["spec"]["ports"]:
            for workload in pods:
                names = {
                    p["name"]
                    for c in workload["spec"]["template"]["spec"]["containers"]
                    for p in c.get("ports", [])
                }
                assert port["targetPort"] in names, f"{name}: {port['targetPort']}"
    for name, monitor in _kind(documents, "ServiceMonitor").items():
        selected = [
            s
            for s in services.values()
            if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]
        assert [s["metadata"]["name"] for s in selected] == [name], "job label = Service name"
        ports = {p["name"] for p in selected[0]["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    assert set(_kind(documents, "ServiceMonitor")) == {"pectrack-agent", "pectrack-worker"}
    statefulset = _kind(documents, "StatefulSet")["pectrack-worker"]
    assert statefulset["spec"]["serviceName"] in services


def _secrets(documents: list[dict[str, Any]]) -> set[str]:
    """Secrets a pod may mount: the operator's own, and those Strimzi writes (the cluster
    CA certificate of each Kafka, one per KafkaUser)."""
    strimzi = {f"{name}-cluster-ca-cert" for name in _kind(documents, "Kafka")}
    return EXTERNAL_SECRETS | strimzi | set(_kind(documents, "KafkaUser"))


def test_volumes_reference_existing_configmaps(documents: list[dict[str, Any]]) -> None:
    """Mounted ConfigMaps are in the manifests; Secrets are the documented external one or
    Strimzi's."""
    configmaps = _kind(documents, "ConfigMap")
    for workload in _workloads(documents):
        for volume in workload["spec"]["template"]["spec"].get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, volume
            if "secret" in volume:
                assert volume["secret"]["secretName"] in _secrets(documents), volume


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    return containers[0]


def _mount(workload: dict[str, Any], path_prefix: str) -> dict[str, Any]:
    """The volume mounted at the directory holding ``path_prefix``."""
    container = _container(workload)
    mounts = [m for m in container["volumeMounts"] if path_prefix.startswith(m["mountPath"])]
    assert mounts, f"nothing mounted for {path_prefix}"
    volumes: dict[str, dict[str, Any]] = {
        v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]
    }
    return volumes[mounts[0]["name"]]


def test_container_args_are_accepted_by_the_cli(documents: list[dict[str, Any]]) -> None:
    """Every container's args parse with `pectrack`; agent shards cover 1..n once."""
    shards = []
    for workload in _workloads(documents):
        argv = pectrack_argv(_container(workload)["args"])
        assert parse_error(argv) is None, f"{workload['metadata']['name']}: {parse_error(argv)}"
        if argv[0] == "agent":
            shards.append(argv[argv.index("--shard") + 1])
    count = len(shards)
    assert sorted(shards) == [f"{i}/{count}" for i in range(1, count + 1)]
    assert count >= 2


def _kafka_tls_listener(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (listener,) = _kind(documents, "Kafka")["pectrack"]["spec"]["kafka"]["listeners"]
    return listener  # type: ignore[no-any-return]


def _secret_of(workload: dict[str, Any], path: str) -> str:
    """The Secret mounted at the directory holding ``path``."""
    volume = _mount(workload, path)
    assert "secret" in volume, path
    return str(volume["secret"]["secretName"])


def test_kafka_is_reached_only_by_mutual_tls(documents: list[dict[str, Any]]) -> None:
    """One listener, TLS with client-certificate authentication; each component its own
    KafkaUser, the brokers' CA from Strimzi's Secret."""
    listener = _kafka_tls_listener(documents)
    assert (listener["tls"], listener["authentication"]["type"]) == (True, "tls")
    users = _kind(documents, "KafkaUser")
    assert set(users) == {"pectrack-agent", "pectrack-worker"}
    assert all(u["metadata"]["labels"]["strimzi.io/cluster"] == "pectrack" for u in users.values())
    worker = _kind(documents, "StatefulSet")["pectrack-worker"]
    env = {e["name"]: e.get("value") for e in _container(worker)["env"]}
    assert env["PECTRACK_BROKER"] == f"pectrack-kafka-bootstrap:{listener['port']}"
    assert env["PECTRACK_KAFKA_TLS"] == "true"
    assert _secret_of(worker, env["PECTRACK_KAFKA_CA_FILE"]) == "pectrack-cluster-ca-cert"
    assert _secret_of(worker, env["PECTRACK_KAFKA_CERT_FILE"]) == "pectrack-worker"
    assert _secret_of(worker, env["PECTRACK_KAFKA_KEY_FILE"]) == "pectrack-worker"
    assert env["PECTRACK_KAFKA_CERT_FILE"].endswith("/user.crt")  # Strimzi's key names
    assert env["PECTRACK_KAFKA_KEY_FILE"].endswith("/user.key")
    assert env["PECTRACK_KAFKA_CA_FILE"].endswith("/ca.crt")


def test_agent_config_mounts_and_parses(documents: list[dict[str, Any]], tmp_path: Path) -> None:
    """agent.toml is where --config points; it is valid; its passwords are mounted files;
    it reaches Kafka by mutual TLS with its KafkaUser's certificate."""
    pki = TlsPki(tmp_path)
    listener = _kafka_tls_listener(documents)
    configmaps = _kind(documents, "ConfigMap")
    for workload in (d for d in _workloads(documents) if d["kind"] == "Deployment"):
        argv = pectrack_argv(_container(workload)["args"])
        config_path = Path(argv[argv.index("--config") + 1])
        volume = _mount(workload, str(config_path))
        data = configmaps[volume["configMap"]["name"]]["data"]
        text = data[config_path.name]
        toml = tomllib.loads(text)
        for box in toml["mailbox"]:
            secret_dir = str(Path(box["password_file"]).parent)
            assert "secret" in _mount(workload, secret_dir), box["id"]
            box["password_env"] = "PW"
            del box["password_file"]
        kafka = toml["kafka"]
        assert kafka["tls"] is True
        assert _secret_of(workload, kafka["ca_file"]) == "pectrack-cluster-ca-cert"
        assert _secret_of(workload, kafka["cert_file"]) == "pectrack-agent"
        assert _secret_of(workload, kafka["key_file"]) == "pectrack-agent"
        assert kafka["cert_file"].endswith("/user.crt")
        assert kafka["key_file"].endswith("/user.key")
        # parse_config reads the TLS files: this machine has test ones at other paths
        kafka |= {"ca_file": pki.ca, "cert_file": pki.client_cert, "key_file": pki.client_key}
        config = parse_config(toml, {"PW": "x"})
        assert config.kafka.tls is not None
        assert config.kafka.bootstrap == f"pectrack-kafka-bootstrap:{listener['port']}"
        assert config.kafka.idempotence is True
        assert config.kafka.create_topics is False


def test_worker_trust_store_is_mounted_with_anchors(documents: list[dict[str, Any]]) -> None:
    """--trust points at a mounted ConfigMap that holds at least one PEM anchor."""
    worker = _kind(documents, "StatefulSet")["pectrack-worker"]
    argv = pectrack_argv(_container(worker)["args"])
    trust = argv[argv.index("--trust") + 1]
    volume = _mount(worker, trust)
    data = _kind(documents, "ConfigMap")[volume["configMap"]["name"]]["data"]
    assert any(name.endswith(".pem") and "BEGIN CERTIFICATE" in v for name, v in data.items())


def test_strimzi_kafka_is_kraft_with_node_pools(documents: list[dict[str, Any]]) -> None:
    """The Kafka cluster runs KRaft through a dual-role KafkaNodePool, no ZooKeeper."""
    kafkas = _kind(documents, "Kafka")
    assert list(kafkas) == ["pectrack"]
    kafka = kafkas["pectrack"]
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    assert "zookeeper" not in kafka["spec"]
    for pool in _kind(documents, "KafkaNodePool").values():
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] in kafkas
        assert set(pool["spec"]["roles"]) == {"controller", "broker"}


def test_topics_are_the_settings_defaults(documents: list[dict[str, Any]]) -> None:
    """KafkaTopics are exactly the code's topics, one partition count, compacted state."""
    settings, kafka = StreamSettings(), KafkaSettings(bootstrap="x")
    topics = _kind(documents, "KafkaTopic")
    assert set(topics) == {
        settings.raw_topic,
        settings.receipts_topic,
        settings.submissions_topic,
        settings.state_changes_topic,
        settings.message_state_topic,
        settings.dlq_topic,
        kafka.dead_letter_topic,
        kafka.cursor_topic,
    }
    compacted = {
        name
        for name, topic in topics.items()
        if topic["spec"].get("config", {}).get("cleanup.policy") == "compact"
    }
    assert compacted == {settings.message_state_topic, kafka.cursor_topic}
    for topic in topics.values():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "pectrack"
    partitions = {t["spec"]["partitions"] for t in topics.values()}
    worker = _kind(documents, "StatefulSet")["pectrack-worker"]
    env = {e["name"]: e.get("value") for e in _container(worker)["env"]}
    assert partitions == {int(env["PECTRACK_PARTITIONS"])}
    assert worker["spec"]["replicas"] <= partitions.pop(), "idle workers beyond partitions"


def test_generated_files_are_in_sync() -> None:
    """Dashboard ConfigMaps, PrometheusRule and trust anchors match their sources."""
    generator = _generator()
    for name, render in generator.GENERATED.items():
        assert (K8S / name).read_text() == render(), "run python deploy/kubernetes/generate.py"
    assert generator.main(["--check"]) == 0


def test_generated_resources_carry_the_sources(documents: list[dict[str, Any]]) -> None:
    """Each dashboard JSON is in a sidecar-labelled ConfigMap; the rule equals alerts.yaml."""
    configmaps = _kind(documents, "ConfigMap")
    for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        configmap = configmaps[f"grafana-dashboard-{path.stem}"]
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert configmap["data"][path.name] == path.read_text()
    rule = _kind(documents, "PrometheusRule")["pectrack-alerts"]
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


def test_sync_check_notices_a_changed_dashboard(tmp_path: Path) -> None:
    """The generator's output follows the dashboard text (a stale copy would differ)."""
    generator = _generator()
    before = generator.dashboards()
    setattr(generator, "ROOT", tmp_path)  # noqa: B010 - a module loaded from a file path
    (tmp_path / "grafana" / "dashboards").mkdir(parents=True)
    (tmp_path / "grafana" / "dashboards" / "x.json").write_text('{"uid": "x"}\n')
    assert generator.dashboards() != before


def test_worker_state_is_on_a_persistent_volume_with_static_membership(
    documents: list[dict[str, Any]],
) -> None:
    """The workers keep the correlate table in RocksDB on a per-pod PersistentVolume at
    their datadir, with the pod name as static group membership id; the settings read
    back through the worker's own environment reader."""
    worker = _kind(documents, "StatefulSet")["pectrack-worker"]
    container = _container(worker)
    argv = pectrack_argv(container["args"])
    datadir = argv[argv.index("--datadir") + 1]
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == datadir]
    claims = {c["metadata"]["name"] for c in worker["spec"]["volumeClaimTemplates"]}
    assert mount["name"] in claims
    assert mount["name"] not in {v["name"] for v in worker["spec"]["template"]["spec"]["volumes"]}
    env = container["env"]
    [instance] = [e for e in env if e["name"] == "PECTRACK_GROUP_INSTANCE_ID"]
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    plain = {e["name"]: e["value"] for e in env if "value" in e}
    settings = from_environment(env={**plain, "PECTRACK_GROUP_INSTANCE_ID": "pectrack-worker-0"})
    assert settings.store == "rocksdb://"
    assert settings.standby_replicas >= 1
    assert settings.session_timeout_seconds >= 10
