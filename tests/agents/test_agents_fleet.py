"""Agent fleet: secrets read at login (templated paths, rotation), shard from the pod
ordinal, and the reload plan (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.config import MailboxConfig, parse_config
from agents.fleet import resolve_shard, shard_from_ordinal
from agents.reload import plan_reload, restart_needed
from agents.secrets import SecretRef, SecretUnavailableError
from agents.shard import Shard

BASE = {"kafka": {"bootstrap": "k:9092"}}


def fleet_doc(*ids: str, **defaults: object) -> dict[str, object]:
    return {
        **BASE,
        "mailbox_defaults": {"host": "h", "password_file": "pec/{id}", **defaults},
        "mailbox": [{"id": box_id, "user": f"{box_id}@pec.it"} for box_id in ids],
    }


def test_templated_password_file_names_each_mailbox(tmp_path: Path) -> None:
    """``{id}`` in [mailbox_defaults] password_file becomes each mailbox's id."""
    config = parse_config(fleet_doc("comune-x", "studio.y"), {}, base_dir=tmp_path)
    refs = [box.password for box in config.mailboxes]
    assert refs == [
        SecretRef(file=tmp_path / "pec" / "comune-x"),
        SecretRef(file=tmp_path / "pec" / "studio.y"),
    ]


def test_config_loads_without_any_secret_and_each_is_read_at_reveal(tmp_path: Path) -> None:
    """No secret is read when the config loads; a missing one fails at reveal, by name."""
    config = parse_config(fleet_doc("a", "b"), {}, base_dir=tmp_path)
    (tmp_path / "pec").mkdir()
    (tmp_path / "pec" / "a").write_text("first\n")
    a, b = (box.password for box in config.mailboxes)
    assert a.reveal() == "first"
    with pytest.raises(SecretUnavailableError, match=r"pec/b.*No such file") as caught:
        b.reveal()
    assert "first" not in str(caught.value)


def test_a_rotated_password_file_is_read_again(tmp_path: Path) -> None:
    """The file is read at each reveal (each login): rotation needs no restart."""
    secret = tmp_path / "pw"
    ref = SecretRef(file=secret)
    secret.write_text("old")
    assert ref.reveal() == "old"
    secret.write_text("new\n")
    assert ref.reveal() == "new"
    secret.write_text("")
    with pytest.raises(SecretUnavailableError, match="empty"):
        ref.reveal()


def test_secret_references_never_show_a_value(tmp_path: Path) -> None:
    ref = SecretRef(env="PW", environ={"PW": "hunter2"})
    assert ref.reveal() == "hunter2"
    assert "hunter2" not in repr(ref) + str(ref)
    assert SecretRef(env="PW", environ={}) == ref  # the reference, not the value


@pytest.mark.parametrize(
    ("host", "count", "shard"),
    [
        ("pectrack-agent-0", 4, Shard(1, 4)),
        ("pectrack-agent-3", 4, Shard(4, 4)),
        ("agent-12.pectrack-agent.pec.svc.cluster.local", 16, Shard(13, 16)),
    ],
)
def test_shard_from_statefulset_ordinal(host: str, count: int, shard: Shard) -> None:
    assert shard_from_ordinal(host, count) == shard


@pytest.mark.parametrize(
    ("host", "count", "message"),
    [
        ("laptop", 4, "does not end in -<ordinal>"),
        ("pectrack-agent-4", 4, "ordinal 4 is outside 4 shards"),
    ],
)
def test_shard_from_a_bad_ordinal_is_refused(host: str, count: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        shard_from_ordinal(host, count)


def test_resolve_shard_from_flag_environment_and_host_name() -> None:
    env = {"PECTRACK_SHARD_COUNT": "8", "HOSTNAME": "pectrack-agent-5"}
    assert resolve_shard("auto", env) == Shard(6, 8)
    assert resolve_shard("auto/3", {"HOSTNAME": "a-2"}) == Shard(3, 3)
    assert resolve_shard(None, {**env, "PECTRACK_SHARD": "auto"}) == Shard(6, 8)
    assert resolve_shard(None, {"PECTRACK_SHARD": "2/5"}) == Shard(2, 5)
    assert resolve_shard("1/2", {"PECTRACK_SHARD": "2/5"}) == Shard(1, 2)  # the flag wins
    assert resolve_shard(None, {}) == Shard()
    with pytest.raises(ValueError, match="PECTRACK_SHARD_COUNT"):
        resolve_shard("auto", {"HOSTNAME": "a-0"})


def _boxes(*ids: str, host: str = "h") -> tuple[MailboxConfig, ...]:
    return parse_config(fleet_doc(*ids, host=host), {}).mailboxes


def test_reload_plan_adds_removes_changes_and_keeps() -> None:
    running = {box.id: box for box in _boxes("a", "b", "c", "d")}
    (changed,) = _boxes("c", host="other")
    wanted = (*_boxes("a", "b"), changed, *_boxes("e"))
    plan = plan_reload(running, wanted)
    assert [b.id for b in plan.added] == ["e"]
    assert plan.removed == ("d",)
    assert plan.changed == (changed,)
    assert plan.kept == 2


def test_reload_plan_of_the_same_config_is_empty() -> None:
    running = {box.id: box for box in _boxes("a", "b")}
    plan = plan_reload(running, _boxes("a", "b"))
    assert (plan.added, plan.removed, plan.changed, plan.kept) == ((), (), (), 2)


def test_kafka_and_limits_changes_are_named_for_a_restart() -> None:
    old = parse_config(fleet_doc("a"), {})
    new = parse_config({**fleet_doc("a"), "kafka": {"bootstrap": "other:9092"}}, {})
    assert restart_needed(old, new) == ["kafka"]
    assert restart_needed(old, old) == []
