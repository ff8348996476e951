"""`meterseal kvs export` and the `--from-kvs` input of the audit: signed originals in the KVS.

`export_command` writes each customer's month of signed originals from the store into the
KVS through its gateway (docs/kvs-export.md), as a client with its own API key (write access
to the `originals` bucket); `kvs_originals` opens the same objects for a reader (read access
is enough), for `meterseal audit --from-kvs URL`. The API key comes from an environment
variable, never a flag.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_STORE,
    DeploymentDir,
    StoreUrl,
    console,
)
from meterseal.cli_kvs_common import DEFAULT_GATEWAY, KEY_ENV, gateway_client
from meterseal.kvs.export_gateway import BUCKET, GatewayObjects
from meterseal.kvs.export_read import KvsAuditSource, KvsOriginals
from meterseal.ui import progress_bar

Months = Annotated[list[str], typer.Option("--month", help="UTC month to export (YYYY-MM)")]
GatewayUrl = Annotated[str, typer.Option("--gateway", help="the KVS gateway's URL")]
KeyEnv = Annotated[
    str, typer.Option("--key-env", help="environment variable holding the API key (kvk_…)")
]
CaFile = Annotated[
    Path | None,
    typer.Option("--ca", help="CA certificate of an https gateway (default: the deployment's)"),
]

if TYPE_CHECKING:
    from meterseal.billing.ports import AuditSource
    from meterseal.storage.bill_store import BillStore


@contextlib.contextmanager
def gateway_objects(
    url: str, key_env: str, ca: Path | None, deployment: Path, policy: str | None = None
) -> Iterator[GatewayObjects]:
    """The `originals` bucket through the gateway at `url`, with the key in `key_env`."""
    needed = f" for bucket {BUCKET!r}"
    with gateway_client(url, key_env, ca, deployment, needed) as client:
        yield GatewayObjects(client, BUCKET, policy)


@contextlib.contextmanager
def kvs_originals(
    url: str, key_env: str = KEY_ENV, ca: Path | None = None, deployment: Path = DEFAULT_DEPLOYMENT
) -> Iterator[KvsOriginals]:
    """A reader of the exported months through the gateway; warns of months never exported."""
    with gateway_objects(url, key_env, ca, deployment) as objects:
        reader = KvsOriginals(objects)
        try:
            yield reader
        finally:  # also when reading failed: an unexported month may be why
            if reader.absent_months:
                months = ", ".join(sorted(reader.absent_months))
                console.print(
                    f"[yellow]warning:[/yellow] the KVS has no export of {months}: their "
                    "readings were read as none (meterseal kvs export --month …)",
                    soft_wrap=True,
                )


@contextlib.contextmanager
def audit_source(
    base: BillStore,
    from_kvs: str | None,
    key_env: str = KEY_ENV,
    deployment: Path = DEFAULT_DEPLOYMENT,
) -> Iterator[AuditSource]:
    """The auditor's source: the store, or its readings from the KVS gateway at `from_kvs`."""
    if from_kvs is None:
        yield base
        return
    with kvs_originals(from_kvs, key_env, None, deployment) as reader:
        yield KvsAuditSource(base, reader)


def export_command(
    month: Months,
    policy: Annotated[
        str | None, typer.Option(help="the objects' policy (default: the bucket's)")
    ] = None,
    gateway: GatewayUrl = DEFAULT_GATEWAY,
    key_env: KeyEnv = KEY_ENV,
    ca: CaFile = None,
    deployment: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
) -> None:
    """Write each customer's month of signed originals into the KVS, one object each."""
    from meterseal.kvs.export import export_month
    from meterseal.kvs.export_format import check_month
    from meterseal.storage import Store
    from meterseal.storage.bill_store import BillStore

    months = [check_month(m) for m in month]
    with (
        gateway_objects(gateway, key_env, ca, deployment, policy) as objects,
        Store.open_read_only(store) as db,
        progress_bar(console) as bar,
    ):
        bills = BillStore(db)
        task = bar.add_task("exporting customer months", total=None)
        done = [
            export_month(bills, objects, m, progress=lambda n: bar.advance(task, n)) for m in months
        ]
    for summary in done:
        console.print(
            f"{summary.month}: {len(summary.objects)} customer objects, "
            f"{summary.readings:,} signed originals, {summary.unsigned:,} unsigned imports, "
            f"{summary.bytes:,} bytes; index {BUCKET}/{summary.index}",
            soft_wrap=True,
            highlight=False,
        )
