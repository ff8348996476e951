"""What the router keeps across restarts: customers' consent and the last epoch per level.

Members are admitted again after a restart (their links and keys were in the old process's
memory, and a fresh attestation is what admission is for), but a customer's consent is the
customer's decision and must survive, and no group-key epoch may be issued twice. The state
is canonical CBOR sealed with AES-256-GCM under the router's state key (from the CAS in
trusted mode, so a new router version allowed that key reads it; a file otherwise), written
atomically after every change. Sans-IO except `load_sealed` / `store_sealed`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meterseal.crypto.at_rest import write_private_file
from meterseal.dissemination.levels import PrivacyLevel
from meterseal.errors import ConfigurationError

FORMAT: Final = "meterseal-router-state/1"
_AAD: Final = FORMAT.encode()
_NONCE: Final = 12
Rng = Callable[[int], bytes]


class StateError(ConfigurationError):
    """The router's state file is unreadable with this key, or not a state."""


@dataclass
class RouterState:
    """Consent per customer (pseudonym -> apps) and the last epoch issued per level."""

    consent: dict[bytes, set[str]] = field(default_factory=dict)
    epochs: dict[PrivacyLevel, int] = field(default_factory=dict)

    def encode(self) -> bytes:
        """Canonical CBOR of the state."""
        consent = {c: sorted(apps) for c, apps in self.consent.items() if apps}
        epochs = {int(level): epoch for level, epoch in self.epochs.items()}
        return bytes(cbor2.dumps([FORMAT, consent, epochs], canonical=True))

    @classmethod
    def decode(cls, data: bytes) -> RouterState:
        """The state in `data`; StateError if it is not one."""
        try:
            form, consent, epochs = cbor2.loads(data)
            state = cls(
                {bytes(c): {str(a) for a in apps} for c, apps in consent.items()},
                {PrivacyLevel(int(lv)): int(e) for lv, e in epochs.items()},
            )
        except (cbor2.CBORDecodeError, ValueError, TypeError, AttributeError) as exc:
            raise StateError("the router state is not a state") from exc
        if form != FORMAT:
            raise StateError(f"the router state is not {FORMAT}")
        return state


def seal_state(state: RouterState, key: bytes, rng: Rng) -> bytes:
    """The sealed state: nonce, then AES-256-GCM of its CBOR."""
    nonce = rng(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, state.encode(), _AAD)


def open_state(sealed: bytes, key: bytes) -> RouterState:
    """The state in `sealed`; StateError if this key did not seal it."""
    try:
        plaintext = AESGCM(key).decrypt(sealed[:_NONCE], sealed[_NONCE:], _AAD)
    except (InvalidTag, ValueError) as exc:
        raise StateError("the router state does not open with this state key") from exc
    return RouterState.decode(plaintext)


def store_sealed(path: Path, sealed: bytes) -> None:
    """Write `sealed` to `path` atomically (0600)."""
    write_private_file(path, sealed)


def load_sealed(path: Path) -> bytes | None:
    """The sealed state at `path`, or None if there is none yet."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read the router state {path}: {exc.strerror}") from exc
