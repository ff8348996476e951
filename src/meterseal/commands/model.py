"""Signed meter commands and their signed results (sans-IO): what the head-end asks a meter to do.

A `Command` names one meter, one action (connect or disconnect the load, set the clock, read
on demand), a per-meter counter that only grows, and when it was issued and expires. The
head-end's trusted side signs it with the operator command key as a typed document (COSE_Sign1
whose protected header names the content type and the key id), so a signed command never
passes for a bill or a tree head. The agent beside the meter answers with a `Result`, signed
with the meter's own key under its suite's scheme, that binds the command's digest: the
metrology authority and the customer can check both halves without trusting the head-end.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature

from meterseal.crypto import cose
from meterseal.crypto.cose import CoseFormatError
from meterseal.crypto.signing import SignatureScheme, SigningKey, VerifyingKey
from meterseal.errors import MetersealError
from meterseal.transparency.documents import CONTENT_TYPE_LABEL, sign_typed

COMMAND_TYPE = "application/meterseal-command+cbor"
RESULT_TYPE = "application/meterseal-command-result+cbor"
MAX_TEXT = 128  # meter ids and reasons: bounded, they come from peers


class CommandFormatError(MetersealError):
    """Bytes that should be a command or a result are not one."""


class Action(enum.StrEnum):
    """What a command asks the meter to do."""

    CONNECT = "connect"  # close the supply relay
    DISCONNECT = "disconnect"  # open the supply relay
    SET_CLOCK = "set-clock"  # set the meter's clock to `argument` (Unix seconds)
    READ = "read"  # read the energy registers now


class Outcome(enum.StrEnum):
    """How a command ended at the meter."""

    DONE = "done"
    REFUSED = "refused"  # the agent's verifier refused it; the reason says why
    FAILED = "failed"  # accepted, but the meter did not carry it out


@dataclass(frozen=True, slots=True)
class Command:
    """One command for one meter: action, counter, issue and expiry times (Unix seconds)."""

    meter_id: str
    action: Action
    counter: int
    issued_at: int
    expires_at: int
    argument: int | None = None  # the clock value of set-clock, None otherwise
    by: str = ""  # who sent it (the account's name), "" if nobody said

    @property
    def id(self) -> str:
        """The command's id: meter id and counter, unique because counters only grow."""
        return f"{self.meter_id}#{self.counter}"


@dataclass(frozen=True, slots=True)
class Result:
    """What the agent answered for a command (digest of the signed command it answers)."""

    command_digest: bytes
    meter_id: str
    counter: int
    outcome: Outcome
    reason: str
    at: int
    values: tuple[tuple[str, int], ...] = ()  # e.g. ("1.0.1.8.0", Wh) of a read on demand


def digest(signed: bytes) -> bytes:
    """SHA-256 of a signed command: what a result binds."""
    return hashlib.sha256(signed).digest()


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
        raise CommandFormatError(f"{what} is not text of 1 to {MAX_TEXT} characters")
    return value


