"""The platform key that signs DSig and the audit log: a software key, as no TPM is here.

The paper has the TPM sign (HV, T). swtpm and tpm2-pytss are not installed on this machine,
so the key is an ES256 key in a 0600 PEM file (encrypted under the passphrase when one is
set: `crypto.at_rest`), and everything it signs says so: its label,
"software key (no TPM)", is inside every signed section and audit-log head. A TPM backend
would keep the same interface (sign, public key, label) with the private key in the TPM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.crypto import cose
from meterseal.crypto.at_rest import private_directory
from meterseal.crypto.keys import kid_of, public_bytes, read_private_key, write_private_key
from meterseal.crypto.signing import ES256
from meterseal.errors import KeyFileError
from meterseal.transparency.documents import CONTENT_TYPE_LABEL, sign_typed, signature_holds

SOFTWARE_KEY_LABEL = "software key (no TPM)"
PRIVATE_FILE = "platform.key.pem"
PUBLIC_FILE = "platform.pub.pem"
_SCHEME = ES256()


@dataclass(frozen=True)
class PlatformKey:
    """The key standing in for the TPM: ES256, private half optional (verifiers hold none)."""

    public: ec.EllipticCurvePublicKey
    private: ec.EllipticCurvePrivateKey | None = None
    label: str = SOFTWARE_KEY_LABEL

    @classmethod
    def generate(cls) -> PlatformKey:
        """A fresh software key (OS randomness)."""
        private = ec.generate_private_key(ec.SECP256R1())
        return cls(private.public_key(), private)

    @property
    def kid(self) -> bytes:
        """8-byte key id of the public key."""
        return kid_of(public_bytes(self.public))

    def sign(self, payload: bytes, content_type: str) -> bytes:
        """A COSE_Sign1 (ES256) over `payload` with its content type and kid protected."""
        if self.private is None:
            raise KeyFileError("this platform key has no private half: it can only verify")
        return sign_typed(payload, content_type, self.private, self.kid)

    def verifies(self, body: cose.Sign1, content_type: str) -> bool:
        """Whether `body` is an ES256 signature by this key over content of `content_type`."""
        if body.headers.get(CONTENT_TYPE_LABEL) != content_type:
            return False
        return signature_holds(body, self.public)

    def save(self, directory: Path, passphrase: bytes | None = None) -> tuple[Path, Path]:
        """Write the private (0600, encrypted with a passphrase) and public PEM to `directory`."""
        if self.private is None:
            raise KeyFileError("only a key with its private half can be saved")
        private_directory(directory)
        private, public = directory / PRIVATE_FILE, directory / PUBLIC_FILE
        write_private_key(private, self.private, passphrase)
        public.write_bytes(
            self.public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return private, public

    @classmethod
    def load(cls, directory: Path, passphrase: bytes | None = None) -> PlatformKey:
        """The key pair in `directory` (private file refused when others can read it)."""
        private = read_private_key(directory / PRIVATE_FILE, passphrase)
        if not isinstance(private, ec.EllipticCurvePrivateKey) or not _SCHEME.accepts(
            private.public_key()
        ):
            raise KeyFileError(f"{directory / PRIVATE_FILE} is not a P-256 key")
        return cls(private.public_key(), private)

    @classmethod
    def load_public(cls, path: Path) -> PlatformKey:
        """A verify-only key from a public PEM file (or a directory holding one)."""
        if path.is_dir():
            path = path / PUBLIC_FILE
        try:
            public = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"cannot read platform public key {path}: {exc}") from None
        if not isinstance(public, ec.EllipticCurvePublicKey) or not _SCHEME.accepts(public):
            raise KeyFileError(f"{path} is not a P-256 public key")
        return cls(public)
