"""`meterseal meters certify|trust-manufacturer|import-cert`: meter keys made at the factory.

`certify CSR…` issues deployment-CA certificates for meters' PKCS#10 requests (the meter's
key never leaves it); `trust-manufacturer NAME CA.pem` records a manufacturer's CA the utility
trusts; `import-cert CERT…` takes meter certificates from such a CA (chain, key usage and
validity checked) and certifies their keys with the deployment CA. Each meter is registered
in the store and its certificate written to DEPLOYMENT/meters/ID.cert.pem (`crypto.manufacturer`
says why the registry keeps the deployment CA as its one anchor).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from meterseal.cli_common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_STORE,
    SUITE_HELP,
    DeploymentDir,
    PassphraseEnv,
    StoreUrl,
    console,
    load,
    shown,
)
from meterseal.errors import CertificateError, ConfigurationError
from meterseal.ui import progress_bar

if TYPE_CHECKING:
    from cryptography import x509

    from meterseal.crypto.manufacturer import Certified
    from meterseal.crypto.suites import CipherSuite
    from meterseal.deployment import Deployment

METERS_DIRECTORY = "meters"  # DEPLOYMENT/meters/ID.cert.pem (meter.enrolment writes them)
MANUFACTURERS_DIRECTORY = "manufacturers"  # DEPLOYMENT/manufacturers/NAME.cert.pem: trusted CAs
Customer = Annotated[
    str | None, typer.Option(help="customer of the meter(s) (default CUST-METER_ID)")
]
Region = Annotated[str, typer.Option(help="region of the meter(s)")]
Suite = Annotated[str | None, typer.Option(help=f"{SUITE_HELP} (default: the key's)")]
_PEM_BEGIN = b"-----BEGIN "
_T = TypeVar("_T")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from exc


def _pem_blocks(data: bytes) -> list[bytes]:
    """Each PEM block of a file (a factory may send a batch in one file)."""
    parts = data.split(_PEM_BEGIN)[1:]
    return [_PEM_BEGIN + part for part in parts]


def _load_all(
    path: Path, what: str, pem: Callable[[bytes], _T], der: Callable[[bytes], _T]
) -> list[_T]:
    """Every CSR or certificate in a file: PEM blocks, or one DER object."""
    from cryptography import x509

    data = _read(path)
    try:
        if _PEM_BEGIN in data:
            return [pem(block) for block in _pem_blocks(data)]
        return [der(data)]
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError
        raise CertificateError(f"{path}: not a {what} ({exc})") from exc


def _suite(name: str | None) -> CipherSuite | None:
    from meterseal.crypto.suites import suite_named

    try:
        return suite_named(name) if name else None
    except KeyError as exc:
        raise typer.BadParameter(str(exc), param_hint="--suite") from exc


def _register(
    deployment: Deployment,
    directory: Path,
    store_url: str,
    done: Sequence[Certified],
    customer: str | None,
    region: str,
    replace: bool,
) -> list[Path]:
    """Register the meters (a known id with another key refused) and write their certificates."""
    from meterseal.meter.enrolment import register_certified, write_certificates
    from meterseal.storage import Store

    with Store.open(store_url) as store:
        register_certified(
            deployment.ca_cert, store, done, customer, region, replace=replace,
            now=dt.datetime.now(dt.UTC),
        )  # fmt: skip
    return write_certificates(directory, done)


def _report(done: Sequence[Certified], paths: Sequence[Path], store_url: str) -> None:
    from cryptography.hazmat.primitives import hashes

    for c, path in zip(done, paths, strict=True):
        fingerprint = c.certificate.fingerprint(hashes.SHA256()).hex()[:16]
        console.print(
            f"certified {c.meter_id} ({c.suite.name}, from {c.source}): {path} "
            f"(serial {c.certificate.serial_number:x}, sha256 {fingerprint}…, "
            f"valid to {c.certificate.not_valid_after_utc:%F})",
            soft_wrap=True,
            highlight=False,
        )
    console.print(f"{len(done)} meters registered in {shown(store_url)}", highlight=False)


def certify(
    requests: Annotated[
        list[Path], typer.Argument(help="CSR files (PEM, several per file, or DER)")
    ],
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
    meter_id: Annotated[
        str | None, typer.Option(help="the meter's id, if its one CSR names none (serialNumber)")
    ] = None,
    suite: Suite = None,
    customer: Customer = None,
    region: Region = "R01",
    replace: Annotated[bool, typer.Option(help="give a registered id this new key")] = False,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Certify meters' CSRs (PKCS#10) with the deployment CA and register them."""
    from cryptography import x509

    from meterseal.crypto.manufacturer import certify_request

    deployment = load(deployment_dir, passphrase_env)
    loaded: list[x509.CertificateSigningRequest] = []
    for path in requests:
        loaded += _load_all(path, "CSR", x509.load_pem_x509_csr, x509.load_der_x509_csr)
    if meter_id is not None and len(loaded) != 1:
        raise typer.BadParameter("--meter-id names the meter of one CSR only")
    chosen, now = _suite(suite), dt.datetime.now(dt.UTC)
    done = []
    with progress_bar(console) as bar:
        task = bar.add_task("certifying meters", total=len(loaded))
        for request in loaded:
            done.append(
                certify_request(
                    deployment.ca_key,
                    deployment.ca_cert,
                    request,
                    now=now,
                    rng=os.urandom,
                    meter_id=meter_id,
                    suite=chosen,
                )
            )
            bar.advance(task)
    paths = _register(deployment, deployment_dir, store, done, customer, region, replace)
    _report(done, paths, store)


