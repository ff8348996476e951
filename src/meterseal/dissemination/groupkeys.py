"""Group keys: one master key per privacy level and epoch; per-customer HIGH keys derived.

A HIGH payload is sealed with HKDF(master, customer pseudonym, customer epoch), so an app a
customer consented to gets only that customer's derived key, while an aggregator holding
the master derives every customer's. Revoking one app's consent bumps that customer's epoch;
removing a level-wide member bumps the level's epoch. Either way the removed party holds no
key for anything sealed afterwards.

In a deployment the CAS holds one *root* per level ("group-key/high", …), released only to
the router's attested measurement, and the epoch masters are derived from it:
master(level, epoch) = HKDF(root, level, epoch), with the epoch = (the root's CAS version
<< 48) | a counter. The counter starts at the router's clock in milliseconds (or past the
last one it recorded, whichever is later) and grows by one per rotation, so no epoch is
ever issued twice for a root, not across restarts either; the root's holder can re-derive
any epoch's master, and a member holding one epoch's master learns nothing of the next.
`cas secrets rotate group-key/LEVEL` gives a new root (version n + 1) from the next start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from meterseal.dissemination.errors import CannotDecrypt, Reason
from meterseal.dissemination.levels import PrivacyLevel
from meterseal.dissemination.publication import NONCE_LENGTH

Rng = Callable[[int], bytes]
KEY_LENGTH: Final = 32
KEPT_EPOCHS: Final = 2  # the current epoch and the one before, for publications in flight
_HIGH = int(PrivacyLevel.HIGH)
_LABEL = b"meterseal dissemination customer key v1\x00"
_LEVEL_LABEL = b"meterseal dissemination level key v1\x00"
COUNTER_BITS: Final = 48  # an epoch's low bits count rotations; the high bits, the CAS version
_MAX_VERSION: Final = 2 ** (63 - COUNTER_BITS) - 1
# (level, epoch, customer, customer epoch); customer is b"" and cepoch 0 for level-wide keys.
KeyId = tuple[int, int, bytes, int]


def derive_customer_key(master: bytes, customer: bytes, cepoch: int) -> bytes:
    """The HIGH key of one customer at one customer epoch, from the level's master key."""
    info = _LABEL + len(customer).to_bytes(1, "big") + customer + cepoch.to_bytes(8, "big")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_LENGTH, salt=None, info=info)
    return hkdf.derive(master)


def derive_level_key(root: bytes, level: PrivacyLevel, epoch: int) -> bytes:
    """The master of `level` at `epoch`, from the level's root (the CAS's group key)."""
    info = _LEVEL_LABEL + int(level).to_bytes(1, "big") + epoch.to_bytes(8, "big")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_LENGTH, salt=None, info=info)
    return hkdf.derive(root)


def epoch_of(version: int, counter: int) -> int:
    """The epoch numbering `counter` under the root of CAS version `version`."""
    if not 0 < version <= _MAX_VERSION or not 0 <= counter < 2**COUNTER_BITS:
        raise ValueError(f"no epoch for version {version}, counter {counter}")
    return (version << COUNTER_BITS) | counter


def key_id(fields: list[Any]) -> KeyId:
    """The key a validated header array names."""
    if fields[1] == _HIGH:
        return (_HIGH, fields[10], fields[7], fields[11])
    return (fields[1], fields[10], b"", 0)


