"""Attestation: a quote binds a worker's measurement, a CAS nonce and the worker's ephemeral key.

Every backend binds the three through one 64-byte value (the size of TDX REPORTDATA and of
SEV-SNP REPORT_DATA):

    report_data = SHA-512(nonce || measurement || ephemeral public key)

with a 32-byte nonce, a 32-byte measurement and a 32-byte X25519 key, so the concatenation
is unambiguous. A quote is canonical CBOR: {"backend", "measurement", "nonce", "key",
"evidence"}; the evidence is the backend's proof that a platform vouched for report_data.

* `SimulatedAttester` / `SimulatedVerifier`: a *platform attestation key* (an Ed25519 key file
  in the deployment directory) signs report_data in a COSE_Sign1. Simulated: no hardware
  guarantee. Anyone who can read that key file can attest any measurement; it keeps the
  protocol and the separation of the stages honest, nothing more.
* `ConfigfsTsmAttester`: Linux configfs-tsm (TDX or SEV-SNP guests, kernel 6.7+) writes
  report_data to /sys/kernel/config/tsm/report/NAME/inblob and reads the signed hardware
  report from outblob. `ConfigfsTsmVerifier` cannot verify such a report here (no hardware,
  no vendor collateral); it refuses every quote and says what it would have checked
  (docs/trust.md). Neither is exercised by the tests beyond their refusals.

`Attester.quote(measurement, nonce, public_key)` gives quote bytes; `QuoteVerifier.verify`
gives an `AttestedQuote` or raises AttestationError naming the failed check.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from meterseal.crypto import cose
from meterseal.crypto.keys import kid_of, read_private_key, write_private_key
from meterseal.trust.errors import AttestationError
from meterseal.trust.measurement import DIGEST_BYTES, Measurement

SIMULATED = "simulated"
CONFIGFS_TSM = "configfs-tsm"
NO_HARDWARE = "simulated: no hardware guarantee"
NONCE_BYTES = 32
KEY_BYTES = 32  # raw X25519 public key
REPORT_DATA_BYTES = 64
MAX_QUOTE_BYTES = 64 * 1024  # a TDX quote with its certification data is ~5-10 KiB
PLATFORM_KEY = "platform-attestation.key.pem"
PLATFORM_PUBLIC = "platform-attestation.pub.pem"
TSM_REPORT_ROOT = Path("/sys/kernel/config/tsm/report")
_QUOTE_FIELDS = frozenset({"backend", "measurement", "nonce", "key", "evidence"})
_EDDSA = -8
_CONTENT_TYPE = 3
_SIMULATED_TYPE = "application/meterseal-simulated-quote"


def report_data(nonce: bytes, measurement: Measurement, public_key: bytes) -> bytes:
    """SHA-512(nonce || measurement || public key): what every backend's evidence vouches for."""
    if len(nonce) != NONCE_BYTES or len(public_key) != KEY_BYTES:
        raise AttestationError(
            f"a quote binds a {NONCE_BYTES}-byte nonce and a {KEY_BYTES}-byte key", "shape"
        )
    return hashlib.sha512(nonce + measurement.digest + public_key).digest()


@dataclass(frozen=True)
class AttestedQuote:
    """What a verified quote establishes: this measurement holds this key, for this nonce."""

    backend: str
    measurement: Measurement
    nonce: bytes
    public_key: bytes
    assurance: str  # e.g. NO_HARDWARE for the simulated backend


class Attester(Protocol):
    """Produces quotes on the worker's side."""

    @property
    def backend(self) -> str:
        """The backend name carried in the quote ("simulated", "configfs-tsm")."""
        ...

    def quote(self, measurement: Measurement, nonce: bytes, public_key: bytes) -> bytes:
        """A quote binding `measurement`, `nonce` and the worker's ephemeral `public_key`."""
        ...


class QuoteVerifier(Protocol):
    """Checks quotes on the CAS's side."""

    @property
    def backend(self) -> str:
        """The backend whose quotes this verifier checks."""
        ...

    def verify(self, quote: bytes) -> AttestedQuote:
        """The attested facts, or AttestationError naming the failed check."""
        ...


@dataclass(frozen=True)
class Quote:
    """A decoded (not yet verified) quote."""

    backend: str
    measurement: Measurement
    nonce: bytes
    public_key: bytes
    evidence: bytes

    def encode(self) -> bytes:
        """Canonical CBOR."""
        return cbor2.dumps(
            {
                "backend": self.backend,
                "measurement": self.measurement.digest,
                "nonce": self.nonce,
                "key": self.public_key,
                "evidence": self.evidence,
            },
            canonical=True,
        )

    @property
    def report_data(self) -> bytes:
        """The 64 bytes the evidence must vouch for."""
        return report_data(self.nonce, self.measurement, self.public_key)


