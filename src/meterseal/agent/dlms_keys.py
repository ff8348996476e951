"""DLMS meters' secrets on disk, kept like the meters' signing keys: `dlms-keys.cbor`, 0600.

A DLMS meter authenticates its client with secrets of its own: the LLS password, or the
global unicast encryption and authentication keys of an HLS-GMAC association. The agent
needs each meter's secrets to associate, so the file holds them by serial number as
canonical CBOR, written through `crypto.at_rest`: mode 0600 from its first byte,
encrypted under `MS_PASSPHRASE` when it is set, refused when others can read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from meterseal.agent.dlms_driver import DlmsSecrets
from meterseal.crypto import at_rest, cose
from meterseal.crypto.cose import CoseFormatError
from meterseal.errors import KeyFileError

DLMS_KEYS = "dlms-keys.cbor"


def save_dlms_keys(
    path: Path, secrets: Mapping[str, DlmsSecrets], passphrase: bytes | None
) -> None:
    """Write every meter's DLMS secrets (serial -> secrets) to `path`."""
    content = cose.dumps({"format": 1, "meters": {s: _entry(v) for s, v in secrets.items()}})
    at_rest.write_secret_file(path, content, passphrase)


def load_dlms_keys(path: Path, passphrase: bytes | None) -> dict[str, DlmsSecrets]:
    """The DLMS secrets in `path` by serial number; KeyFileError if it is not such a file."""
    data = at_rest.read_secret_file(path, passphrase, "DLMS keys")
    try:
        item = cose.loads_strict(data)
        meters = item["meters"] if isinstance(item, cose.MAP_TYPES) else None
        if item.get("format") != 1 or not isinstance(meters, cose.MAP_TYPES):
            raise CoseFormatError("format 1 with meters")
        return {str(serial): _secrets(entry) for serial, entry in meters.items()}
    except (CoseFormatError, KeyError, TypeError, AttributeError) as exc:
        raise KeyFileError(f"{path} is not a DLMS key file: {exc}") from None


def _entry(secrets: DlmsSecrets) -> dict[str, bytes]:
    entry = {"lls": secrets.password}
    if secrets.encryption_key is not None and secrets.authentication_key is not None:
        entry |= {"ek": secrets.encryption_key, "ak": secrets.authentication_key}
    return entry


def _secrets(entry: Any) -> DlmsSecrets:
    if not isinstance(entry, cose.MAP_TYPES) or not set(entry) <= {"lls", "ek", "ak"}:
        raise CoseFormatError("a meter's entry holds lls and, for HLS-GMAC, ek and ak")
    ek, ak = entry.get("ek"), entry.get("ak")
    if (ek is None) != (ak is None):
        raise CoseFormatError("ek and ak go together")
    return DlmsSecrets(
        cose.expect_bytes(entry["lls"]),
        None if ek is None else cose.expect_bytes(ek, 16),
        None if ak is None else cose.expect_bytes(ak, 16),
    )