@dataclass
class Keyring:
    """The publisher's (the utility's) keys: current master per level and customer epochs.

    With `roots` (from the CAS) a level's masters are derived from its root; without, each
    master is fresh randomness (the embedded default).
    """

    rng: Rng
    masters: dict[PrivacyLevel, tuple[int, bytes]] = field(default_factory=dict)
    customer_epochs: dict[bytes, int] = field(default_factory=dict)
    roots: dict[PrivacyLevel, bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for level in PrivacyLevel:
            if level not in self.masters:
                self.masters[level] = (1, self._fresh(level, 1))

    def _fresh(self, level: PrivacyLevel, epoch: int) -> bytes:
        root = self.roots.get(level)
        return self.rng(KEY_LENGTH) if root is None else derive_level_key(root, level, epoch)

    def epochs(self) -> dict[PrivacyLevel, int]:
        """The current epoch of every level (what a router records to never reuse one)."""
        return {level: epoch for level, (epoch, _) in self.masters.items()}

    def master(self, level: PrivacyLevel) -> tuple[int, bytes]:
        """(epoch, key) of `level` now."""
        return self.masters[level]

    def rotate(self, level: PrivacyLevel) -> int:
        """A fresh master for `level`; its new epoch."""
        epoch = self.masters[level][0] + 1
        self.masters[level] = (epoch, self._fresh(level, epoch))
        return epoch

    def cepoch(self, customer: bytes) -> int:
        """The customer's current key epoch (0 until first rotated)."""
        return self.customer_epochs.get(customer, 0)

    def rotate_customer(self, customer: bytes) -> int:
        """Bump `customer`'s epoch; the new one."""
        self.customer_epochs[customer] = self.cepoch(customer) + 1
        return self.customer_epochs[customer]

    def customer_key(self, customer: bytes) -> tuple[int, int, bytes]:
        """(epoch, customer epoch, key) of `customer`'s HIGH data now."""
        epoch, master = self.masters[PrivacyLevel.HIGH]
        cepoch = self.cepoch(customer)
        return epoch, cepoch, derive_customer_key(master, customer, cepoch)


def cas_secret_name(level: PrivacyLevel) -> str:
    """The CAS's name for a level's group key ("group-key/high", …; see trust.material)."""
    return f"group-key/{level.name.lower()}"


def group_key_secrets(rng: Rng) -> dict[str, bytes]:
    """Fresh group keys for the CAS to hold, by secret name."""
    return {cas_secret_name(level): rng(KEY_LENGTH) for level in PrivacyLevel}


def keyring_from_secrets(
    secrets: Mapping[str, bytes],
    rng: Rng,
    *,
    versions: Mapping[str, int] | None = None,
    counter: int = 1,
    after: Mapping[PrivacyLevel, int] | None = None,
) -> Keyring:
    """The publisher's keyring with each level's masters derived from the CAS's root.

    The first epoch is `epoch_of(version, counter)`, or one past `after[level]` (the last
    epoch a previous run recorded) if that is later. CannotDecrypt(NO_KEY) names a missing
    or malformed root: the publisher must not start with keys of its own making when the
    deployment's are meant to come from the CAS.
    """
    roots, masters = {}, {}
    for level in PrivacyLevel:
        name = cas_secret_name(level)
        root = secrets.get(name)
        if type(root) is not bytes or len(root) != KEY_LENGTH:
            raise CannotDecrypt(Reason.NO_KEY, f"the CAS released no {name}")
        epoch = max(
            epoch_of((versions or {}).get(name, 1), counter), (after or {}).get(level, 0) + 1
        )
        roots[level] = root
        masters[level] = (epoch, derive_level_key(root, level, epoch))
    return Keyring(rng, masters, roots=roots)


class KeyStore:
    """A member's keys: level masters, customer keys and customer epochs; opens and seals."""

    def __init__(self) -> None:
        self._masters: dict[tuple[int, int], bytes] = {}
        self._customer: dict[KeyId, bytes] = {}
        self._cepochs: dict[bytes, int] = {}
        self._aead: dict[KeyId, AESGCM] = {}
        self._newest: dict[int, int] = {}

    # -- installing (from verified handouts only) ------------------------------------------

    def install_master(self, level: int, epoch: int, key: bytes) -> None:
        """Hold `level`'s master of `epoch`, dropping epochs older than KEPT_EPOCHS."""
        self._masters[(level, epoch)] = key
        self._newest.pop(level, None)
        old = sorted(e for lv, e in self._masters if lv == level)[:-KEPT_EPOCHS]
        for stale in old:
            del self._masters[(level, stale)]
        self._aead = {k: v for k, v in self._aead.items() if (k[0], k[1]) not in _pairs(old, level)}

    def install_customer(self, epoch: int, customer: bytes, cepoch: int, key: bytes) -> None:
        """Hold one customer's HIGH key, dropping that customer's older keys beyond KEPT."""
        self._customer[(_HIGH, epoch, customer, cepoch)] = key
        mine = sorted(k for k in self._customer if k[2] == customer)
        for stale in mine[:-KEPT_EPOCHS]:
            del self._customer[stale]
            self._aead.pop(stale, None)

    def install_cepoch(self, customer: bytes, cepoch: int) -> None:
        """Learn a customer's current epoch (a HIGH publisher seals under it)."""
        self._cepochs[customer] = max(cepoch, self._cepochs.get(customer, 0))

    def newest_epoch(self, level: int) -> int | None:
        """The newest master epoch held for `level`, if any."""
        newest = self._newest.get(level)
        if newest is None:
            newest = max((e for lv, e in self._masters if lv == level), default=None)
            if newest is not None:
                self._newest[level] = newest
        return newest

    def held(self) -> set[KeyId]:
        """Every key held, by id (customer keys and level masters)."""
        return set(self._customer) | {(lv, e, b"", 0) for lv, e in self._masters}

    # -- using ----------------------------------------------------------------------------

    def aead(self, ident: KeyId) -> AESGCM:
        """The cipher for key `ident`; CannotDecrypt(NO_KEY) if it is not held or derivable."""
        cipher = self._aead.get(ident)
        if cipher is None:
            cipher = self._aead[ident] = AESGCM(self._key(ident))
        return cipher

    def _key(self, ident: KeyId) -> bytes:
        level, epoch, customer, cepoch = ident
        if level == _HIGH:
            master = self._masters.get((level, epoch))
            if master is not None:
                return derive_customer_key(master, customer, cepoch)
            key = self._customer.get(ident)
        else:
            key = self._masters.get((level, epoch))
        if key is None:
            raise CannotDecrypt(Reason.NO_KEY, f"no key for level {level} epoch {epoch}")
        return key

    def open(self, fields: list[Any], header: bytes, sealed: bytes) -> bytes:
        """The plaintext payload of a publication whose header array is `fields`."""
        cipher = self.aead(key_id(fields))
        try:
            plaintext: bytes = cipher.decrypt(sealed[:NONCE_LENGTH], sealed[NONCE_LENGTH:], header)
        except InvalidTag as exc:
            raise CannotDecrypt(Reason.DECRYPT_FAILED, "payload does not authenticate") from exc
        return plaintext

    def sealing_id(self, level: PrivacyLevel, customer: bytes) -> KeyId:
        """The key a publisher seals `level` data (of `customer`, for HIGH) under now."""
        epoch = self._newest.get(level)
        if epoch is None:
            epoch = self.newest_epoch(int(level))
        if level == _HIGH:
            if epoch is not None:
                return (_HIGH, epoch, customer, self._cepochs.get(customer, 0))
            # Holding only this customer's key (a consented app): the router decides, not us.
            held = sorted(k for k in self._customer if k[2] == customer)
            if not held:
                raise CannotDecrypt(Reason.NO_KEY, "no HIGH key to publish with")
            return held[-1]
        if epoch is None:
            raise CannotDecrypt(Reason.NO_KEY, f"no key to publish level {level.name}")
        return (int(level), epoch, b"", 0)


def _pairs(epochs: list[int], level: int) -> set[tuple[int, int]]:
    return {(level, e) for e in epochs}
