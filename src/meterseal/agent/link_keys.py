"""Key files of sealed NBR 14522 links: each party's private keys and public keys, by name.

In a directory, for a party NAME (the reader's id or a meter's serial number):
NAME.sign.pem and NAME.decrypt.pem hold its private keys (0600, encrypted at rest with a
passphrase, as every meterseal key file), NAME.sign.pub.pem and NAME.decrypt.pub.pem the
public keys the other end needs. In the field each side holds its own private keys and the
other's public keys only; `meterseal agent emulate --sealed` writes both sides into one
directory because it plays every meter.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.agent.nbr_sealed import Party, Peer, new_party
from meterseal.crypto.keys import read_private_key, write_private_key
from meterseal.errors import KeyFileError


def write_party(directory: Path, party: Party, passphrase: bytes | None = None) -> None:
    """Write `party`'s private and public keys into `directory`."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for role, key in (("sign", party.signing), ("decrypt", party.decryption)):
        write_private_key(directory / f"{party.name}.{role}.pem", key, passphrase)
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        (directory / f"{party.name}.{role}.pub.pem").write_bytes(public)


def read_party(directory: Path, name: str, passphrase: bytes | None = None) -> Party:
    """The party `name` with its private keys (KeyFileError if missing or of the wrong kind)."""
    signing = read_private_key(directory / f"{name}.sign.pem", passphrase)
    decryption = read_private_key(directory / f"{name}.decrypt.pem", passphrase)
    if not isinstance(signing, ec.EllipticCurvePrivateKey) or not isinstance(
        decryption, ec.EllipticCurvePrivateKey
    ):
        raise KeyFileError(f"{directory}: {name}'s link keys are not P-256 keys")
    return Party(name, signing, decryption)


def read_peer(directory: Path, name: str) -> Peer:
    """The public side of party `name`."""
    keys = []
    for role in ("sign", "decrypt"):
        path = directory / f"{name}.{role}.pub.pem"
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"{path}: no public link key of {name}") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise KeyFileError(f"{path}: not a P-256 key")
        keys.append(key)
    return Peer(name, keys[0], keys[1])


def party(directory: Path, name: str, passphrase: bytes | None = None) -> Party:
    """Party `name` from `directory`, made and written there first if it has no keys yet."""
    if not (directory / f"{name}.sign.pem").exists():
        write_party(directory, new_party(name), passphrase)
    return read_party(directory, name, passphrase)
