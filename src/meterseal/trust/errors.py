"""The trust runtime's errors: all `MetersealError`s whose `diagnostics()` say what to do."""

from __future__ import annotations

from meterseal.errors import MetersealError


class TrustError(MetersealError):
    """Root of the trust runtime's errors (measurement, attestation, sealing, release)."""


class MeasurementError(TrustError):
    """A stage's code or configuration cannot be measured (missing module, bad config value)."""


class AttestationError(TrustError):
    """A quote could not be produced, or does not verify; `check` names the failed check."""

    def __init__(self, message: str, check: str = "quote") -> None:
        super().__init__(message)
        self.check = check


class SealingError(TrustError):
    """A sealed secret cannot be unsealed here (other measurement, other platform, damaged)."""


class ReleaseRefused(TrustError):
    """The CAS refused to release secrets; `reason` is the CAS's one-line reason."""

    def __init__(self, reason: str, *, status: int = 403) -> None:
        super().__init__(f"the CAS refused to release secrets: {reason}")
        self.reason = reason
        self.status = status
        self.logged = True  # in the CAS log (False: beyond the source's budget, counted only)

    def diagnostics(self) -> str:
        """The CAS's reason, which names the measurement and the secret it refused."""
        return f"the CAS refused to release secrets: {self.reason}"


class CasUnavailable(TrustError):
    """The CAS could not be reached or answered with a server error; retrying may help."""
