"""Provision the CAS for trusted dissemination: the router's and the aggregator's secrets and
one policy rule each, for this checkout's measurements (what `meterseal router provision`
does; `cas secrets import --name … --file …` and `cas policy add` do the same by hand).

The group-key roots and the state key are created once and then left alone: re-running
keeps them (a new root is `cas secrets rotate group-key/LEVEL --random 32`). The other
secrets (signing, operator and public keys, the aggregation policy) get a new version only
when their value changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from meterseal.dissemination.aggregator import AggregationPolicy
from meterseal.dissemination.groupkeys import KEY_LENGTH
from meterseal.dissemination.service import (
    AGGREGATOR_POLICY,
    AGGREGATOR_SECRETS,
    AGGREGATOR_STAGE,
    AUTHORITY_KEY,
    AUTHORITY_PUBLIC,
    GROUP_KEYS,
    OPERATOR_KEY,
    ROUTER_SECRETS,
    ROUTER_STAGE,
    STATE_KEY,
    Allow,
    default_allow,
    encode_policy,
    router_config,
)
from meterseal.trust.cas import Cas
from meterseal.trust.measurement import Measurement, stage_measurement

Rng = Callable[[int], bytes]
CREATED_ONCE = (*GROUP_KEYS, STATE_KEY)


@dataclass(frozen=True)
class Provisioned:
    """The measurements allowed and each secret's version in the CAS."""

    router: Measurement
    aggregator: Measurement
    versions: dict[str, int]
    allow: tuple[Allow, ...]


def _put(cas: Cas, name: str, value: bytes) -> int:
    """Store `value` as `name` unless it is the latest version already; the version."""
    latest = cas.state.latest_secret(name)
    if latest is not None and cas.vault.open(name, latest.version, latest.sealed) == value:
        return latest.version
    return cas.put_secret(name, value)


def provision_dissemination(
    cas: Cas,
    *,
    signing_key: ed25519.Ed25519PrivateKey,
    operator_key: bytes,
    policy: AggregationPolicy,
    allow: Iterable[Allow] = (),
    rng: Rng,
) -> Provisioned:
    """Secrets for the router and the aggregator, and a rule allowing each its own."""
    admitted = (*default_allow(), *allow)
    versions: dict[str, int] = {}
    for name in CREATED_ONCE:
        latest = cas.state.latest_secret(name)
        versions[name] = latest.version if latest else cas.put_secret(name, rng(KEY_LENGTH))
    public = signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    values = {
        AUTHORITY_KEY: signing_key.private_bytes_raw(),
        OPERATOR_KEY: operator_key,
        AUTHORITY_PUBLIC: public,
        AGGREGATOR_POLICY: encode_policy(policy),
    }
    for name, value in values.items():
        versions[name] = _put(cas, name, value)
    router = stage_measurement(ROUTER_STAGE, router_config(admitted))
    aggregator = stage_measurement(AGGREGATOR_STAGE)
    cas.allow(ROUTER_STAGE, router, ROUTER_SECRETS)
    cas.allow(AGGREGATOR_STAGE, aggregator, AGGREGATOR_SECRETS)
    return Provisioned(router, aggregator, versions, admitted)
