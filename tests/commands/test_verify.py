"""The agent's verifier refuses each kind of bad command with one reason, counted."""

from __future__ import annotations

import dataclasses

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from meterseal.commands.keys import SCHEME
from meterseal.commands.model import (
    RESULT_TYPE,
    Action,
    Command,
    Outcome,
    decode_command,
    decode_result,
    encode_command,
    open_typed,
    sign_command,
)
from meterseal.commands.verify import CLOCK_SKEW, CommandRefused, Refusal
from meterseal.crypto import cose
from meterseal.crypto.keys import kid_of, public_bytes
from meterseal.transparency.documents import sign_typed
from tests.commands.conftest import NOW, World


def _command(counter: int = 1, meter: str = "M1", **changes: int) -> Command:
    command = Command(meter, Action.DISCONNECT, counter, NOW, NOW + 900)
    return dataclasses.replace(command, **changes)  # type: ignore[arg-type]


def _signed(world: World, command: Command) -> bytes:
    return sign_command(command, world.key.private_key, world.key.kid, SCHEME)


def _refusal(world: World, signed: bytes, now: int = NOW) -> Refusal:
    with pytest.raises(CommandRefused) as caught:
        world.verifier.check(signed, now)
    return caught.value.reason


def test_a_good_command_is_accepted_once_and_raises_the_counter(world: World) -> None:
    signed = _signed(world, _command(5))
    assert world.verifier.check(signed, NOW).counter == 5
    assert world.verifier.last_counters["M1"] == 5
    assert _refusal(world, signed) is Refusal.REPLAYED
    assert _refusal(world, _signed(world, _command(4))) is Refusal.REPLAYED
    assert world.verifier.check(_signed(world, _command(6)), NOW).counter == 6
    assert world.verifier.counts == {"accepted": 2, "replayed": 2}


def test_expired_and_not_yet_valid(world: World) -> None:
    signed = _signed(world, _command())
    assert _refusal(world, signed, now=NOW + 901) is Refusal.EXPIRED
    ahead = _command(issued_at=NOW + CLOCK_SKEW + 1, expires_at=NOW + 9000)
    assert _refusal(world, _signed(world, ahead)) is Refusal.NOT_YET_VALID
    # A refused command does not move the counter: the same one is accepted in time.
    assert world.verifier.check(signed, NOW + 900).counter == 1


def test_a_command_for_another_meter_is_foreign(world: World) -> None:
    assert _refusal(world, _signed(world, _command(meter="M9"))) is Refusal.FOREIGN


def test_an_unknown_signer_and_a_bad_signature(world: World) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    kid = kid_of(public_bytes(other.public_key()))
    assert _refusal(world, sign_command(_command(), other, kid, SCHEME)) is Refusal.UNKNOWN_SIGNER
    # Another key under the trusted key's id: the signature does not verify.
    forged = sign_command(_command(), other, world.key.kid, SCHEME)
    assert _refusal(world, forged) is Refusal.BAD_SIGNATURE
    # The trusted key's signature, with the payload changed afterwards.
    body = cose.parse_sign1(_signed(world, _command()))
    changed = dataclasses.replace(body, payload=encode_command(_command(meter="M2")))
    assert _refusal(world, changed.encode()) is Refusal.BAD_SIGNATURE


def test_unsigned_commands(world: World) -> None:
    assert _refusal(world, encode_command(_command())) is Refusal.UNSIGNED
    body = cose.parse_sign1(_signed(world, _command()))
    assert _refusal(world, dataclasses.replace(body, signature=b"").encode()) is Refusal.UNSIGNED


def test_malformed_and_wrong_type(world: World) -> None:
    assert _refusal(world, b"\x00garbage") is Refusal.MALFORMED
    assert _refusal(world, cbor2.dumps({"meter": "M1"})) is Refusal.MALFORMED
    # Signed by the trusted key, but as another kind of document: never a command.
    other = sign_typed(encode_command(_command()), "application/other", world.key.private_key,
                       world.key.kid, SCHEME)  # fmt: skip
    assert _refusal(world, other) is Refusal.MALFORMED
    assert world.verifier.counts == {"malformed": 3}


def test_the_agent_signs_a_refusal_only_for_its_own_meters(world: World) -> None:
    ours = world.answerer.admit(
        _signed(
            world,
            _command(),
        ),
        NOW + 10_000,
    )
    assert ours.command is None
    assert ours.refusal is Refusal.EXPIRED
    assert ours.result is not None
    result = decode_result(open_typed(ours.result, RESULT_TYPE).body.payload)
    assert (result.outcome, result.reason, result.counter) == (Outcome.REFUSED, "expired", 1)
    foreign = world.answerer.admit(_signed(world, _command(meter="M9")), NOW)
    assert foreign.refusal is Refusal.FOREIGN
    assert foreign.result is None
    accepted = world.answerer.admit(_signed(world, _command(2)), NOW)
    assert accepted.command is not None
    assert accepted.refusal is None


@given(
    meter=st.text(min_size=1, max_size=20),
    action=st.sampled_from(list(Action)),
    counter=st.integers(0, 2**63),
    issued=st.integers(0, 2**40),
    by=st.text(max_size=20),
)
def test_commands_round_trip(
    meter: str, action: Action, counter: int, issued: int, by: str
) -> None:
    argument = issued if action is Action.SET_CLOCK else None
    command = Command(meter, action, counter, issued, issued + 900, argument, by)
    assert decode_command(encode_command(command)) == command
