"""The node scenario's `keys`, `upgrade` and `comeback` parts, offline: which key made a Fernet
token (how the `keys` part tells a rotation re-encrypted a row), what the parts need and change
before the node starts, and their place in the scenario (docs/e2e.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from e2e.node import images, part_comeback, part_keys, part_upgrade
from e2e.node.scenario import PARTS


def key(seed: str) -> str:
    """A Fernet key: 32 bytes, URL-safe base64 with padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(seed.encode()).digest()).decode()


def token(fernet_key: str, body: bytes = b"ciphertext block") -> str:
    """A token laid out as Fernet makes one: version 0x80, time, IV, ciphertext, then the
    HMAC-SHA256 of all that under the key's first 16 bytes."""
    signed = b"\x80" + (1765000000).to_bytes(8, "big") + os.urandom(16) + body
    signing = base64.urlsafe_b64decode(fernet_key)[:16]
    return base64.urlsafe_b64encode(signed + hmac.new(signing, signed, hashlib.sha256).digest()).decode()


class TestWhichKeyMadeAToken:
    def test_the_key_that_signed_it_is_found_among_several(self):
        old, new = key("generation 1"), key("generation 2")
        assert part_keys.signed_by(token(old), [new, old]) == 1
        assert part_keys.signed_by(token(new), [new, old]) == 0

    def test_a_token_of_another_key_is_made_by_none(self):
        assert part_keys.signed_by(token(key("elsewhere")), [key("generation 1")]) is None

    def test_a_plain_value_or_a_tampered_token_is_no_token(self):
        good = token(key("generation 1"))
        tampered = base64.urlsafe_b64encode(b"\x80" + base64.urlsafe_b64decode(good)[1:-1] + b"\x00").decode()
        assert part_keys.signed_by("hello from a Variable", [key("generation 1")]) is None
        assert part_keys.signed_by(tampered, [key("generation 1")]) is None

    def test_the_stored_password_is_no_secret_and_never_the_printed_digest(self):
        assert part_keys.PASSWORD not in part_keys.expected_line()
        assert hashlib.sha256(part_keys.PASSWORD.encode()).hexdigest()[:12] in part_keys.expected_line()


class TestThePartsOnTheNode:
    def test_keys_then_upgrade_then_comeback_and_after_it_only_the_git_switch(self):
        """upgrade reads what keys stored, comeback checks both kept; git, which leaves the stack on
        a bundle whose server stops with the node, is the only part after the comeback."""
        names = [p.name for p in PARTS]
        assert names.index("keys") < names.index("upgrade") < names.index("comeback")
        assert names[names.index("comeback") + 1 :] == ["git"]

    def test_the_upgrade_starts_from_3_2_0_and_changes_nothing_else(self):
        cfg = {"airflow-k8s:airflow": {"namespace": "airflow"}, "airflow-k8s:logs": {"mode": "hostPath"}}
        out = part_upgrade.PART.stack(cfg) if part_upgrade.PART.stack else cfg
        assert out == {
            "airflow-k8s:airflow": {"namespace": "airflow", "version": "3.2.0"},
            "airflow-k8s:logs": {"mode": "hostPath"},
        }
        assert cfg["airflow-k8s:airflow"] == {"namespace": "airflow"}  # a copy out, the input untouched

    def test_the_upgrades_image_is_built_before_the_node_starts_and_a_recipe_builds_it(self):
        assert part_upgrade.PART.images == ("apache/airflow:3.2.1",)
        assert images.unbuildable(part_upgrade.PART.images) == []

    def test_keys_and_comeback_need_no_image_or_stack_change_of_their_own(self):
        for part in (part_keys.PART, part_comeback.PART):
            assert part.images == () and part.stack is None
