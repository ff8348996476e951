"""Schemathesis over one of our apps in-process: every answer as its OpenAPI says (bounded)."""

from __future__ import annotations

from typing import Any

import cbor2
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Err


@schemathesis.serializer("application/cbor")
def _cbor(_context: Any, value: Any) -> bytes:
    """A generated batch body as CBOR (bytes as they are: a binary schema)."""
    return value if isinstance(value, bytes) else bytes(cbor2.dumps(value))


EXAMPLES = 8  # per operation: the whole file stays well under a minute on two cores
# A request that fits the schema may still be refused for what its values mean together
# (bill-log consistency with first > second): that is the API's 422, not a schema mismatch.
EXCLUDED_CHECKS = ("positive_data_acceptance",)


def conforms(app: Any, headers: dict[str, str] | None = None) -> list[str]:
    """Every operation of `app` through schemathesis; the failures found, one line each."""
    from schemathesis import checks

    excluded = [getattr(checks, name) for name in EXCLUDED_CHECKS if hasattr(checks, name)]
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # an operation schemathesis cannot read: the schema is wrong
        operation = result.ok()

        @given(operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            case.call_and_validate(headers=headers, excluded_checks=excluded)

        try:
            call()
        except BaseException as exc:  # hypothesis re-raises schemathesis' failure group
            failures.append(f"{operation.label}: {' '.join(str(exc).split())[:300]}")
    return failures
