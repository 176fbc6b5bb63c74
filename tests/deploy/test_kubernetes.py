"""deploy/kubernetes: every overlay renders with ``kubectl kustomize``; references
resolve, args are real CLI arguments, the config parses, pods are hardened."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from agents.config import KafkaSettings, parse_config
from pipeline.streams.app import build
from pipeline.streams.settings import StreamSettings, from_environment
from tests.deploy.cli_args import parse_error, pectrack_argv
from tests.deploy.kubernetes import (
    BASE,
    K8S,
    OVERLAYS,
    container,
    environment,
    kind,
    mount,
    render,
    render_dir,
    secret_of,
    volumes,
    workloads,
)
from tests.deploy.promql import ALERTS, ROOT
from tests.support.tls import TlsPki

# Secrets the operator creates (never committed), per overlay; Strimzi writes its own.
EXTERNAL_SECRETS = {
    "strimzi": {"pectrack-mailbox-passwords"},
    "existing-kafka": {
        "pectrack-mailbox-passwords",
        "pectrack-kafka-ca",
        "pectrack-kafka-agent",
        "pectrack-kafka-worker",
    },
}
# SASL settings are the client half of issue #16 (branch "fleet"): until it is merged
# agents.config rejects these keys, so they are checked here and left out of the parse;
# once KafkaSettings has `sasl`, they are parsed too.
SASL_KEYS = ("sasl_mechanism", "sasl_username", "sasl_password_file", "sasl_token_file")
SASL_PARSED = "sasl" in KafkaSettings.__dataclass_fields__

REQUIRED = {
    "Namespace": [],
    "ConfigMap": ["data"],
    "Service": ["spec.selector", "spec.ports"],
    "StatefulSet": [
        "spec.serviceName",
        "spec.selector.matchLabels",
        "spec.template.spec.containers",
    ],
    "PodDisruptionBudget": ["spec.selector.matchLabels", "spec.maxUnavailable"],
    "NetworkPolicy": ["spec.podSelector.matchLabels", "spec.ingress"],
    "ServiceMonitor": ["spec.selector.matchLabels", "spec.endpoints"],
    "PrometheusRule": ["spec.groups"],
    "AlertmanagerConfig": ["spec.route", "spec.inhibitRules"],
}
STRIMZI = {
    "Kafka": ["spec.kafka.listeners", "spec.entityOperator.topicOperator"],
    "KafkaNodePool": ["spec.replicas", "spec.roles", "spec.storage"],
    "KafkaTopic": ["spec.partitions", "spec.replicas"],
    "KafkaUser": ["spec.authentication.type", "spec.authorization.acls"],
}
# Volume types the "restricted" Pod Security Standard allows (those pectrack uses).
RESTRICTED_VOLUMES = {"configMap", "secret", "emptyDir", "persistentVolumeClaim"}


def _get(document: dict[str, Any], dotted: str) -> Any:
    value: Any = document
    for part in dotted.split("."):
        assert isinstance(value, dict), f"missing {dotted}"
        assert part in value, f"missing {dotted}"
        value = value[part]
    return value


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    """The Strimzi overlay, rendered."""
    return render("strimzi")


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    name: str = request.param
    return name, render(name)


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_generate", K8S / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_overlay_has_the_resources_and_their_fields(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    """Each document has apiVersion/kind/name, the pectrack namespace, and its kind's
    fields; only the Strimzi overlay runs a Kafka."""
    name, docs = overlay
    required = REQUIRED | (STRIMZI if name == "strimzi" else {})
    assert {d["kind"] for d in docs} == set(required), name
    for document in docs:
        where = f"{name}: {document['kind']}/{document['metadata']['name']}"
        assert document["apiVersion"], where
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "pectrack", where
        for field in required[document["kind"]]:
            assert _get(document, field) is not None, f"{where}: null {field}"


def test_kustomizations_list_every_manifest() -> None:
    """The base lists every manifest and trust anchor of its directory; each overlay
    builds on the base and lists its own files."""
    base = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    files = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(base["resources"]) == files
    [trust] = [g for g in base["configMapGenerator"] if g["name"] == "pectrack-trust-anchors"]
    assert set(trust["files"]) == {f"trust/{p.name}" for p in (BASE / "trust").glob("*.pem")}
    for name in OVERLAYS:
        kustomization = yaml.safe_load((K8S / name / "kustomization.yaml").read_text())
        listed = set(kustomization["resources"]) - {"../base"}
        listed |= {p["path"] for p in kustomization.get("patches", [])}
        listed |= {f for g in kustomization["configMapGenerator"] for f in g.get("files", [])}
        assert "../base" in kustomization["resources"], name
        assert listed == {p.name for p in (K8S / name).iterdir()} - {"kustomization.yaml"}


def test_selectors_match_pod_labels(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    """Workload selectors match their pod template; each Service, PDB and NetworkPolicy
    selects some pods."""
    _, docs = overlay
    pod_labels = []
    for workload in workloads(docs):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), workload["metadata"]["name"]
        pod_labels.append(labels)
    for service in kind(docs, "Service").values():
        assert any(service["spec"]["selector"].items() <= pod.items() for pod in pod_labels)
    for pdb in kind(docs, "PodDisruptionBudget").values():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert sum(selector.items() <= pod.items() for pod in pod_labels) == 1


def test_services_and_monitors_name_real_ports(documents: list[dict[str, Any]]) -> None:
    """Service target ports exist on the pods; ServiceMonitors select a Service and port."""
    services = kind(documents, "Service")
    for name, service in services.items():
        pods = [
            w
            for w in workloads(documents)
            if service["spec"]["selector"].items()
            <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        for port in service["spec"]["ports"]:
            for workload in pods:
                names = {p["name"] for p in container(workload).get("ports", [])}
                assert port["targetPort"] in names, f"{name}: {port['targetPort']}"
    for name, monitor in kind(documents, "ServiceMonitor").items():
        selected = [
            s
            for s in services.values()
            if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]
        assert [s["metadata"]["name"] for s in selected] == [name], "job label = Service name"
        ports = {p["name"] for p in selected[0]["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    assert set(kind(documents, "ServiceMonitor")) == {"pectrack-agent", "pectrack-worker"}
    for statefulset in kind(documents, "StatefulSet").values():
        assert statefulset["spec"]["serviceName"] in services


def test_volumes_reference_existing_configmaps_and_known_secrets(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    """Mounted and envFrom ConfigMaps are in the render; Secrets are the operator's
    documented ones or those Strimzi writes (cluster CA, one per KafkaUser)."""
    name, docs = overlay
    configmaps = kind(docs, "ConfigMap")
    strimzi = {f"{k}-cluster-ca-cert" for k in kind(docs, "Kafka")} | set(kind(docs, "KafkaUser"))
    mounted = set()
    for workload in workloads(docs):
        for volume in volumes(workload).values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, volume
            if "secret" in volume:
                assert volume["secret"]["secretName"] in EXTERNAL_SECRETS[name] | strimzi, volume
                mounted.add(volume["secret"]["secretName"])
        for source in container(workload).get("envFrom", []):
            assert source["configMapRef"]["name"] in configmaps
    assert EXTERNAL_SECRETS[name] <= mounted, name


def _agent(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return kind(docs, "StatefulSet")["pectrack-agent"]


def _worker(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return kind(docs, "StatefulSet")["pectrack-worker"]


def test_container_args_are_accepted_by_the_cli(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    """Every container's args parse with `pectrack`. The agents are one StatefulSet whose
    pods take their shard from their ordinal (`--shard auto`), N = its replicas."""
    _, docs = overlay
    agent = _agent(docs)
    argv = pectrack_argv(container(agent)["args"])
    assert argv[argv.index("--shard") + 1] == "auto"
    count = agent["spec"]["replicas"]
    assert count >= 2
    assert environment(docs, agent)["PECTRACK_SHARD_COUNT"] == str(count)
    # `--shard auto` is parsed by the fleet branch of issue #16; K/N is what it resolves to
    argv[argv.index("--shard") + 1] = f"1/{count}"
    assert parse_error(argv) is None, parse_error(argv)
    argv = pectrack_argv(container(_worker(docs))["args"])
    assert parse_error(argv) is None, parse_error(argv)


def _kafka_tls_listener(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (listener,) = kind(documents, "Kafka")["pectrack"]["spec"]["kafka"]["listeners"]
    return listener  # type: ignore[no-any-return]


def test_strimzi_kafka_is_reached_only_by_mutual_tls_with_acls(
    documents: list[dict[str, Any]],
) -> None:
    """One listener, TLS with client certificates, simple authorization; each component
    its own KafkaUser, the brokers' CA from Strimzi's Secret."""
    kafka = kind(documents, "Kafka")["pectrack"]["spec"]["kafka"]
    listener = _kafka_tls_listener(documents)
    assert (listener["tls"], listener["authentication"]["type"]) == (True, "tls")
    assert kafka["authorization"]["type"] == "simple"
    users = kind(documents, "KafkaUser")
    assert set(users) == {"pectrack-agent", "pectrack-worker", "pectrack-reader"}
    assert all(u["metadata"]["labels"]["strimzi.io/cluster"] == "pectrack" for u in users.values())
    worker = _worker(documents)
    env = environment(documents, worker)
    assert env["PECTRACK_BROKER"] == f"pectrack-kafka-bootstrap:{listener['port']}"
    assert env["PECTRACK_KAFKA_TLS"] == "true"
    assert secret_of(worker, env["PECTRACK_KAFKA_CA_FILE"]) == "pectrack-cluster-ca-cert"
    assert secret_of(worker, env["PECTRACK_KAFKA_CERT_FILE"]) == "pectrack-worker"
    assert secret_of(worker, env["PECTRACK_KAFKA_KEY_FILE"]) == "pectrack-worker"
    assert env["PECTRACK_KAFKA_CERT_FILE"].endswith("/user.crt")  # Strimzi's key names
    assert env["PECTRACK_KAFKA_KEY_FILE"].endswith("/user.key")
    assert env["PECTRACK_KAFKA_CA_FILE"].endswith("/ca.crt")
    assert settings_of(documents).tls is not None


def settings_of(docs: list[dict[str, Any]]) -> StreamSettings:
    """The worker's settings, read back through its own environment reader."""
    env = environment(docs, _worker(docs))
    return from_environment(env={**env, "PECTRACK_GROUP_INSTANCE_ID": "pectrack-worker-0"})


