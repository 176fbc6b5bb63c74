"""The published schemas: released versions frozen, the working copies compatible with
them (docs/schemas.md), URIs that name them, and the package carrying the one copy."""

from __future__ import annotations

import copy
import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import pipeline
from pipeline.contracts.cloudevents import Mode
from pipeline.contracts.schemas import (
    CONTRACTS,
    DEFAULT_SCHEMA_BASE,
    STATE_CHANGE,
    Contract,
    check_schema_base,
    released_schema,
    schema_document,
    state_change_value_schema,
)
from tests.support.schema_compat import incompatibilities

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"

# Every released schema, as released. A released file never changes: a compatible change
# goes to the working copy (schemas/<name>.schema.json), an incompatible one to the next
# version. Adding a line here is releasing that version.
RELEASED = {
    "inbound/1.json": "82e817b09cb0f93e8f6956fcce3b9e345c78a65d7949b857e46268b3813f7e1e",
    "message-state/1.json": "33c992a3ea20b6545ccb8a907edad9aad826498c2103647cd52d807d7c8d351a",
    "message-state/2.json": "6e099bec7650e731d04ea7fb18f3ace5e6b62cba3c15a44e48bb0996df372ac9",
    "sdi-invoice-sent/1.json": "d0cc88b1032995d870da8fbaf0aa1c03fdb12454a9289eb17b6e79983e818bc0",
    "sdi-invoice-state/1.json": "769252e068fa94773a6c52e8fd4874828bd5589de6f9fa168be2547c554354a9",
    "sdi-notification/1.json": "0882c2ab0e0a4b9df22fc3dad6b882e1ddd0fc3edf76b3e45306a6e935c6f653",
    "state-change/1.json": "57800ffe06ea0f33a2c5ea8e9f5ca21a8c5bb875da2dc8e81321c509e0a07f1e",
    "state-change/2.json": "8c98017d2d72b2741a67091a71f6ce367d13757bb6565c2164d1f4e2eda0b94e",
    "submission/1.json": "65fa6ad73c3de733bf49a06de631d2bbf22ac60a91de64d725ce9b6c22f46798",
    "submission/2.json": "cbfb7f9e6161e01bf28b38098e0ab379709d6c0a01ac788c08a864645ba6e9bf",
}


def test_released_versions_are_frozen() -> None:
    """Each schemas/<name>/<N>.json is byte for byte what was released, and listed."""
    on_disk = {str(p.relative_to(SCHEMAS)) for p in SCHEMAS.glob("*/*.json")}
    assert on_disk == set(RELEASED)
    for path, digest in RELEASED.items():
        assert hashlib.sha256((SCHEMAS / path).read_bytes()).hexdigest() == digest, path


@pytest.mark.parametrize("path", [*RELEASED, *(c.current for c in CONTRACTS)])
def test_every_schema_is_a_valid_json_schema(path: str) -> None:
    """Draft 2020-12, and self-contained: every $ref points inside the document (the
    embedded broker would otherwise accept everything, see pipeline.dev.embedded)."""
    document = schema_document(path)
    jsonschema.Draft202012Validator.check_schema(document)
    assert all(ref.startswith("#/") for ref in _refs(document))


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.name)
def test_schemas_are_named_by_absolute_uris(contract: Contract) -> None:
    """From version 2 the $id is the URI records carry: <base><name>/<N>.json."""
    assert released_schema(contract)["$id"] == contract.uri()
    assert schema_document(contract.current)["$id"] == contract.uri()
    assert contract.uri("https://schemas.example.it/pec/") == (
        f"https://schemas.example.it/pec/{contract.name}/{contract.version}.json"
    )
    for version in range(2, contract.version + 1):
        older = Contract(contract.name, version)
        assert released_schema(older)["$id"] == older.uri()


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.name)
def test_working_schemas_stay_compatible_with_their_release(contract: Contract) -> None:
    """The working copy differs from its released version only as the rule allows."""
    current = schema_document(contract.current)
    assert incompatibilities(released_schema(contract), current) == []


