"""Getting the monitor's verdicts to the head-end: signed reports, written and/or submitted.

The monitor's hook signs a report with the meter's key at the launch (trusted once the static
measurement held: this is also how a meter is re-verified) and at a malicious verdict, writes
the latest to a file and, when a store is given, submits it there (the same `submit` the
`meterseal integrity report` command uses for a report carried by other means).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from meterseal.crypto.at_rest import write_private_file
from meterseal.crypto.keys import MeterKey
from meterseal.deployment import CA_CERT
from meterseal.errors import ConfigurationError
from meterseal.integrity.auditlog import AuditLog
from meterseal.integrity.judgement import Measurement
from meterseal.integrity.report import IntegrityReport, sign_report
from meterseal.integrity.state import IntegrityState, IntegrityStates, read_states
from meterseal.storage import Store


def ca_certificate(deployment_dir: Path) -> x509.Certificate:
    """The deployment's CA certificate (public: no passphrase needed)."""
    try:
        return x509.load_pem_x509_certificate((deployment_dir / CA_CERT).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"no CA certificate in {deployment_dir}: {exc}") from None


def submit(
    store_url: str, deployment_dir: Path, signed: bytes, now: dt.datetime
) -> IntegrityReport:
    """Verify and record one signed report in the head-end's store."""
    with Store.open(store_url) as store:
        return IntegrityStates(store, ca_certificate(deployment_dir)).submit(signed, now=now)


def states(store_url: str) -> list[IntegrityState]:
    """Every meter's latest verdict in the store."""
    with Store.open(store_url) as store:
        return read_states(store)


@dataclass
class Reporter:
    """The monitor's verdict hook for one meter."""

    key: MeterKey
    program: str
    log: AuditLog
    out: Path | None = None
    store_url: str | None = None
    deployment_dir: Path | None = None
    last_issued_ms: int = 0

    @classmethod
    def configure(
        cls,
        meter_id: str | None,
        fleet: Path | None,
        out: Path | None,
        store_url: str | None,
        deployment_dir: Path,
        log: AuditLog,
        program: str,
        passphrase: bytes | None = None,
    ) -> Reporter | None:
        """A reporter if a meter key is named; ConfigurationError for half a configuration."""
        if meter_id is None and fleet is None:
            if out is not None or store_url is not None:
                raise ConfigurationError("reports need --meter and --fleet (the signing key)")
            return None
        if meter_id is None or fleet is None:
            raise ConfigurationError("give both --meter and --fleet")
        from meterseal.meter.provisioning import load_fleet

        keys = {m.key.meter_id: m.key for m in load_fleet(fleet, passphrase)}
        if meter_id not in keys:
            raise ConfigurationError(f"meter {meter_id} is not in {fleet}")
        return cls(keys[meter_id], program, log, out, store_url, deployment_dir)

    def __call__(self, m: Measurement) -> None:
        """Sign a report of `m`; write and submit it."""
        head = self.log.sign_head()  # the report names a signed head covering this verdict
        # Strictly increasing even within one millisecond, so the head-end takes each in turn.
        issued = max(int(time.time() * 1000), self.last_issued_ms + 1)
        self.last_issued_ms = issued
        report = IntegrityReport(
            self.key.meter_id,
            m.verdict,
            m.reason,
            self.program,
            m.hv,
            issued,
            head.size,
            head.root,
        )
        signed = sign_report(report, self.key)
        if self.out is not None:
            write_private_file(self.out, signed)
        if self.store_url is not None and self.deployment_dir is not None:
            submit(self.store_url, self.deployment_dir, signed, dt.datetime.now(dt.UTC))
