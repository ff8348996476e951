"""A worker process of `meterseal bench trusted-overhead`: times experiment 3.1 on request.

Started with multiprocessing's spawn (a fresh interpreter). The "inside" worker is a trusted
stage ("bench-crypto"): it measures itself, attests with the simulated platform key and
fetches its RSA-2048 key from the CAS. The "outside" worker gets the same key over its
pipe. Both then build the same operations (`bench.crypto`'s experiment 3.1 ops) and answer:

* ("calibrate", op, size, seconds) -> estimated seconds per call after a warm-up,
* ("time", op, size, calls) -> mean seconds per call over `calls` back-to-back calls,
* ("stop",).

Every answer is ("ok", value) or ("error", diagnostics).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from meterseal.bench.crypto import _size_ops  # experiment 3.1's ops, shared with bench crypto
from meterseal.bench.timing import calibrate, per_call
from meterseal.errors import MetersealError
from meterseal.trust.worker import start_trusted

STAGE = "bench-crypto"
RSA_SECRET = "bench-rsa2048"  # noqa: S105 - a secret's name


def stage_config(sizes: Sequence[int]) -> dict[str, object]:
    """The bench stage's configuration: what its measurement covers besides code."""
    return {"experiment": "SGX paper 3.1", "sizes": list(sizes), "secret": RSA_SECRET}


def _key(der: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise MetersealError("the bench key is not an RSA key")
    return key


def serve(conn: Connection, mode: str, setup: dict[str, Any]) -> None:
    """The worker's main loop (the spawn target)."""
    if setup.get("cpu") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {setup["cpu"]})
    sizes = tuple(setup["sizes"])
    try:
        if mode == "inside":
            worker = start_trusted(
                STAGE,
                setup["cas_url"],
                Path(setup["deployment"]),
                names=[RSA_SECRET],
                config=stage_config(sizes),
            )
            der, info = (
                worker.secrets[RSA_SECRET],
                {
                    "measurement": worker.measurement.hex,
                    "measure_seconds": worker.measure_seconds,
                    "fetch_seconds": worker.fetch_seconds,
                    "assurance": worker.assurance,
                },
            )
        else:
            der, info = setup["key"], {}
        ops = {(op, size): fn for size in sizes for op, fn in _size_ops(_key(der), size).items()}
    except MetersealError as exc:
        conn.send(("error", exc.diagnostics()))
        return
    conn.send(("ok", info))
    while True:
        message = conn.recv()
        if message[0] == "stop":
            return
        kind, op, size, amount = message
        fn = ops[(op, size)]
        conn.send(("ok", calibrate(fn, amount) if kind == "calibrate" else per_call(fn, amount)))
