"""The fraud job's input from the secure KVS: the months `meterseal kvs export` wrote.

`fraud rank --from-kvs` reads the fleet's signed readings from the exported customer months
through the KVS gateway instead of the relational store; this is the same read for the
Manager's fraud job (`RankSpec.kvs`), so its ranking equals `fraud rank --from-kvs`'s, and the
store's when the export is complete. Months never exported read as none; the job's record
then names them in its error, as `fraud rank` warns.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl

from meterseal.errors import ConfigurationError
from meterseal.fraud.data import Consumption, FraudDataError
from meterseal.jobs.fraud import RankSpec, read_fleet
from meterseal.kvs.export_gateway import BUCKET, GatewayObjects
from meterseal.kvs.export_read import KvsOriginals, read_consumption
from meterseal.kvs.gateway_client import GatewayClient


def read_fleet_from_kvs(spec: RankSpec) -> Consumption:
    """The fleet's readings from the KVS export at `spec.kvs` (read_store's reading)."""
    if spec.kvs is None:
        raise ConfigurationError("the fraud job names no KVS gateway")
    key = os.environ.get(spec.kvs_key_env, "")
    if not key:
        raise ConfigurationError(
            f"set {spec.kvs_key_env} to an API key of the KVS gateway for bucket {BUCKET!r}"
        )
    verify: ssl.SSLContext | bool = True
    if spec.kvs_ca is not None:
        verify = ssl.create_default_context(cafile=spec.kvs_ca)
    with GatewayClient(spec.kvs, key, verify=verify) as client:
        reader = KvsOriginals(GatewayObjects(client, BUCKET))
        try:
            return read_consumption(
                reader, dt.date.fromisoformat(spec.first_day), spec.days, tz=spec.tz
            )
        except FraudDataError as exc:
            if reader.absent_months:
                months = ", ".join(sorted(reader.absent_months))
                raise FraudDataError(f"{exc} (the KVS has no export of {months})") from exc
            raise


def fleet_reader(spec: RankSpec) -> Consumption:
    """The fleet from wherever the job names: the KVS export when set, else the store."""
    return read_fleet_from_kvs(spec) if spec.kvs is not None else read_fleet(spec)
