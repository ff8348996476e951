"""A CAS process for the trusted-mode runs of the benches (provisioned, then served)."""

from __future__ import annotations

import atexit
from pathlib import Path

from meterseal.bench.served import Served


def start_cas(directory: Path, store_url: str) -> str:
    """Provision the CAS in `store_url`, serve it until this process ends; its URL."""
    from meterseal.services.trusted_setup import provision_cas

    provision_cas(directory, store_url)
    served = Served(
        ["cas", "serve", "-d", str(directory), "--store", store_url, "--listen", "127.0.0.1:0"],
        ready="cas",
    )
    served.wait_ready()
    atexit.register(served.stop)
    return served.endpoint("cas")