def parse_quote(data: bytes) -> Quote:
    """Decode a quote strictly (AttestationError "format" if it is not one)."""
    if not isinstance(data, bytes) or len(data) > MAX_QUOTE_BYTES:
        raise AttestationError(f"a quote is at most {MAX_QUOTE_BYTES} bytes", "format")
    try:
        item = cose.loads_strict(data)
    except cose.CoseFormatError:
        raise AttestationError("the quote is not CBOR", "format") from None
    if not isinstance(item, cose.MAP_TYPES) or set(item) != _QUOTE_FIELDS:
        raise AttestationError(f"a quote is a map of {sorted(_QUOTE_FIELDS)}", "format")
    backend, digest, nonce, key, evidence = (
        item[k] for k in ("backend", "measurement", "nonce", "key", "evidence")
    )
    if not isinstance(backend, str) or not all(
        isinstance(v, bytes) for v in (digest, nonce, key, evidence)
    ):
        raise AttestationError("quote fields have the wrong types", "format")
    if len(digest) != DIGEST_BYTES or len(nonce) != NONCE_BYTES or len(key) != KEY_BYTES:
        raise AttestationError("quote fields have the wrong lengths", "format")
    return Quote(backend, Measurement(digest), nonce, key, evidence)


# -- simulated ---------------------------------------------------------------------------


def init_simulated_platform(directory: Path, passphrase: bytes | None = None) -> bool:
    """Create the simulated platform attestation key pair in `directory`; False if present."""
    if (directory / PLATFORM_KEY).exists():
        return False
    key = ed25519.Ed25519PrivateKey.generate()
    write_private_key(directory / PLATFORM_KEY, key, passphrase)
    (directory / PLATFORM_PUBLIC).write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return True