def _int(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise CommandFormatError(f"{what} is not a non-negative integer")
    return value


def encode_command(command: Command) -> bytes:
    """The canonical CBOR payload of `command`."""
    item: dict[str, Any] = {
        "meter": command.meter_id,
        "action": command.action.value,
        "counter": command.counter,
        "issued_at": command.issued_at,
        "expires_at": command.expires_at,
    }
    if command.argument is not None:
        item["argument"] = command.argument
    if command.by:
        item["by"] = command.by
    return cose.dumps(item)


def decode_command(payload: bytes) -> Command:
    """The command in `payload`; CommandFormatError unless it is exactly one."""
    try:
        item = cose.loads_strict(payload)
    except CoseFormatError as exc:
        raise CommandFormatError(f"not a command: {exc}") from None
    required = {"meter", "action", "counter", "issued_at", "expires_at"}
    optional = {"argument", "by"}
    if not isinstance(item, cose.MAP_TYPES) or not required <= set(item) <= required | optional:
        raise CommandFormatError("a command has meter, action, counter, issued_at, expires_at")
    try:
        action = Action(item["action"])
    except ValueError:
        raise CommandFormatError(f"unknown action {item['action']!r}") from None
    argument = item.get("argument")
    if (action is Action.SET_CLOCK) != (argument is not None):
        raise CommandFormatError("set-clock, and only set-clock, carries an argument")
    return Command(
        _text(item["meter"], "the meter id"),
        action,
        _int(item["counter"], "the counter"),
        _int(item["issued_at"], "issued_at"),
        _int(item["expires_at"], "expires_at"),
        None if argument is None else _int(argument, "the argument"),
        _text(item["by"], "the sender") if "by" in item else "",
    )


def sign_command(command: Command, key: SigningKey, kid: bytes, scheme: SignatureScheme) -> bytes:
    """`command` signed by the operator command key (`kid` names it to verifiers)."""
    return sign_typed(encode_command(command), COMMAND_TYPE, key, kid, scheme)


def encode_result(result: Result) -> bytes:
    """The canonical CBOR payload of `result`."""
    return cose.dumps(
        {
            "command": result.command_digest,
            "meter": result.meter_id,
            "counter": result.counter,
            "outcome": result.outcome.value,
            "reason": result.reason,
            "at": result.at,
            "values": [list(pair) for pair in result.values],
        }
    )


def decode_result(payload: bytes) -> Result:
    """The result in `payload`; CommandFormatError unless it is exactly one."""
    try:
        item = cose.loads_strict(payload)
    except CoseFormatError as exc:
        raise CommandFormatError(f"not a command result: {exc}") from None
    fields = {"command", "meter", "counter", "outcome", "reason", "at", "values"}
    if not isinstance(item, cose.MAP_TYPES) or set(item) != fields:
        raise CommandFormatError(f"a command result has {', '.join(sorted(fields))}")
    try:
        outcome = Outcome(item["outcome"])
        values = tuple((_text(k, "a value's name"), int(v)) for k, v in item["values"])
        command_digest = cose.expect_bytes(item["command"], 32)
    except (ValueError, TypeError, CoseFormatError):
        raise CommandFormatError("a command result's outcome, values or digest") from None
    reason = item["reason"]
    if not isinstance(reason, str) or len(reason) > MAX_TEXT:
        raise CommandFormatError("a command result's reason is short text")
    return Result(
        command_digest,
        _text(item["meter"], "the meter id"),
        _int(item["counter"], "the counter"),
        outcome,
        reason,
        _int(item["at"], "at"),
        values,
    )


def sign_result(result: Result, key: SigningKey, kid: bytes, scheme: SignatureScheme) -> bytes:
    """`result` signed by the meter's key under its suite's scheme."""
    return sign_typed(encode_result(result), RESULT_TYPE, key, kid, scheme)


@dataclass(frozen=True, slots=True)
class Opened:
    """A signed document read but not yet verified: its body and its payload decoded."""

    body: cose.Sign1
    kid: bytes | None


def open_typed(signed: bytes, content_type: str) -> Opened:
    """The COSE_Sign1 of `content_type` in `signed`, unverified; CommandFormatError if not."""
    try:
        body = cose.parse_sign1(signed)
    except CoseFormatError as exc:
        raise CommandFormatError(f"not a signed document: {exc}") from None
    if body.headers.get(CONTENT_TYPE_LABEL) != content_type:
        raise CommandFormatError(f"not a {content_type}")
    kid = body.headers.get(cose.KID)
    return Opened(body, kid if isinstance(kid, bytes) else None)


def signature_valid(body: cose.Sign1, scheme: SignatureScheme, key: VerifyingKey) -> bool:
    """Whether `body` is signed by `key` under `scheme` (and its header says that scheme)."""
    if body.headers.get(cose.ALG) != scheme.cose_alg or not scheme.accepts(key):
        return False
    try:
        scheme.verify(key, body.signature, body.to_be_signed())
    except (InvalidSignature, ValueError):
        return False
    return True
