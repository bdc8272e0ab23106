"""The signing scheme receivers implement; `verify_signature` is its reference."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from audit.webhooks import secret_generate, secret_masked, signature, verify_signature

SECRET = "whsec_test-secret"
BODY = b'{"event_id":"8f0c","type":"inventory.adjusted"}'
NOW = 1_790_000_000


def _hand_signed(secret: str, timestamp: int, body: bytes) -> str:
    # Written from the documented scheme, independently of audit.webhooks.
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def test_the_signature_is_hmac_sha256_of_timestamp_dot_raw_body():
    assert signature(SECRET, NOW, BODY) == _hand_signed(SECRET, NOW, BODY)
    assert verify_signature(SECRET, str(NOW), BODY, _hand_signed(SECRET, NOW, BODY), now=NOW + 10)
    assert verify_signature(SECRET, NOW, BODY.decode(), _hand_signed(SECRET, NOW, BODY), now=NOW)


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "header"),
    [
        ("whsec_other", NOW, BODY, _hand_signed(SECRET, NOW, BODY)),
        (SECRET, NOW, BODY + b" ", _hand_signed(SECRET, NOW, BODY)),
        (SECRET, NOW + 1, BODY, _hand_signed(SECRET, NOW, BODY)),
        (SECRET, NOW, BODY, _hand_signed(SECRET, NOW, BODY).removeprefix("sha256=")),
        (SECRET, NOW, BODY, "sha1=" + _hand_signed(SECRET, NOW, BODY).removeprefix("sha256=")),
        (SECRET, "yesterday", BODY, _hand_signed(SECRET, NOW, BODY)),
        (SECRET, NOW, BODY, ""),
    ],
    ids=["wrong-secret", "altered-body", "altered-timestamp", "no-prefix", "other-algorithm", "bad-timestamp", "empty"],
)
def test_verify_signature_refuses_anything_else(secret, timestamp, body, header):
    assert not verify_signature(secret, timestamp, body, header, now=NOW)


def test_verify_signature_refuses_stale_timestamps_unless_told_not_to_check():
    header = _hand_signed(SECRET, NOW, BODY)

    assert not verify_signature(SECRET, NOW, BODY, header, now=NOW + 301)
    assert not verify_signature(SECRET, NOW, BODY, header, now=NOW - 301)
    assert verify_signature(SECRET, NOW, BODY, header, now=NOW + 86_400, tolerance_seconds=None)


def test_secrets_are_random_and_masked_beyond_use():
    first, second = secret_generate(), secret_generate()

    assert first != second
    assert len(first) > 40
    assert secret_masked(first) == f"whsec_…{first[-4:]}"
    assert first[6:-4] not in secret_masked(first)
