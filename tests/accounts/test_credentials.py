"""Passwords, tokens, API keys and the throttle on their own: what they accept and refuse."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jwt
import pytest

from meterseal.accounts.credentials import (
    TOKEN_KEY_FILE,
    UNSAFE_FAST_HASHING,
    TokenSigner,
    ensure_token_key,
    hash_password,
    new_api_key,
    password_matches,
    split_api_key,
    token_key,
)
from meterseal.accounts.model import AccountError, Role, check_account, parse_roles
from meterseal.accounts.throttle import Throttle, ThrottleLimits
from meterseal.errors import ConfigurationError, KeyFileError
from tests.accounts.people import T0

KEY = b"k" * 32


def test_a_password_hash_is_argon2id_and_matches_only_its_password() -> None:
    hashed = hash_password("s3cret-enough", UNSAFE_FAST_HASHING)
    assert hashed.startswith("$argon2id$")
    assert password_matches(hashed, "s3cret-enough")
    assert not password_matches(hashed, "s3cret-enougH")
    assert not password_matches("not a hash", "s3cret-enough")
    assert not password_matches(None, "s3cret-enough")  # a missing account never matches


def test_the_default_password_hashing_is_argon2id_rfc_9106() -> None:
    hashed = hash_password("s3cret-enough")
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_a_token_names_its_account_until_it_expires() -> None:
    signer = TokenSigner(KEY, ttl=900)
    token = signer.issue("alice", T0)
    assert signer.subject(token, T0) == "alice"
    assert signer.subject(token, T0 + 899) == "alice"
    assert signer.subject(token, T0 + 900) is None  # expired


def _reencode(token: str, **changes: object) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims.update(changes)
    raw = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{raw}.{signature}"


def test_tampered_forged_and_unsigned_tokens_are_refused() -> None:
    signer = TokenSigner(KEY)
    token = signer.issue("alice", T0)
    assert signer.subject(_reencode(token, sub="bob"), T0) is None
    assert signer.subject(_reencode(token, exp=T0 + 10**6), T0 + 1000) is None
    assert signer.subject(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], T0) is None
    other = TokenSigner(b"o" * 32).issue("alice", T0)
    assert signer.subject(other, T0) is None
    claims = {"iss": "meterseal", "sub": "alice", "iat": int(T0), "exp": int(T0 + 60)}
    unsigned = jwt.encode(claims, "", algorithm="none")  # "": no key, as "none" wants
    assert signer.subject(unsigned, T0) is None
    assert signer.subject("not a token", T0) is None
    assert signer.subject(jwt.encode(claims | {"iss": "x"}, KEY, algorithm="HS256"), T0) is None


def test_an_api_key_is_shown_once_and_stored_as_a_digest() -> None:
    made = new_api_key()
    assert made.key.startswith(f"msk_{made.key_id}_")
    assert made.key.encode() not in made.digest
    assert split_api_key(made.key) == (made.key_id, made.digest)
    assert split_api_key(made.key + "x")[1] != made.digest  # type: ignore[index]
    assert split_api_key("msk_short_x") is None
    assert split_api_key("eyJhbGciOi.x.y") is None


def test_the_token_key_is_made_once_private_and_encrypted_with_a_passphrase(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigurationError, match="no deployment directory"):
        ensure_token_key(tmp_path / "d", b"pass")
    (tmp_path / "d").mkdir(mode=0o700)
    assert ensure_token_key(tmp_path / "d", b"pass") is True
    first = token_key(tmp_path / "d", b"pass")
    assert len(first) == 32
    assert ensure_token_key(tmp_path / "d", b"pass") is False  # kept, never replaced
    assert token_key(tmp_path / "d", b"pass") == first
    assert (tmp_path / "d" / TOKEN_KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert first not in (tmp_path / "d" / TOKEN_KEY_FILE).read_bytes()
    with pytest.raises(KeyFileError):
        token_key(tmp_path / "d", None)


def test_a_server_never_makes_the_token_key_its_replicas_share(tmp_path: Path) -> None:
    # Replicas that each made their own key would refuse each other's tokens.
    with pytest.raises(ConfigurationError, match=r"no token key .*auth-token\.key.*keys shared"):
        token_key(tmp_path, None)
    assert not (tmp_path / TOKEN_KEY_FILE).exists()


def test_accounts_are_checked_before_they_are_stored() -> None:
    check_account("alice", frozenset({Role.AUDITOR}), None)
    check_account("c1", frozenset({Role.CUSTOMER}), "CUST-1")
    with pytest.raises(AccountError):
        check_account("c1", frozenset({Role.CUSTOMER}), None)  # a customer needs an id
    with pytest.raises(AccountError):
        check_account("a1", frozenset({Role.AUDITOR}), "CUST-1")
    with pytest.raises(AccountError):
        check_account("c1", frozenset({Role.CUSTOMER, Role.AUDITOR}), "CUST-1")
    with pytest.raises(AccountError):
        check_account("bad name", frozenset({Role.AUDITOR}), None)
    with pytest.raises(AccountError):
        check_account("nobody", frozenset(), None)
    assert parse_roles(["Auditor", "operator"]) == {Role.AUDITOR, Role.OPERATOR}
    with pytest.raises(ConfigurationError, match="roles are customer, auditor"):
        parse_roles(["root"])


def test_failures_back_off_exponentially_and_success_clears_the_account_only() -> None:
    throttle = Throttle(ThrottleLimits(free_failures=3, base_delay=2.0, max_delay=16.0))
    keys = ["source:10.0.0.1", "account:alice"]
    for _ in range(3):
        assert throttle.retry_after(keys, T0) == 0
        throttle.failed(keys, T0)
    assert throttle.retry_after(keys, T0) == 2.0  # the fourth try waits
    throttle.failed(keys, T0)
    assert throttle.retry_after(keys, T0) == 4.0
    for _ in range(5):
        throttle.failed(keys, T0)
    assert throttle.retry_after(keys, T0) == 16.0  # capped
    assert throttle.retry_after(keys, T0 + 16) == 0
    throttle.succeeded("account:alice")
    assert throttle.retry_after(["account:alice"], T0) == 0
    assert throttle.retry_after(["source:10.0.0.1"], T0) == 16.0  # the source still waits


def test_requests_spend_a_bucket_that_refills() -> None:
    throttle = Throttle(ThrottleLimits(request_burst=3, request_rate=1.0))
    assert [throttle.spend("account:a", T0) for _ in range(4)] == [True, True, True, False]
    assert throttle.spend("account:b", T0)  # others are not affected
    assert throttle.spend("account:a", T0 + 1)


def test_the_throttle_forgets_the_least_recent_keys_beyond_its_size() -> None:
    throttle = Throttle(ThrottleLimits(free_failures=0, tracked=2))
    for key in ("a", "b", "c"):
        throttle.failed([key], T0)
    assert throttle.retry_after(["a"], T0) == 0  # forgotten
    assert throttle.retry_after(["c"], T0) > 0