def test_existing_kafka_is_reached_by_tls_and_sasl(tmp_path: Path) -> None:
    """The existing-Kafka overlay: TLS to the brokers with the operator's CA, SASL with a
    password file from a Secret per component, no Strimzi resource."""
    docs = render("existing-kafka")
    worker = _worker(docs)
    env = environment(docs, worker)
    assert env["PECTRACK_KAFKA_TLS"] == "true"
    assert secret_of(worker, env["PECTRACK_KAFKA_CA_FILE"]) == "pectrack-kafka-ca"
    assert env["PECTRACK_KAFKA_SASL_MECHANISM"] in {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
    assert env["PECTRACK_KAFKA_SASL_USERNAME"] == "pectrack-worker"
    assert secret_of(worker, env["PECTRACK_KAFKA_SASL_PASSWORD_FILE"]) == "pectrack-kafka-worker"
    agent = _agent(docs)
    kafka = _agent_toml(docs)["kafka"]
    assert kafka["sasl_username"] == "pectrack-agent"
    assert secret_of(agent, kafka["sasl_password_file"]) == "pectrack-kafka-agent"
    assert secret_of(agent, kafka["ca_file"]) == "pectrack-kafka-ca"
    assert kafka["sasl_mechanism"] == env["PECTRACK_KAFKA_SASL_MECHANISM"]
    assert kafka["bootstrap"] == env["PECTRACK_BROKER"]
    assert not any(d["apiVersion"].startswith("kafka.strimzi.io") for d in docs)


def _agent_toml(docs: list[dict[str, Any]]) -> dict[str, Any]:
    agent = _agent(docs)
    argv = pectrack_argv(container(agent)["args"])
    config_path = Path(argv[argv.index("--config") + 1])
    volume = mount(agent, str(config_path))
    data = kind(docs, "ConfigMap")[volume["configMap"]["name"]]["data"]
    return tomllib.loads(data[config_path.name])


def test_agent_config_mounts_and_parses(
    overlay: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """agent.toml is where --config points and is valid; the mailbox password template
    points into the mounted passwords Secret; Kafka settings are those of the overlay."""
    name, docs = overlay
    pki = TlsPki(tmp_path)
    agent = _agent(docs)
    toml = _agent_toml(docs)
    template = toml["mailbox_defaults"]["password_file"]
    assert template.endswith("/{id}")
    assert secret_of(agent, template.replace("{id}", "comune-x")) == "pectrack-mailbox-passwords"
    for box in toml["mailbox"]:
        assert "password_file" not in box, "the template serves every mailbox"
    del toml["mailbox_defaults"]["password_file"]
    for box in toml["mailbox"]:
        box["password_env"] = "PW"
    kafka = toml["kafka"]
    assert kafka["tls"] is True
    if name == "strimzi":
        listener = _kafka_tls_listener(docs)
        assert kafka["bootstrap"] == f"pectrack-kafka-bootstrap:{listener['port']}"
        assert secret_of(agent, kafka["ca_file"]) == "pectrack-cluster-ca-cert"
        assert secret_of(agent, kafka["cert_file"]) == "pectrack-agent"
        assert secret_of(agent, kafka["key_file"]) == "pectrack-agent"
        kafka |= {"cert_file": pki.client_cert, "key_file": pki.client_key}
    sasl = {key: kafka.pop(key) for key in SASL_KEYS if key in kafka}
    assert bool(sasl) == (name == "existing-kafka")
    if SASL_PARSED:
        kafka.update(sasl)
    kafka["ca_file"] = pki.ca  # parse_config reads the TLS files: test ones, other paths
    config = parse_config(toml, {"PW": "x"})
    assert config.kafka.tls is not None
    if SASL_PARSED:
        assert (getattr(config.kafka, "sasl", None) is not None) == bool(sasl)
    assert config.kafka.idempotence is True
    assert config.kafka.create_topics is False


def test_worker_trust_store_is_mounted_with_anchors(documents: list[dict[str, Any]]) -> None:
    """--trust points at a mounted ConfigMap that holds at least one PEM anchor."""
    worker = _worker(documents)
    argv = pectrack_argv(container(worker)["args"])
    trust = argv[argv.index("--trust") + 1]
    volume = mount(worker, trust + "/x.pem")
    data = kind(documents, "ConfigMap")[volume["configMap"]["name"]]["data"]
    assert any(name.endswith(".pem") and "BEGIN CERTIFICATE" in v for name, v in data.items())


def test_strimzi_kafka_is_kraft_with_node_pools(documents: list[dict[str, Any]]) -> None:
    """The Kafka cluster runs KRaft through a dual-role KafkaNodePool, no ZooKeeper."""
    kafkas = kind(documents, "Kafka")
    assert list(kafkas) == ["pectrack"]
    kafka = kafkas["pectrack"]
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    assert "zookeeper" not in kafka["spec"]
    for pool in kind(documents, "KafkaNodePool").values():
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] in kafkas
        assert set(pool["spec"]["roles"]) == {"controller", "broker"}


def faust_topics(tmp_path: Path) -> tuple[str, str]:
    """(table changelog, assignor leader topic) as faust names them for the settings."""
    pipeline = build(StreamSettings(store="memory://", datadir=str(tmp_path)))
    changelog = pipeline.table.changelog_topic.get_topic_name()
    leader = pipeline.app._leader_assignor._leader_topic_name
    return changelog, leader


def test_topics_are_the_settings_defaults(documents: list[dict[str, Any]], tmp_path: Path) -> None:
    """KafkaTopics are exactly the code's topics and faust's own, one partition count,
    compacted state and cursors."""
    settings, kafka = StreamSettings(), KafkaSettings(bootstrap="x")
    changelog, leader = faust_topics(tmp_path)
    invoice_changelog = f"{settings.app_id}-{settings.invoice_table_name}-changelog"
    topics = {t["spec"].get("topicName", n): t for n, t in kind(documents, "KafkaTopic").items()}
    assert set(topics) == {
        settings.raw_topic,
        settings.receipts_topic,
        settings.submissions_topic,
        settings.state_changes_topic,
        settings.message_state_topic,
        settings.dlq_topic,
        settings.inbound_topic,
        settings.sdi_topic,
        settings.invoice_states_topic,
        settings.sdi_checks_topic,
        kafka.dead_letter_topic,
        kafka.cursor_topic,
        changelog,
        invoice_changelog,
        leader,
    }
    compacted = {
        name
        for name, topic in topics.items()
        if topic["spec"].get("config", {}).get("cleanup.policy") == "compact"
    }
    assert compacted == {
        settings.message_state_topic,
        kafka.cursor_topic,
        changelog,
        invoice_changelog,
    }
    for topic in topics.values():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "pectrack"
        assert topic["spec"]["replicas"] == 3
    assert topics.pop(leader)["spec"]["partitions"] == 1  # faust's election: one partition
    partitions = {t["spec"]["partitions"] for t in topics.values()}
    assert partitions == {settings_of(documents).partitions}
    assert _worker(documents)["spec"]["replicas"] <= partitions.pop(), "idle workers"


def test_one_partition_count_across_compose_and_kubernetes(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    """Compose's topics, the workers' and the agents' settings of every overlay: 12."""
    _, docs = overlay
    compose = (ROOT / "deploy" / "compose.yaml").read_text()
    created = {int(n) for n in re.findall(r"--partitions (\d+)", compose)}
    compose_env = yaml.safe_load(compose)["services"]["worker"]["environment"]
    assert created == {int(compose_env["PECTRACK_PARTITIONS"])} == {12}
    assert settings_of(docs).partitions == 12
    assert _agent_toml(docs)["kafka"]["partitions"] == 12


def test_generated_files_are_in_sync() -> None:
    """Dashboard ConfigMaps, PrometheusRule and trust anchors match their sources."""
    generator = _generator()
    for name, render_file in generator.GENERATED.items():
        assert (BASE / name).read_text() == render_file(), "run deploy/kubernetes/generate.py"
    assert generator.main(["--check"]) == 0


def test_generated_resources_carry_the_sources(documents: list[dict[str, Any]]) -> None:
    """Each dashboard JSON is in a sidecar-labelled ConfigMap; the rule equals alerts.yaml
    (at the default docs URL); the anchors are pipeline/trust's."""
    configmaps = kind(documents, "ConfigMap")
    for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        configmap = configmaps[f"grafana-dashboard-{path.stem}"]
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert configmap["data"][path.name] == path.read_text()
    rule = kind(documents, "PrometheusRule")["pectrack-alerts"]
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    [trust] = [c for n, c in configmaps.items() if n.startswith("pectrack-trust-anchors-")]
    anchors = {p.name: p.read_text() for p in (ROOT / "pipeline" / "trust").glob("*.pem")}
    assert trust["data"] == anchors


def test_docs_url_rebases_every_runbook(tmp_path: Path) -> None:
    """--docs-url moves every runbook_url of the PrometheusRule under the new base."""
    generator = _generator()
    text = generator.prometheus_rule("https://docs.example.org/pectrack")
    urls = re.findall(r"runbook_url: (\S+)", text)
    assert len(urls) == text.count("- alert: ")
    assert all(u.startswith("https://docs.example.org/pectrack/operations.md#") for u in urls)
    with pytest.raises(ValueError, match="absolute"):
        generator.prometheus_rule("docs/")


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
    their datadir, with the pod name as static group membership id."""
    worker = _worker(documents)
    spec = container(worker)
    argv = pectrack_argv(spec["args"])
    datadir = argv[argv.index("--datadir") + 1]
    [state] = [m for m in spec["volumeMounts"] if m["mountPath"] == datadir]
    claims = {c["metadata"]["name"] for c in worker["spec"]["volumeClaimTemplates"]}
    assert state["name"] in claims
    assert state["name"] not in volumes(worker)
    [instance] = [e for e in spec["env"] if e["name"] == "PECTRACK_GROUP_INSTANCE_ID"]
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    settings = settings_of(documents)
    assert settings.store == "rocksdb://"
    assert settings.standby_replicas >= 1
    assert settings.session_timeout_seconds >= 10


def test_pods_meet_the_restricted_pod_security_standard(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    """Non-root, no privilege escalation, every capability dropped, RuntimeDefault
    seccomp, a read-only root filesystem with a writable /tmp, allowed volume types only;
    the namespace enforces the profile."""
    _, docs = overlay
    namespace = kind(docs, "Namespace")["pectrack"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for workload in workloads(docs):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for spec in pod["containers"]:
            context = spec["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["runAsNonRoot"] is True
            assert context["runAsUser"] >= 10000
            assert context["capabilities"]["drop"] == ["ALL"]
            assert "add" not in context["capabilities"]
            assert context["seccompProfile"]["type"] == "RuntimeDefault"
            assert "emptyDir" in mount(workload, "/tmp/x")
        for volume in volumes(workload).values():
            assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, volume


def test_probes_exercise_the_event_loop(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    """Liveness and readiness ask /livez and /readyz (pipeline/health.py) on a port the
    container serves from its event loop, never the metrics thread."""
    _, docs = overlay
    ports = {"pectrack-agent": "health", "pectrack-worker": "web"}
    for workload in workloads(docs):
        spec = container(workload)
        names = {p["name"]: p["containerPort"] for p in spec["ports"]}
        port = ports[workload["metadata"]["name"]]
        assert spec["livenessProbe"]["httpGet"] == {"path": "/livez", "port": port}
        assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
        if argv_name(spec) == "worker":  # its web server starts once Kafka answers
            startup = spec["startupProbe"]
            assert startup["httpGet"] == {"path": "/livez", "port": port}
            assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
        argv = pectrack_argv(spec["args"])
        flag = "--health-port" if argv[0] == "agent" else "--web-port"
        assert int(argv[argv.index(flag) + 1]) == names[port]
        assert names[port] != names["metrics"]


def test_disruption_budgets_cover_each_workload(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = overlay
    budgets = kind(docs, "PodDisruptionBudget")
    for workload in workloads(docs):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        [budget] = [
            b
            for b in budgets.values()
            if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert budget["spec"]["maxUnavailable"] == 1


def argv_name(spec: dict[str, Any]) -> str:
    return pectrack_argv(spec["args"])[0]


def _peers(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return rule.get("from", [])  # type: ignore[no-any-return]


def test_network_policies_guard_every_port(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    """Each pod is isolated by a NetworkPolicy; its metrics port is open to Prometheus
    only, the worker's lookup port to workers and labelled clients only; no rule is open
    to everyone (no empty `from`)."""
    _, docs = overlay
    policies = kind(docs, "NetworkPolicy")
    prometheus = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    for workload in workloads(docs):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        [policy] = [
            p
            for p in policies.values()
            if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
        ]
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        opened: dict[str, list[dict[str, Any]]] = {}
        for rule in policy["spec"]["ingress"]:
            assert _peers(rule), "a rule without `from` admits every pod"
            for port in rule["ports"]:
                opened.setdefault(port["port"], []).extend(_peers(rule))
        assert opened["metrics"] == [prometheus]
        served = {p["name"] for p in container(workload)["ports"]}
        assert set(opened) <= served
        if workload["metadata"]["name"] == "pectrack-worker":
            selectors = [peer["podSelector"]["matchLabels"] for peer in opened["web"]]
            assert {"app.kubernetes.io/name": "pectrack-worker"} in selectors
            assert all(s in ({"app.kubernetes.io/name": "pectrack-worker"},
                             {"pectrack.io/lookup": "allowed"}) for s in selectors)  # fmt: skip


def test_a_config_change_renames_the_configmap_and_so_rolls_the_pods(tmp_path: Path) -> None:
    """ConfigMaps are generated with a hash of their content in their name, and the pods
    refer to that name: a changed agent.toml or worker setting is a new pod template."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(K8S, copy)
    before = render_dir(copy / "strimzi")
    toml = copy / "strimzi" / "agent.toml"
    toml.write_text(toml.read_text().replace("poll_seconds = 60", "poll_seconds = 90"))
    env = copy / "base" / "worker.env"
    env.write_text(env.read_text().replace("PECTRACK_LOG_LEVEL=info", "PECTRACK_LOG_LEVEL=debug"))
    after = render_dir(copy / "strimzi")
    for name in ("pectrack-agent", "pectrack-worker"):
        old, new = _pod_configmaps(before, name), _pod_configmaps(after, name)
        assert old != new, name
        assert all(re.fullmatch(r"pectrack-[a-z-]+-[a-z0-9]{10}", n) for n in old | new)


def _pod_configmaps(docs: list[dict[str, Any]], name: str) -> set[str]:
    workload = kind(docs, "StatefulSet")[name]
    names = {v["configMap"]["name"] for v in volumes(workload).values() if "configMap" in v}
    names |= {s["configMapRef"]["name"] for s in container(workload).get("envFrom", [])}
    return {n for n in names if not n.startswith("pectrack-trust-anchors")}


def _checkov(rendered: Path) -> dict[str, Any]:
    checkov = Path(sys.executable).parent / "checkov"  # the test extras of this venv
    assert checkov.exists(), "checkov is missing: make venv installs the test extras"
    result = subprocess.run(
        [str(checkov), "-d", str(rendered.parent), "--framework", "kubernetes",
         "--output", "json", "--skip-download"],
        capture_output=True, text=True, check=False,
        env={"BC_SKIP_MAPPING": "TRUE", "PATH": "/usr/bin:/bin", "HOME": str(rendered.parent)},
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_checkov_passes_every_overlay(
    overlay: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """checkov's Kubernetes checks pass on the rendered overlay; each skipped check is
    skipped on its resource with a reason (an annotation; the YAML comment says more)."""
    name, docs = overlay
    rendered = tmp_path / "scan" / f"{name}.yaml"
    rendered.parent.mkdir()
    rendered.write_text(yaml.safe_dump_all(docs))
    report = _checkov(rendered)
    results = report["results"]
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
    assert failed == [], failed
    assert report["summary"]["passed"] > 100, "checkov scanned nothing"
    skipped = results["skipped_checks"]
    assert {c["check_id"] for c in skipped} == {"CKV_K8S_11", "CKV_K8S_43"}  # as commented
    for check in skipped:
        assert len(check["check_result"].get("suppress_comment", "")) > 20, check["check_id"]
