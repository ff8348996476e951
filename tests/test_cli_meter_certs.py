"""`meterseal meters certify|trust-manufacturer|import-cert`: factory-made meter keys registered.

The meters certified from CSRs or imported from a trusted manufacturer's certificates are in
the store's registry as the head-end reads it (re-verified against the deployment CA); a
tampered CSR, a certificate of an untrusted CA and an id already registered with another key
are refused, and nothing is registered then.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from meterseal.crypto.certs import create_ca
from meterseal.crypto.keys import generate_meter_key
from meterseal.crypto.suites import ED25519, P256, CipherSuite
from meterseal.deployment import init_deployment
from meterseal.storage import Store
from meterseal.storage.store import StoreRegistry
from tests.command_line import invoke

PEM = serialization.Encoding.PEM


def _csr_pem(meter_id: str, suite: CipherSuite) -> bytes:
    key = generate_meter_key(meter_id, suite).private_key
    subject = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, meter_id)])
    algorithm = hashes.SHA256() if suite is P256 else None
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, algorithm)
    return csr.public_bytes(PEM)


@pytest.fixture
def deployment(tmp_path: Path) -> tuple[Path, str]:
    """A deployment directory and an empty store: (DIR, store URL)."""
    directory = tmp_path / "dep"
    init_deployment(directory, now=dt.datetime.now(dt.UTC))
    return directory, f"sqlite:///{tmp_path / 'store.db'}"


def _meters(directory: Path, store_url: str) -> dict[str, str]:
    ca = x509.load_pem_x509_certificate((directory / "ca.cert.pem").read_bytes())
    with Store.open(store_url) as store:
        registry = StoreRegistry(store, ca)
        assert registry.rejected == {}
        return {row.meter_id: row.customer_id for row in store.meter_rows()}


def _run(*args: str) -> tuple[int, str]:
    result = invoke(["meters", *args], env={"COLUMNS": "250"})
    return result.exit_code, " ".join(result.output.split())


def test_csrs_are_certified_registered_and_written_back(
    deployment: tuple[Path, str], tmp_path: Path
) -> None:
    directory, store = deployment
    batch = tmp_path / "factory.csr.pem"
    batch.write_bytes(_csr_pem("ACME-1", P256) + _csr_pem("ACME-2", ED25519))
    common = ["-d", str(directory), "--store", store]
    code, said = _run("certify", str(batch), *common, "--customer", "CUST-9", "--region", "R03")
    assert code == 0, said
    assert f"certified ACME-1 (p256, from CSR): {directory / 'meters' / 'ACME-1.cert.pem'}" in said
    assert "certified ACME-2 (ed25519, from CSR)" in said
    assert "2 meters registered in" in said
    assert _meters(directory, store) == {"ACME-1": "CUST-9", "ACME-2": "CUST-9"}
    # The same CSR again is the same key: nothing to refuse. Another key for the id is refused.
    assert _run("certify", str(batch), *common)[0] == 0
    other = tmp_path / "other.csr.pem"
    other.write_bytes(_csr_pem("ACME-1", P256))
    code, said = _run("certify", str(other), *common)
    assert code == 2
    assert "meter ACME-1 is registered with another key" in said
    assert _run("certify", str(other), *common, "--replace")[0] == 0


def test_a_tampered_csr_is_refused_and_nothing_is_registered(
    deployment: tuple[Path, str], tmp_path: Path
) -> None:
    directory, store = deployment
    der = bytearray(
        x509.load_pem_x509_csr(_csr_pem("ACME-3", P256)).public_bytes(serialization.Encoding.DER)
    )
    der[-3] ^= 0x40  # inside the signature
    tampered = tmp_path / "tampered.csr"
    tampered.write_bytes(bytes(der))
    code, said = _run("certify", str(tampered), "-d", str(directory), "--store", store)
    assert code == 2
    assert "the CSR's signature does not verify" in said
    assert _meters(directory, store) == {}


def test_certificates_of_a_trusted_manufacturer_only_are_imported(
    deployment: tuple[Path, str], tmp_path: Path
) -> None:
    directory, store = deployment
    now = dt.datetime.now(dt.UTC)
    common = ["-d", str(directory), "--store", store]
    maker_key, maker_ca = create_ca("ACME meters CA", now=now, rng=os.urandom)
    rogue_key, rogue_ca = create_ca("ACME meters CA", now=now, rng=os.urandom)
    meter = generate_meter_key("ACME-5", P256)
    from meterseal.crypto.certs import issue_meter_certificate

    def issued(key: object, ca: x509.Certificate, path: Path) -> Path:
        cert = issue_meter_certificate(key, ca, "ACME-5", meter.public_key(), now=now,  # type: ignore[arg-type]
                                       rng=os.urandom)  # fmt: skip
        path.write_bytes(cert.public_bytes(PEM))
        return path

    genuine = issued(maker_key, maker_ca, tmp_path / "acme-5.pem")
    forged = issued(rogue_key, rogue_ca, tmp_path / "forged.pem")
    code, said = _run("import-cert", str(genuine), *common)
    assert code == 2
    assert "no manufacturer CA is trusted" in said
    (tmp_path / "acme-ca.pem").write_bytes(maker_ca.public_bytes(PEM))
    code, said = _run(
        "trust-manufacturer", "acme", str(tmp_path / "acme-ca.pem"), "-d", str(directory)
    )
    assert code == 0, said
    assert "trusting manufacturer acme: CN=ACME meters CA (sha256 " in said
    code, said = _run("import-cert", str(forged), *common)
    assert code == 2
    assert "not a trusted manufacturer CA" in said
    assert _meters(directory, store) == {}
    code, said = _run("import-cert", str(genuine), *common)
    assert code == 0, said
    assert "certified ACME-5 (p256, from CN=ACME meters CA)" in said
    assert _meters(directory, store) == {"ACME-5": "CUST-ACME-5"}
    assert (
        directory / "meters" / "ACME-5.manufacturer.cert.pem"
    ).read_bytes() == genuine.read_bytes()
    # A meter certificate is no manufacturer CA.
    code, said = _run("trust-manufacturer", "bad", str(genuine), "-d", str(directory))
    assert code == 2
    assert "not a CA certificate" in said
    # Revoked, the meter stays revoked: the same certificate again is refused.
    assert _run("revoke", "ACME-5", "--store", store)[0] == 0
    code, said = _run("import-cert", str(genuine), *common, "--replace")
    assert code == 2
    assert "a revoked meter stays revoked, nothing was registered: ACME-5 (revoked on" in said
    with Store.open(store) as opened:
        assert [row.revoked_at is not None for row in opened.meter_rows()] == [True]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_csrs_and_a_manufacturer_ca_made_by_openssl_are_accepted(
    deployment: tuple[Path, str], tmp_path: Path
) -> None:
    # What a factory would run (docs/keys-and-meters.md): a CA, a meter key and its CSR.
    directory, store = deployment
    common = ["-d", str(directory), "--store", store]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "m1.key", "-subj", "/serialNumber=ACME-11/CN=meter ACME-11",
            "-out", "m1.csr")  # fmt: skip
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "maker.key", "-subj", "/CN=ACME meters CA", "-days", "3650",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign", "-out", "maker.pem")  # fmt: skip
    (tmp_path / "ext.cnf").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    )
    openssl("req", "-new", "-newkey", "ed25519", "-nodes", "-keyout", "m2.key",
            "-subj", "/serialNumber=ACME-12", "-out", "m2.csr")  # fmt: skip
    openssl("x509", "-req", "-in", "m2.csr", "-CA", "maker.pem", "-CAkey", "maker.key",
            "-days", "30", "-extfile", "ext.cnf", "-out", "m2.pem")  # fmt: skip
    code, said = _run("certify", str(tmp_path / "m1.csr"), *common)
    assert code == 0, said
    assert "certified ACME-11 (p256, from CSR)" in said
    assert (
        _run("trust-manufacturer", "acme", str(tmp_path / "maker.pem"), "-d", str(directory))[0]
        == 0
    )
    code, said = _run("import-cert", str(tmp_path / "m2.pem"), *common)
    assert code == 0, said
    assert "certified ACME-12 (ed25519, from CN=ACME meters CA)" in said
    ours = x509.load_pem_x509_certificate((directory / "meters" / "ACME-12.cert.pem").read_bytes())
    theirs = x509.load_pem_x509_certificate((tmp_path / "m2.pem").read_bytes())
    assert ours.not_valid_after_utc <= theirs.not_valid_after_utc  # never outlives the maker's
    assert _meters(directory, store) == {"ACME-11": "CUST-ACME-11", "ACME-12": "CUST-ACME-12"}


def test_a_file_that_is_no_csr_is_one_clear_error(
    deployment: tuple[Path, str], tmp_path: Path
) -> None:
    directory, store = deployment
    der = bytearray(
        x509.load_pem_x509_csr(_csr_pem("ACME-6", P256)).public_bytes(serialization.Encoding.DER)
    )
    der[7] ^= 0x02  # the version field (after two headers): 2, which no CSR has
    broken = tmp_path / "broken.csr"
    broken.write_bytes(bytes(der))
    (tmp_path / "text.csr").write_text("not a request")
    for path in (broken, tmp_path / "text.csr"):
        code, said = _run("certify", str(path), "-d", str(directory), "--store", store)
        assert code == 2, said
        assert f"{path}: not a CSR" in said


def test_a_revoked_meter_stays_revoked_whatever_registers_it_again(
    deployment: tuple[Path, str], tmp_path: Path
) -> None:
    directory, store = deployment
    common = ["-d", str(directory), "--store", store]
    csr = tmp_path / "acme-6.csr.pem"
    csr.write_bytes(_csr_pem("ACME-6", P256))
    assert _run("certify", str(csr), *common)[0] == 0
    assert _run("provision", "1", "-d", str(directory), "--prefix", "F", "--out",
                str(tmp_path / "fleet.cbor"))[0] == 0  # fmt: skip
    assert _run("register", str(tmp_path / "fleet.cbor"), *common)[0] == 0
    registered = _meters(directory, store)
    assert len(registered) == 2
    for meter_id in registered:
        assert _run("revoke", meter_id, "--store", store)[0] == 0
    refusals = [
        ("certify", str(csr)),  # the same key
        ("certify", str(csr), "--replace"),
        ("register", str(tmp_path / "fleet.cbor")),
    ]
    for args in refusals:
        code, said = _run(*args, *common)
        assert code == 2, (args, said)
        assert "a revoked meter stays revoked, nothing was registered" in said, said
    with Store.open(store) as opened:
        assert all(row.revoked_at is not None for row in opened.meter_rows())