def _platform_kid(public: ed25519.Ed25519PublicKey) -> bytes:
    return kid_of(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


@dataclass(frozen=True)
class SimulatedAttester:
    """Signs quotes with the simulated platform key (simulated: no hardware guarantee)."""

    platform_key: ed25519.Ed25519PrivateKey = field(repr=False)
    backend: str = SIMULATED

    @classmethod
    def from_deployment(cls, directory: Path, passphrase: bytes | None = None) -> SimulatedAttester:
        """The attester of the simulated platform whose key is in `directory`."""
        key = read_private_key(directory / PLATFORM_KEY, passphrase)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise AttestationError(f"{directory / PLATFORM_KEY} is not an Ed25519 key", "platform")
        return cls(key)

    def quote(self, measurement: Measurement, nonce: bytes, public_key: bytes) -> bytes:
        """A quote whose evidence is a COSE_Sign1 over report_data by the platform key."""
        data = report_data(nonce, measurement, public_key)
        kid = _platform_kid(self.platform_key.public_key())
        protected = cose.dumps({cose.ALG: _EDDSA, _CONTENT_TYPE: _SIMULATED_TYPE, cose.KID: kid})
        signature = self.platform_key.sign(cose.sig_structure1(protected, data))
        evidence = cose.Sign1(protected, {}, {}, data, signature).encode()
        return Quote(SIMULATED, measurement, nonce, public_key, evidence).encode()

    def __repr__(self) -> str:
        kid = _platform_kid(self.platform_key.public_key()).hex()
        return f"SimulatedAttester(platform {kid}; {NO_HARDWARE})"


@dataclass(frozen=True)
class SimulatedVerifier:
    """Checks simulated quotes against the platform public key (no hardware guarantee)."""

    platform_public: ed25519.Ed25519PublicKey = field(repr=False)
    backend: str = SIMULATED

    @classmethod
    def from_deployment(cls, directory: Path) -> SimulatedVerifier:
        """The verifier for the simulated platform whose public key is in `directory`."""
        path = directory / PLATFORM_PUBLIC
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise AttestationError(
                f"cannot read the platform public key {path}: {exc} "
                "(run `meterseal cas init` first)",
                "platform",
            ) from exc
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise AttestationError(f"{path} is not an Ed25519 public key", "platform")
        return cls(key)

    def verify(self, quote: bytes) -> AttestedQuote:
        """The attested facts if the platform key signed this quote's report_data."""
        parsed = parse_quote(quote)
        if parsed.backend != SIMULATED:
            raise AttestationError(f"not a simulated quote ({parsed.backend!r})", "backend")
        try:
            body = cose.parse_sign1(parsed.evidence)
        except cose.CoseFormatError:
            raise AttestationError("the evidence is not a COSE_Sign1", "format") from None
        headers = body.headers
        if headers.get(cose.ALG) != _EDDSA or headers.get(_CONTENT_TYPE) != _SIMULATED_TYPE:
            raise AttestationError("the evidence is not a simulated platform quote", "format")
        if headers.get(cose.KID) != _platform_kid(self.platform_public):
            raise AttestationError("the quote was signed by another platform", "platform")
        if body.payload != parsed.report_data:
            raise AttestationError(
                "report data does not bind this measurement, nonce and key", "binding"
            )
        try:
            self.platform_public.verify(body.signature, body.to_be_signed())
        except InvalidSignature:
            raise AttestationError("the platform signature does not verify", "signature") from None
        return AttestedQuote(
            SIMULATED, parsed.measurement, parsed.nonce, parsed.public_key, NO_HARDWARE
        )

    def __repr__(self) -> str:
        kid = _platform_kid(self.platform_public).hex()
        return f"SimulatedVerifier(platform {kid}; {NO_HARDWARE})"


# -- configfs-tsm (TDX / SEV-SNP guests) ---------------------------------------------------

# What ConfigfsTsmVerifier would have to check before trusting an outblob (docs/trust.md).
TSM_CHECKS = (
    "the report's signature chains to the vendor root: TDX via the quoting enclave's PCK "
    "certificate chain to Intel's SGX root CA (DCAP collateral: PCK CRL, TCB info, QE "
    "identity); SEV-SNP via VCEK (or VLEK) to AMD's ASK and ARK",
    "the TCB level is current (no revoked microcode or firmware; TDX TCB status UpToDate)",
    "debug is off (TDX TD_ATTRIBUTES.DEBUG = 0; SNP guest policy DEBUG = 0)",
    "the launch measurement (TDX MRTD and RTMR0-3 replayed from the event log; SNP "
    "MEASUREMENT) equals the reference value of a guest image that runs only the measured "
    "meterseal stage and computes its measurement itself",
    "REPORTDATA (TDX) or REPORT_DATA (SNP) equals SHA-512(nonce || measurement || key)",
)


class ConfigfsTsmAttester:
    """Hardware quotes through Linux configfs-tsm; refuses clearly where it is absent."""

    backend = CONFIGFS_TSM

    def __init__(self, root: Path = TSM_REPORT_ROOT) -> None:
        self.root = root

    def quote(self, measurement: Measurement, nonce: bytes, public_key: bytes) -> bytes:
        """Write report_data to inblob, read the signed report from outblob."""
        if not self.root.is_dir():
            raise AttestationError(
                f"configfs-tsm is not available: {self.root} does not exist (this is not a "
                "TDX or SEV-SNP guest, or the kernel lacks CONFIG_TSM_REPORTS / configfs); "
                "use the simulated backend, which gives no hardware guarantee",
                "platform",
            )
        data = report_data(nonce, measurement, public_key)
        entry = self.root / f"meterseal-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            entry.mkdir()
            try:
                evidence = self._report(entry, data)
            finally:
                entry.rmdir()
        except OSError as exc:
            raise AttestationError(f"configfs-tsm report failed: {exc}", "platform") from exc
        return Quote(CONFIGFS_TSM, measurement, nonce, public_key, evidence).encode()

    @staticmethod
    def _report(entry: Path, data: bytes) -> bytes:
        before = int((entry / "generation").read_text())
        (entry / "inblob").write_bytes(data)
        outblob = (entry / "outblob").read_bytes()
        provider = (entry / "provider").read_text().strip()
        # Another writer on the same entry between our write and read bumps generation twice.
        if int((entry / "generation").read_text()) != before + 1:
            raise AttestationError("configfs-tsm report raced with another writer", "platform")
        aux = entry / "auxblob"
        auxblob = aux.read_bytes() if aux.exists() else b""
        return cbor2.dumps(
            {"provider": provider, "outblob": outblob, "auxblob": auxblob}, canonical=True
        )

    def __repr__(self) -> str:
        return f"ConfigfsTsmAttester({self.root})"


class ConfigfsTsmVerifier:
    """Refuses every configfs-tsm quote: verifying TDX / SEV-SNP reports is not built."""

    backend = CONFIGFS_TSM

    def verify(self, quote: bytes) -> AttestedQuote:
        """Always AttestationError("unsupported"), listing what a real verifier checks."""
        parsed = parse_quote(quote)
        provider = _provider(parsed.evidence)
        raise AttestationError(
            f"cannot verify a configfs-tsm quote (provider {provider}): this CAS has no TDX or "
            "SEV-SNP verifier; one would check: " + "; ".join(TSM_CHECKS),
            "unsupported",
        )


def _provider(evidence: bytes) -> str:
    try:
        item: Any = cose.loads_strict(evidence)
    except cose.CoseFormatError:
        return "unreadable"
    provider = item.get("provider") if isinstance(item, cose.MAP_TYPES) else None
    return provider if isinstance(provider, str) else "unknown"
