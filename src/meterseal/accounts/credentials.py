"""Credentials: argon2id password hashes, signed short-lived tokens, API keys (sans-IO).

Passwords are hashed with argon2id (argon2-cffi's RFC 9106 low-memory profile). Tokens are
JWTs (PyJWT, HS256) naming the account and expiring after `TOKEN_TTL`, signed with the
deployment's token key (`auth-token.key`, 32 random bytes, encrypted at rest with the
passphrase); they carry no roles: the account's current roles are read per request, so
disabling an account ends its tokens at once. An API key is `msk_<id>_<secret>`: the id is
public (it names the key in lists and logs), only the SHA-256 of the 256-bit secret is
stored, and the whole key is shown once.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import jwt
from argon2 import Parameters, PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

# The token key's file, where the servers have always found it (accounts.token_key).
from meterseal.accounts.token_key import TOKEN_KEY_FILE as TOKEN_KEY_FILE
from meterseal.accounts.token_key import ensure_token_key as ensure_token_key
from meterseal.accounts.token_key import token_key as token_key

TOKEN_TTL = 900.0  # seconds a login token stays valid
ISSUER = "meterseal"
API_KEY_PREFIX = "msk_"
_ALGORITHM = "HS256"
PASSWORD_HASHING = RFC_9106_LOW_MEMORY  # argon2id, t=3, 64 MiB: ~0.1-0.4 s a hash
# Cheap enough to make many accounts in tests; never for a real password.
UNSAFE_FAST_HASHING = Parameters(
    type=Type.ID, version=19, salt_len=16, hash_len=32, time_cost=1, memory_cost=8, parallelism=1
)


def hash_password(password: str, parameters: Parameters = PASSWORD_HASHING) -> str:
    """The argon2id hash (PHC string) of `password`."""
    return PasswordHasher.from_parameters(parameters).hash(password)


@functools.cache
def _dummy_hash() -> str:
    # Verified when the account does not exist, so a missing account costs the same time.
    return hash_password(secrets.token_urlsafe(16))


def password_matches(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; as slow for a missing account (None) as for a real one."""
    try:
        # The hash names its own parameters; the hasher's own only matter for hashing.
        matched = PasswordHasher().verify(password_hash or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return matched and password_hash is not None


@dataclass(frozen=True)
class NewApiKey:
    """A freshly made API key: `key` is shown once, only `digest` is stored."""

    key_id: str
    key: str
    digest: bytes


def new_api_key() -> NewApiKey:
    """A random API key: 64-bit public id, 256-bit secret."""
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    return NewApiKey(key_id, f"{API_KEY_PREFIX}{key_id}_{secret}", _digest(secret))


def _digest(secret: str) -> bytes:
    # A 256-bit random secret needs no slow hash: nobody can guess it, only steal the table.
    return hashlib.sha256(secret.encode()).digest()


def split_api_key(key: str) -> tuple[str, bytes] | None:
    """(key id, digest of the secret) of a presented key, None if it is not shaped like one."""
    if not key.startswith(API_KEY_PREFIX):
        return None
    key_id, underscore, secret = key[len(API_KEY_PREFIX) :].partition("_")
    if not underscore or len(key_id) != 16 or not secret or len(secret) > 64:
        return None
    return key_id, _digest(secret)


def digests_match(stored: bytes, presented: bytes) -> bool:
    """Constant-time comparison of two secret digests."""
    return hmac.compare_digest(stored, presented)


@dataclass(frozen=True)
class TokenClaims:
    """What a valid login token says: its account, its id (jti) and when it expires."""

    subject: str
    token_id: str
    expires: int


class TokenSigner:
    """Issues and checks login tokens with one deployment key."""

    def __init__(self, key: bytes, ttl: float = TOKEN_TTL) -> None:
        if len(key) < 32:
            raise ValueError("a token key has at least 32 bytes")
        self._key = key
        self.ttl = ttl

    def issue(self, username: str, now: float) -> str:
        """A token for `username`, valid from `now` for `ttl` seconds."""
        claims = {
            "iss": ISSUER,
            "sub": username,
            "iat": int(now),
            "exp": int(now + self.ttl),
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM)

    def subject(self, token: str, now: float) -> str | None:
        """The account a valid, unexpired token names; None for anything else."""
        claims = self.claims(token, now)
        return None if claims is None else claims.subject

    def claims(self, token: str, now: float) -> TokenClaims | None:
        """Whom a valid, unexpired token names, its id and expiry; None for anything else."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],  # never what the token's header asks for
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss"], "verify_exp": False},
            )
        except jwt.PyJWTError:
            return None
        # Expiry checked here against the injected clock, not PyJWT's wall clock.
        expires, subject, token_id = claims.get("exp"), claims.get("sub"), claims.get("jti")
        if not isinstance(expires, int) or now >= expires or not isinstance(subject, str):
            return None
        if not isinstance(token_id, str) or not 0 < len(token_id) <= 64:
            return None  # every token issued here has one: it is what sign-out revokes
        return TokenClaims(subject, token_id, expires)
