"""The services of services/trusted mode, by name, and how one process builds its stage.

`meterseal service run NAME` (what the supervisor starts) calls `build_stage`. In trusted
mode the stages that hold secrets get them from the CAS after attesting their measurement
(`CasKeys`); otherwise from the deployment directory (`DeploymentKeys`).
"""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from meterseal.acquisition.headend import HeadEndSettings
from meterseal.deployment import CA_CERT
from meterseal.errors import ConfigurationError
from meterseal.runtime.lifecycle import Stage
from meterseal.runtime.tls import server_context
from meterseal.services.bus import Bus, MemoryBus
from meterseal.services.intake import IntakeSettings
from meterseal.services.keys import STAGE_SECRETS, DeploymentKeys, KeySource, StageSecrets
from meterseal.storage import Store

SERVICES = tuple(STAGE_SECRETS)  # receiver, open-verify, anonymize-store, billing
TRUSTED_SERVICES = ("open-verify", "anonymize-store", "billing")
MODES = ("monolith", "services", "trusted")


@dataclass(frozen=True)
class ServiceOptions:
    """Everything a service process needs to build its stage."""

    deployment: Path
    store_url: str
    nats_url: str | None = None  # None: MS_NATS_URL or the local server
    prefix: str = ""  # stream name prefix (tests and benches isolate themselves)
    receivers: HeadEndSettings = field(default_factory=HeadEndSettings)
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    cas_url: str | None = None  # set: trusted mode, secrets from the CAS after attestation
    passphrase: bytes | None = None
    passphrase_env: str = "MS_PASSPHRASE"  # noqa: S105 - the variable children read it from
    ack_wait: float = 10.0
    worker_tls: bool = False  # trusted mode: admin endpoints serve HTTPS with a CAS-released key
    http_tls: str | None = None  # the receiver's TLS identity (DEPLOYMENT/tls/NAME), if HTTPS

    @property
    def trusted(self) -> bool:
        """Whether secrets come from the CAS."""
        return self.cas_url is not None


def key_source(options: ServiceOptions) -> KeySource:
    """Deployment directory, or the CAS (trusted mode)."""
    if options.cas_url is None:
        return DeploymentKeys(options.deployment, options.passphrase)
    from meterseal.services.attested import CasKeys

    return CasKeys(options.cas_url, options.deployment, options.passphrase, options.worker_tls)


async def connect_bus(options: ServiceOptions) -> Bus:
    """The NATS JetStream bus these options name, its streams checked to be this deployment's."""
    import hashlib

    from meterseal.services.nats_bus import NatsBus

    # The CA names the deployment (two may share a name, hence a prefix); a stage given only
    # its own files (`keys stage`) may lack the certificate: then nothing is checked.
    ca = options.deployment / CA_CERT
    owner = hashlib.sha256(ca.read_bytes()).hexdigest() if ca.is_file() else ""
    return await NatsBus.connect(
        options.nats_url, ack_wait=options.ack_wait, prefix=options.prefix, owner=owner
    )


def ca_certificate(directory: Path) -> x509.Certificate:
    """The deployment's CA certificate (public)."""
    path = directory / CA_CERT
    if not path.exists():
        raise ConfigurationError(f"no CA certificate in {directory}; run `meterseal keys init`")
    return x509.load_pem_x509_certificate(path.read_bytes())


def make_stage(
    name: str,
    options: ServiceOptions,
    bus: Bus,
    store: Store | None,
    secrets: StageSecrets | None = None,
) -> Stage:
    """The stage `name` on `bus` (and `store` for the stages that need one)."""
    from meterseal.services.frontends import ReceiverService
    from meterseal.services.workers import AnonymizeStoreWorker, BillingWorker, OpenVerifyWorker

    if name == "receiver":
        return ReceiverService(bus, options.receivers, options.intake)
    if store is None:
        raise ConfigurationError(f"the {name} service needs a store")
    secrets = secrets or key_source(options).secrets(name)
    if name == "open-verify":
        return OpenVerifyWorker(bus, store, ca_certificate(options.deployment), secrets)
    if name == "anonymize-store":
        return AnonymizeStoreWorker(bus, store, secrets, policy=options.receivers.policy)
    if name == "billing":
        return BillingWorker(bus, store, secrets)
    raise ConfigurationError(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")


class OwnedStage:
    """A stage plus the bus connection and store it was built on, released at stop."""

    def __init__(self, name: str, options: ServiceOptions) -> None:
        self.name = name
        self.options = options
        self.bus: Bus = MemoryBus()
        self.store: Store | None = None
        self.inner: Stage | None = None
        self.admin_tls: ssl.SSLContext | None = None  # a trusted worker's, from its CAS key

    async def build(self) -> Stage:
        """Connect, open the store, build the stage."""
        if self.name not in SERVICES:
            raise ConfigurationError(f"unknown service {self.name!r}; choose one of {SERVICES}")
        self.bus = await connect_bus(self.options)
        secrets = None
        if self.name != "receiver":
            self.store = Store.open(self.options.store_url)
            secrets = key_source(self.options).secrets(self.name)
            if secrets.tls is not None:
                ca = ca_certificate(self.options.deployment)
                self.admin_tls = server_context(secrets.tls, ca)
        self.inner = make_stage(self.name, self.options, self.bus, self.store, secrets)
        return self.inner

    async def close(self) -> None:
        """Disconnect and close the store."""
        with contextlib.suppress(Exception):
            await self.bus.close()
        if self.store is not None:
            self.store.close()


def run_service(name: str, options: ServiceOptions, *, admin: str | None = "127.0.0.1:0") -> int:
    """Build service `name`, serve it until SIGTERM, release it: the process exit code."""
    from meterseal.runtime.lifecycle import run_main, serve_stage

    async def main() -> None:
        owned = OwnedStage(name, options)
        try:
            stage = await owned.build()
            await serve_stage(stage, admin=admin, admin_tls=owned.admin_tls)
        finally:
            await owned.close()

    return run_main(main)
