"""What the KVS client commands share: the gateway client with the API key from a variable.

`meterseal kvs put|get|…` (cli_kvs.py) and `meterseal kvs export`, `audit --from-kvs`
(cli_kvs_export.py) open the gateway the same way: the key from an environment variable
(never a flag: other users of the machine can read a process's arguments), an https gateway
verified against the deployment's CA (or `--ca FILE`).
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from meterseal.errors import ConfigurationError

if TYPE_CHECKING:
    from meterseal.kvs.gateway_client import GatewayClient

DEFAULT_GATEWAY = "http://127.0.0.1:7470"
KEY_ENV = "MS_KVS_KEY"  # the variable holding the API key


def gateway_verify(url: str, ca: Path | None, deployment: Path) -> ssl.SSLContext | bool:
    """TLS verification for an https gateway: its CA (the deployment's by default)."""
    if not url.startswith("https:"):
        return True
    from cryptography import x509

    from meterseal.deployment import load_ca_certificate
    from meterseal.runtime.tls import client_context

    if ca is None:
        return client_context(load_ca_certificate(deployment))
    return client_context(x509.load_pem_x509_certificate(ca.read_bytes()))


@contextlib.contextmanager
def gateway_client(
    gateway: str | None, key_env: str, ca: Path | None, deployment: Path, needed: str = ""
) -> Iterator[GatewayClient]:
    """A client of the gateway (DEFAULT_GATEWAY when None) with the key in `key_env`;
    `needed` says which key, in the refusal when the variable is unset."""
    from meterseal.kvs.gateway_client import GatewayClient

    key = os.environ.get(key_env, "")
    if not key:
        raise ConfigurationError(
            f"set {key_env} to an API key of the KVS gateway{needed} (`meterseal kvs keys add`)"
        )
    url = gateway or DEFAULT_GATEWAY
    with GatewayClient(url, key, verify=gateway_verify(url, ca, deployment)) as client:
        yield client
