"""The integrity scheme's errors, all under meterseal's one root."""

from __future__ import annotations

from meterseal.errors import MetersealError


class IntegrityError(MetersealError):
    """Root of the integrity measurement errors."""


class TraceFormatError(IntegrityError):
    """Bytes that should be a trace model are not one."""


class ExtractionError(IntegrityError):
    """The integrity section is missing or malformed: the trace cannot be extracted."""


class DsigError(IntegrityError):
    """The section's DSig over (HV, trace) does not verify with the platform key."""


class EmbedError(IntegrityError):
    """The integrity section could not be embedded (objcopy failed or moved the layout)."""


class MonitorUnavailable(IntegrityError):
    """This kernel or machine forbids what the monitor needs (ptrace, seccomp, x86-64)."""


class ReportError(IntegrityError):
    """An integrity report is malformed, forged, stale or names an unknown meter."""


class TracedRunFailed(IntegrityError):
    """A trusted run of the offline phase did not end normally, so it records no trace."""
