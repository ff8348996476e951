"""CascaDB's OrderedKv through the KVS gateway's REST API, with a bucket-scoped API key.

The paper's layout: CascaDB is a client of the secure KVS, which keeps the keys and seals the
objects; CascaDB holds only an API key with read and write rights on its bucket. Names, order
and the intent object of a batch are those of `kvs_adapter`: an object's name is its key in
lowercase hex, a batch of several keys is stored whole as `~batch` first, applied, removed,
and finished by `recover()` after a crash.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import cbor2

from meterseal.cascadb.errors import OperationalError
from meterseal.cascadb.kv import Write
from meterseal.cascadb.names import INTENT, PAGE, common_prefix, name_of
from meterseal.kvs.gateway_client import GatewayClient, GatewayError

FETCHERS = 8  # concurrent GETs of a scan or of get_many


class GatewayOrderedKv:
    """An OrderedKv over one bucket of a KVS gateway."""

    def __init__(self, client: GatewayClient, bucket: str) -> None:
        self.client = client
        self.bucket = bucket
        self._pool = ThreadPoolExecutor(FETCHERS, thread_name_prefix="cascadb-gateway")
        self.recover()

    def close(self) -> None:
        """Stop the fetching threads (the client is the caller's)."""
        self._pool.shutdown()

    def _read(self, name: str) -> bytes | None:
        try:
            return self.client.read(self.bucket, name)
        except GatewayError as exc:
            if exc.status == 404:
                return None
            raise OperationalError(f"the KVS gateway failed: {exc}") from exc

    def _call(self, method: str, *args: object) -> None:
        try:
            getattr(self.client, method)(self.bucket, *args)
        except GatewayError as exc:
            if not (method == "delete" and exc.status == 404):
                raise OperationalError(f"the KVS gateway failed: {exc}") from exc

    def get(self, key: bytes) -> bytes | None:
        """The value of `key`, None when absent."""
        return self._read(name_of(key))

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The values of `keys`, fetched concurrently."""
        return list(self._pool.map(self._read, [name_of(k) for k in keys]))

    def put(self, key: bytes, value: bytes) -> None:
        """Store `value` under `key`."""
        self._call("put", name_of(key), value)

    def delete(self, key: bytes) -> None:
        """Remove `key`."""
        self._call("delete", name_of(key))

    def scan(self, start: bytes, end: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) for start <= key < end, in key order."""
        low, high = start.hex(), end.hex() if end is not None else INTENT
        names: list[str] = []
        after = ""
        while True:
            try:
                page = self.client.list_page(self.bucket, common_prefix(low, high), after, PAGE)
            except GatewayError as exc:
                raise OperationalError(f"the KVS gateway failed: {exc}") from exc
            names += [o["key"] for o in page["objects"] if low <= o["key"] < high]
            after = page["next_after"] or ""
            if not after or after >= high:
                break
        values = self._pool.map(self._read, names)
        found = [(bytes.fromhex(n), v) for n, v in zip(names, values, strict=True) if v is not None]
        return iter(found)

    def write(self, batch: Sequence[Write]) -> None:
        """Apply `batch` all or nothing: the intent object first, then the writes."""
        writes = [(name_of(k), v) for k, v in batch]
        if len(writes) > 1:
            self._call("put", INTENT, cbor2.dumps(writes))
        self._apply(writes)
        if len(writes) > 1:
            self._call("delete", INTENT)

    def _apply(self, writes: list[tuple[str, bytes | None]]) -> None:
        for name, value in writes:
            if value is None:
                self._call("delete", name)
            else:
                self._call("put", name, value)

    def recover(self) -> bool:
        """Finish a batch that a crash interrupted; whether there was one."""
        pending = self._read(INTENT)
        if pending is None:
            return False
        self._apply([(str(n), v) for n, v in cbor2.loads(pending)])
        self._call("delete", INTENT)
        return True
