"""`meterseal bills …`: serve customers' bills and proofs and the auditor's reports over HTTP.

With the command line, not in billing: it composes the billing API with a read-only store for
the bills, the accounts that may sign in, and the access log (written through a second,
writable engine on the same database).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer

from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_STORE,
    ClientCerts,
    DeploymentDir,
    PassphraseEnv,
    StoreUrl,
    TlsName,
    passphrase,
    server_tls,
)
from meterseal.errors import ConfigurationError

if TYPE_CHECKING:
    import ssl

    from fastapi import FastAPI

    from meterseal.runtime.readiness import Readiness

bills_app = typer.Typer(
    help="Bills, reading proofs and audit reports over HTTP.", no_args_is_help=True
)


@bills_app.command("serve")
def bills_serve(
    store: StoreUrl = DEFAULT_STORE,
    listen: Annotated[str, typer.Option(help="HTTP listen address host:port")] = "127.0.0.1:7480",
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    tls: TlsName = None,
    client_certs: ClientCerts = "optional",
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Serve the billing API until Ctrl-C; callers sign in (`meterseal accounts add`)."""
    from meterseal.accounts.authn import AccountAuthenticator
    from meterseal.accounts.credentials import TokenSigner, token_key
    from meterseal.billing.api import create_billing_app
    from meterseal.runtime.address import parse_address
    from meterseal.runtime.readiness import Readiness
    from meterseal.storage import Store
    from meterseal.storage.accounts import AccountStore
    from meterseal.storage.bill_store import BillStore

    try:
        address = str(parse_address(listen, 7480))  # refused before the store is opened
        context = server_tls(deployment_dir, tls, client_certs, passphrase_env)
        # The bills through a read-only engine: the API never writes them, and a bug in it
        # must not be able to. Accounts and the access log through a writable one, opened
        # second: a store that does not exist or is not migrated is refused, not made.
        with Store.open_read_only(store) as db, Store.open(store) as writable:
            signer = TokenSigner(token_key(deployment_dir, passphrase(passphrase_env)))
            people = AccountStore(writable)
            app = create_billing_app(BillStore(db), AccountAuthenticator(people, signer), people)
            asyncio.run(_serve(app, address, context, Readiness(db.not_ready)))
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {listen}: {exc}") from exc


async def _serve(
    app: FastAPI, listen: str, tls: ssl.SSLContext | None, readiness: Readiness
) -> None:
    from meterseal.runtime.http import HttpAppService
    from meterseal.runtime.lifecycle import serve_stage

    # `serve_stage` prints `listening bills URL` on stdout (scripts wait for it).
    await serve_stage(HttpAppService("bills", app, listen, 7480, tls, readiness))
