"""Print the commands that create pectrack's topics and ACLs on a Kafka you already run.

    python deploy/kubernetes/kafka_admin.py [--bootstrap HOST:PORT] [--command-config FILE]
                                            [--replication N] [--principal-prefix User:]

One source: the ``KafkaTopic`` and ``KafkaUser`` resources of ``strimzi/kafka.yaml`` (the
topics with their partitions and configs, each user's least-privilege ACLs), written out
as ``kafka-topics.sh --create`` and ``kafka-acls.sh --add`` lines for the Apache Kafka
tools. Nothing is run: read the lines, then run them with an admin principal. A user
``pectrack-agent`` becomes principal ``User:pectrack-agent`` (change the prefix or edit
the names to your SASL user names).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

KAFKA_YAML = Path(__file__).resolve().parent / "strimzi" / "kafka.yaml"

# Strimzi's ACL words -> kafka-acls.sh options.
_RESOURCE = {"topic": "--topic", "group": "--group", "cluster": "--cluster"}
_PATTERN = {"literal": "LITERAL", "prefix": "PREFIXED"}


def resources(path: Path = KAFKA_YAML) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def topic_commands(
    docs: list[dict[str, Any]], common: list[str], replication: int | None
) -> list[str]:
    lines = []
    for doc in docs:
        if doc["kind"] != "KafkaTopic":
            continue
        spec = doc["spec"]
        words = ["kafka-topics.sh", *common, "--create", "--if-not-exists",
                 "--topic", spec.get("topicName", doc["metadata"]["name"]),
                 "--partitions", str(spec["partitions"]),
                 "--replication-factor", str(replication or spec["replicas"])]  # fmt: skip
        for key, value in spec.get("config", {}).items():
            words += ["--config", f"{key}={value}"]
        lines.append(shlex.join(words))
    return lines


def acl_commands(docs: list[dict[str, Any]], common: list[str], prefix: str) -> list[str]:
    lines = []
    for doc in docs:
        if doc["kind"] != "KafkaUser":
            continue
        principal = f"{prefix}{doc['metadata']['name']}"
        for acl in doc["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            words = ["kafka-acls.sh", *common, "--add", "--allow-principal", principal]
            for operation in acl["operations"]:
                words += ["--operation", operation]
            words += [_RESOURCE[resource["type"]]]
            if resource["type"] != "cluster":
                words += [resource["name"]]
            words += ["--resource-pattern-type", _PATTERN[resource.get("patternType", "literal")]]
            lines.append(shlex.join(words))
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="$BOOTSTRAP", help="brokers (default: $BOOTSTRAP)")
    parser.add_argument("--command-config", default=None, help="admin client properties file")
    parser.add_argument("--replication", type=int, default=None, help="replication factor")
    parser.add_argument("--principal-prefix", default="User:", help="principal of a user name")
    args = parser.parse_args(argv)
    common = ["--bootstrap-server", args.bootstrap]
    if args.command_config:
        common += ["--command-config", args.command_config]
    docs = resources()
    lines = [
        "# topics (partitions and configs as in deploy/kubernetes/strimzi/kafka.yaml)",
        *topic_commands(docs, common, args.replication),
        "# ACLs: one principal per component, least privilege",
        *acl_commands(docs, common, args.principal_prefix),
    ]
    print("\n".join(line.replace("'$BOOTSTRAP'", '"$BOOTSTRAP"') for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