def test_the_widened_signature_enum_needed_a_new_version() -> None:
    """The check refuses the change that was once made to version 1 in place."""
    released = schema_document("state-change/1.json")
    widened = copy.deepcopy(released)
    signature = widened["properties"]["data"]["properties"]["signature"]
    signature["enum"] = ["valid-trusted", "invalid", "missing", None]
    found = incompatibilities(released, widened)
    assert len(found) == 1
    assert "signature.enum" in found[0]


def _state_change() -> dict[str, Any]:
    return schema_document(STATE_CHANGE.current)


def _add_optional(schema: dict[str, Any]) -> None:
    schema["properties"]["data"]["properties"]["archive_id"] = {"type": "string"}


def _add_required(schema: dict[str, Any]) -> None:
    _add_optional(schema)
    schema["properties"]["data"]["required"].append("archive_id")


def _close(schema: dict[str, Any]) -> None:
    schema["properties"]["data"]["additionalProperties"] = False


def _close_then_add(schema: dict[str, Any]) -> None:
    _close(schema)
    _add_optional(schema)


def _new_state(schema: dict[str, Any]) -> None:
    schema["$defs"]["state_or_null"]["enum"].insert(0, "returned")


def _retype(schema: dict[str, Any]) -> None:
    schema["properties"]["data"]["properties"]["latency_seconds"]["type"] = "string"


def _drop(schema: dict[str, Any]) -> None:
    del schema["properties"]["data"]["properties"]["reason"]


def _describe(schema: dict[str, Any]) -> None:
    schema["properties"]["data"]["properties"]["reason"]["description"] = "Why, in words."


@pytest.mark.parametrize(
    ("change", "compatible"),
    [
        (_add_optional, True),
        (_describe, True),
        (_add_required, False),
        (_close, False),
        (_close_then_add, False),
        (_new_state, False),
        (_retype, False),
        (_drop, False),
    ],
)
def test_the_rule_tells_compatible_from_incompatible_changes(change: Any, compatible: bool) -> None:
    """Annotations and optional fields in open objects keep the version; the rest not."""
    released = _state_change()
    changed = copy.deepcopy(released)
    change(changed)
    assert (incompatibilities(released, changed) == []) is compatible


def test_schema_base_must_be_an_absolute_uri_ending_in_a_slash() -> None:
    """A base that would not make absolute URIs is refused."""
    assert check_schema_base(DEFAULT_SCHEMA_BASE) == DEFAULT_SCHEMA_BASE
    for bad in ("pectrack.example/schemas/", "https://pectrack.example/schemas", "/schemas/"):
        with pytest.raises(ValueError, match="absolute URI"):
            check_schema_base(bad)


def test_the_package_carries_the_one_copy_of_the_schemas() -> None:
    """pipeline/schemas is the top-level schemas/ (a link), so they cannot diverge."""
    assert (Path(pipeline.__file__).parent / "schemas").resolve() == SCHEMAS


def test_the_wheel_ships_every_schema(tmp_path: Path) -> None:
    """A wheel built from the sources holds every schema and the AsyncAPI document."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for package in ("pipeline", "agents", "schemas"):
        shutil.copytree(ROOT / package, source / package, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("pectrack-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"pipeline/schemas/{path}" for path in RELEASED}
    expected |= {f"pipeline/schemas/{c.current}" for c in CONTRACTS}
    expected.add("pipeline/schemas/asyncapi.yaml")
    assert expected <= names


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_the_value_schema_follows_the_binding_mode() -> None:
    """Structured: the event's schema; binary: its data's, self-contained."""
    assert state_change_value_schema(Mode.STRUCTURED) == schema_document(STATE_CHANGE.current)
    data = state_change_value_schema(Mode.BINARY)
    jsonschema.Draft202012Validator.check_schema(data)
    assert all(ref.startswith("#/$defs/") for ref in _refs(data))
    validator = jsonschema.Draft202012Validator(data)
    event = schema_document(STATE_CHANGE.current)["properties"]["data"]
    assert set(data["required"]) == set(event["required"])
    assert not validator.is_valid({"key": "k"})
