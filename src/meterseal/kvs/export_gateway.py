"""The exported objects through a KVS gateway: an `ObjectMap` over a gateway client.

The platform's jobs are clients of the gateway like any other (HTTPS, their own scoped API
key): the exporter needs write access to the `originals` bucket, the audit and the fraud job
read access only. The gateway seals and unseals; the client sees plaintext objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from meterseal.errors import MetersealError
from meterseal.kvs.export_objects import ObjectMap

BUCKET = "originals"
NOT_FOUND = 404


class ObjectClient(Protocol):
    """What this map uses of `kvs.gateway_client.GatewayClient`."""

    def put(self, bucket: str, key: str, source: bytes, policy: str | None = None) -> Any:
        """Store `source` as `key`."""
        ...

    def read(self, bucket: str, key: str) -> bytes:
        """The object's bytes; an error with `status` 404 when absent."""
        ...

    def list_all(self, bucket: str, prefix: str = "") -> Iterator[dict[str, Any]]:
        """Every object under `prefix` in key order (dicts with its `key`)."""
        ...


class GatewayObjects(ObjectMap):
    """Whole objects of one bucket, through a gateway client with the caller's API key."""

    def __init__(
        self, client: ObjectClient, bucket: str = BUCKET, policy: str | None = None
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.policy = policy

    def put(self, name: str, data: bytes) -> None:
        """Store `data` as `name` under the map's policy (None: the bucket's)."""
        self.client.put(self.bucket, name, data, self.policy)

    def get(self, name: str) -> bytes | None:
        """The object `name`, None when the gateway says it has none."""
        try:
            return self.client.read(self.bucket, name)
        except MetersealError as exc:
            if getattr(exc, "status", 0) == NOT_FOUND:
                return None
            raise

    def names(self, prefix: str) -> list[str]:
        """The names starting with `prefix`, in order."""
        return [str(entry["key"]) for entry in self.client.list_all(self.bucket, prefix)]