def trust_manufacturer(
    name: Annotated[str, typer.Argument(help="the manufacturer's name (a-z 0-9 . _ -)")],
    ca_certificate: Annotated[Path, typer.Argument(help="its CA certificate (PEM)")],
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
) -> None:
    """Trust a manufacturer's CA for `meters import-cert` (DEPLOYMENT/manufacturers/NAME)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from meterseal.crypto.manufacturer import check_manufacturer_ca
    from meterseal.deployment import SERVICE_NAME

    if not SERVICE_NAME.fullmatch(name):
        raise typer.BadParameter("1-64 of a-z 0-9 . _ -", param_hint="NAME")
    (ca,) = _load_all(ca_certificate, "certificate", x509.load_pem_x509_certificate,
                      x509.load_der_x509_certificate)[:1]  # fmt: skip
    assert isinstance(ca, x509.Certificate)
    check_manufacturer_ca(ca, dt.datetime.now(dt.UTC))
    directory = deployment_dir / MANUFACTURERS_DIRECTORY
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.cert.pem"
    if path.exists() and path.read_bytes() != ca.public_bytes(serialization.Encoding.PEM):
        raise ConfigurationError(f"{path} holds another CA: choose another name")
    path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    console.print(
        f"trusting manufacturer {name}: {ca.subject.rfc4514_string()} "
        f"(sha256 {ca.fingerprint(hashes.SHA256()).hex()}) -> {path}",
        soft_wrap=True,
        highlight=False,
    )


def trusted_manufacturers(deployment_dir: Path) -> list[x509.Certificate]:
    """The manufacturer CAs the deployment trusts (`trust-manufacturer`); at least one."""
    from meterseal.meter.enrolment import manufacturer_cas

    found = manufacturer_cas(deployment_dir)
    if not found:
        raise ConfigurationError(
            f"no manufacturer CA is trusted in {deployment_dir}: "
            "run `meterseal meters trust-manufacturer NAME CA.pem` first"
        )
    return found


def import_cert(
    certificates: Annotated[
        list[Path], typer.Argument(help="meter certificates from a trusted manufacturer (PEM/DER)")
    ],
    deployment_dir: DeploymentDir = DEFAULT_DEPLOYMENT,
    store: StoreUrl = DEFAULT_STORE,
    suite: Suite = None,
    customer: Customer = None,
    region: Region = "R01",
    replace: Annotated[bool, typer.Option(help="give a registered id this new key")] = False,
    passphrase_env: PassphraseEnv = "MS_PASSPHRASE",  # noqa: S107 - a variable name
) -> None:
    """Import meter certificates of a trusted manufacturer: chain checked, certified, registered."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from meterseal.crypto.manufacturer import certify_manufacturer_certificate

    deployment = load(deployment_dir, passphrase_env)
    trusted = trusted_manufacturers(deployment_dir)
    loaded: list[x509.Certificate] = []
    for path in certificates:
        loaded += _load_all(path, "certificate", x509.load_pem_x509_certificate,
                            x509.load_der_x509_certificate)  # fmt: skip
    chosen, now = _suite(suite), dt.datetime.now(dt.UTC)
    done = [
        certify_manufacturer_certificate(
            deployment.ca_key,
            deployment.ca_cert,
            cert,
            trusted,
            now=now,
            rng=os.urandom,
            suite=chosen,
        )
        for cert in loaded
    ]
    paths = _register(deployment, deployment_dir, store, done, customer, region, replace)
    for c, cert in zip(done, loaded, strict=True):  # the manufacturer's, kept for the record
        record = deployment_dir / METERS_DIRECTORY / f"{c.meter_id}.manufacturer.cert.pem"
        record.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _report(done, paths, store)
