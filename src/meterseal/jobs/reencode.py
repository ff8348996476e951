"""The KVS policy re-encode job: every object of a bucket moved to a new policy, over Dask.

The secure KVS re-encodes one object at a time inside its trusted gateway (`PUT
/v1/policy/{bucket}/{key}`: read, decode, encode under the new policy, place, in the
gateway; the storage nodes only ever see ciphertext). The job lists the bucket's objects not
under the target policy yet, cuts them in chunks, and each Dask task asks the gateway to
re-encode its chunk's objects, so the Controller sets how many requests are in flight and the
Monitor shows progress against the deadline. Each worker reads the gateway's API key (write
rights on the bucket) from its own environment (`key_env`); the task carries only its name.

A re-encode is idempotent: a task first asks the object's policy (HEAD) and skips an object
already under the target, so a retried task or a resumed job re-encodes nothing twice. A
resumed job lists the bucket again and so takes only what is left.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from meterseal.errors import ConfigurationError, KvsError
from meterseal.kvs.gateway_client import GatewayClient, GatewayError
from meterseal.kvs.policy import parse_policy


@dataclass(frozen=True, slots=True)
class ReencodeSpec:
    """A re-encode job's input: the gateway, the bucket (and prefix) and the target policy."""

    gateway: str  # the KVS gateway's URL
    bucket: str
    policy: str  # rep:N, ec:K+M or hybrid:K+M
    prefix: str = ""
    key_env: str = "MS_KVS_KEY"  # the variable holding the API key, on every worker
    ca: str | None = None  # the CA certificate's path for an https gateway
    chunk: int = 20  # objects per task

    def target(self) -> str:
        """The policy as the gateway writes it (a ConfigurationError if it is not one)."""
        try:
            return str(parse_policy(self.policy))
        except KvsError as exc:
            raise ConfigurationError(str(exc)) from exc

    def client(self) -> GatewayClient:
        """A client of the gateway with the API key from this process's environment."""
        key = os.environ.get(self.key_env, "")
        if not key:
            raise ConfigurationError(f"set {self.key_env} to an API key with write rights")
        verify: ssl.SSLContext | bool = True
        if self.ca is not None:
            verify = ssl.create_default_context(cafile=self.ca)
        return GatewayClient(self.gateway, key, verify=verify)


def objects_to_reencode(spec: ReencodeSpec) -> list[str]:
    """The bucket's objects under `prefix` not under the target policy yet, in key order."""
    target = spec.target()
    with spec.client() as client:
        return [
            o["key"]
            for o in client.list_all(spec.bucket, spec.prefix, page=1000)
            if o["policy"] != target
        ]


def reencode_chunk(spec: ReencodeSpec, names: Sequence[str]) -> list[str]:
    """Re-encode `names` under the target policy through the gateway; those it re-encoded.

    A Dask task. An object already under the target (a retry) or gone since the listing
    (deleted) is skipped.
    """
    target = spec.target()
    done: list[str] = []
    with spec.client() as client:
        for name in names:
            try:
                if client.stat(spec.bucket, name).policy == target:
                    continue
                client.set_policy(spec.bucket, name, target)
            except GatewayError as exc:
                if exc.status == 404:
                    continue  # deleted after the listing: nothing to move
                raise
            done.append(name)
    return done
