"""What each trusted stage runs: the modules its measurement covers and the ones it starts from.

`STAGE_MODULES` is the list `measurement.stage_measurement` hashes for a stage (a package
covers its submodules); `STAGE_ENTRIES` the modules its process imports to run it, which
tests/trust check the list covers (`measurement.uncovered`); `STAGE_PROVISIONING` the command
that allows a stage's measurement in the CAS, for stages that have one of their own. Kept apart
from the measuring code: these tables change with every new stage, the hashing rarely.
"""

from __future__ import annotations

# The worker side of the trust runtime: it holds the released secrets, so it is measured too.
# `trust.material` rebuilds the deployment's `TrustedMaterial` (deployment.py) from them.
TRUST_RUNTIME = (
    "meterseal.accounts",  # the package's __init__, on the way to token_key
    "meterseal.accounts.token_key",  # deployment.py makes the APIs' shared token key
    "meterseal.crypto",
    "meterseal.deployment",
    "meterseal.errors",
    "meterseal.model",
    "meterseal.native",
    "meterseal.runtime.address",  # the CAS URL shown without its password
    "meterseal.runtime.tls",  # serves HTTPS with a released TLS key
    "meterseal.trust.attestation",
    "meterseal.trust.channel",
    "meterseal.trust.client",
    "meterseal.trust.errors",
    "meterseal.trust.material",
    "meterseal.trust.measurement",
    "meterseal.trust.sealing",
    "meterseal.trust.stages",  # measurement.py imports the stage tables
    "meterseal.trust.worker",
)
# The store and every engine a store URL may name: `cascadb:///DIR` runs CascaDB on the secure
# KVS inside the process that opens it, so a trusted stage with such a store runs that code too.
STORE = ("meterseal.storage", "meterseal.cascadb", "meterseal.kvs")
# The head-end (receivers, ingest, trusted stages) and the store it writes to.
HEAD_END = ("meterseal.acquisition", *STORE)
_BILLING = tuple(
    f"meterseal.billing.{m}"
    for m in (
        "bill",
        "billlog",
        "chain",
        "completeness",
        "compute",
        "corrections",
        "hashing",
        "ledger",
        "policy",
        "ports",
        "proofs",
        "scope",  # which readings a bill counts (a meter's dates, UNSIGNED imports)
        "service",
        "tariff",
        "tariff_files",
        "tariff_pricing",
        "tariff_rates",
        "unsigned",  # the store keeps UNSIGNED imports in billing.unsigned's records
    )
)
# What each trusted stage runs (a package covers its submodules); `stage_measurement` also
# puts the stage's name into its configuration, so stages running the same code differ.
# The services of services/trusted mode run every trusted stage from one module
# (`services.workers`), which imports the billing core, and the receiver service (in the
# same package) the head-end: each service stage measures it all, under the runtime.
_SERVICE = (
    *HEAD_END,
    *_BILLING,
    "meterseal.transparency",
    "meterseal.runtime",
    "meterseal.services",
    "meterseal.cli_common",
    *TRUST_RUNTIME,
)
# The dissemination services: the package, the runtime, the admission policy, the readings
# they publish from the store, and the CAS's own modules (`router provision` runs in the
# same entry point).
_DISSEMINATION = (
    "meterseal.dissemination",
    "meterseal.runtime",
    "meterseal.cli_common",
    "meterseal.acquisition.records",
    "meterseal.services",  # the package's __init__, on the way to its NATS connection
    "meterseal.services.bus",
    "meterseal.services.nats_bus",  # connect_nats: one NATS connection, one-line errors
    "meterseal.transparency.merkle",
    *STORE,
    "meterseal.trust.cas",
    "meterseal.trust.cas_store",
    "meterseal.trust.limits",  # the CAS's caps on nonces and logged refusals
    "meterseal.trust.policy",
    "meterseal.trust.state",
    "meterseal.trust.vault",
    *TRUST_RUNTIME,
)
STAGE_MODULES: dict[str, tuple[str, ...]] = {
    # open (decrypt) + verify + freshness: holds the head-end keys.
    "open-verify": _SERVICE,
    # anonymize + store: holds the anonymization key.
    "anonymize-store": _SERVICE,
    # bill + sign + append to the bill log: holds the billing key.
    "billing": _SERVICE,
    # `meterseal router serve --cas`: the group-key roots, the handout-signing, operator and
    # state keys (issue 6). It runs under the runtime's lifecycle.
    "dissemination-router": _DISSEMINATION,
    # `meterseal router aggregate --cas`: the aggregation policy, the publisher's public key.
    "dissemination-aggregator": _DISSEMINATION,
    # `meterseal kvs serve`: the secure KVS's gateway (TLS, API keys, sealing, erasure coding,
    # the storage nodes' clients) holding the KVS master secret (issue 21).
    "kvs-gateway": (
        "meterseal.kvs",
        "meterseal.runtime",
        "meterseal.accounts.throttle",  # failed API keys back off per source
        *TRUST_RUNTIME,
    ),
    # `meterseal cascadb serve`: SQL over the KVS (issue 22): the engine, the JSON API and the
    # PostgreSQL protocol, the KVS store engine holding its bucket's key, the accounts' store.
    "cascadb": (
        "meterseal.cascadb",
        "meterseal.kvs",
        "meterseal.runtime",
        "meterseal.accounts",
        "meterseal.storage",  # the accounts are read from the deployment's store
        "meterseal.acquisition.records",  # the store's row types
        *TRUST_RUNTIME,
    ),
    # `meterseal bench trusted-overhead`: experiment 3.1 inside a worker (bench.crypto's ops).
    "bench-crypto": (
        "meterseal.bench.crypto",
        "meterseal.bench.plot",
        "meterseal.bench.timing",
        "meterseal.bench.trusted_worker",
        "meterseal.ui",
        *TRUST_RUNTIME,
    ),
    # A Dask worker of the batch jobs (`jobs.attest`'s plugin): the jobs, the auditor and the
    # store it reads, the fraud pipeline's per-chunk step, holding the authority's key.
    "jobs-worker": (
        "meterseal.jobs",
        "meterseal.billing",
        *STORE,
        "meterseal.fraud",
        "meterseal.meter",
        "meterseal.acquisition",
        "meterseal.transparency",
        "meterseal.runtime",
        "meterseal.ui",
        *TRUST_RUNTIME,
    ),
}
# The modules a stage's process imports to run it: tests/trust checks that the stage's
# STAGE_MODULES cover their import closure. Services that start a stage add their module here.
# A service process starts at `python -m meterseal.services` (services/__main__.py).
_SERVICE_ENTRIES = ("meterseal.services.__main__", "meterseal.services.workers", *TRUST_RUNTIME)
_DISSEMINATION_ENTRIES = (
    "meterseal.dissemination.__main__",
    "meterseal.dissemination.service",
    "meterseal.dissemination.provision",
    *TRUST_RUNTIME,
)
STAGE_ENTRIES: dict[str, tuple[str, ...]] = {
    "open-verify": ("meterseal.acquisition.stages", *_SERVICE_ENTRIES),
    "anonymize-store": ("meterseal.acquisition.anonymize", *_SERVICE_ENTRIES),
    "billing": ("meterseal.billing.service", *_SERVICE_ENTRIES),
    "bench-crypto": ("meterseal.bench.trusted_worker", *TRUST_RUNTIME),
    # `meterseal kvs serve` runs the gateway from kvs.service (the CLI only parses options).
    "kvs-gateway": ("meterseal.kvs.service", *TRUST_RUNTIME),
    # `meterseal cascadb serve` runs it from cascadb.service (the CLI only parses options).
    "cascadb": ("meterseal.cascadb.service", *TRUST_RUNTIME),
    # `python -m meterseal.dissemination serve|aggregate --cas …` (dissemination/__main__.py).
    "dissemination-router": _DISSEMINATION_ENTRIES,
    "dissemination-aggregator": _DISSEMINATION_ENTRIES,
    # a Dask worker process: the plugin, then the tasks it runs (distributed imports them)
    "jobs-worker": (
        "meterseal.jobs.attest",
        "meterseal.jobs.validation",
        "meterseal.jobs.fraud",
        *TRUST_RUNTIME,
    ),
}
# How an operator allows a stage's measurement, for the stages with a command of their own: it
# creates the secrets the stage needs (bucket keys, master secret, TLS identity) and allows
# them all, and the router's measures the configuration of its --allow, none of which
# `cas policy add` does. The CAS's refusal hints name it (as shown to the operator).
STAGE_PROVISIONING: dict[str, str] = {
    "kvs-gateway": "`meterseal kvs provision`",
    "cascadb": "`meterseal cascadb provision`",
    "dissemination-router": "`meterseal router provision` (with the router's --allow)",
    "dissemination-aggregator": "`meterseal router provision` (with the router's --allow)",
}
