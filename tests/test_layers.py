"""Layers import downwards only: core <- runtime <- adapters <- services <- interfaces.

Every module of `meterseal` has a layer (the most specific entry of `LAYERS` that names it);
an import (module level, function level or under TYPE_CHECKING alike: each is a dependency)
of a module in a higher layer fails. Below the interfaces, packages form no cycle either: a
feature package that imports another is never imported back by it. docs/architecture.md
draws the same table.
"""

from __future__ import annotations

import ast
import enum
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import meterseal

PACKAGE_ROOT = Path(meterseal.__file__).parent


class Layer(enum.IntEnum):
    """The layers, lowest first; a module may import its own layer and those below."""

    CORE = 0  # sans-IO: pure functions and small objects; time, randomness, keys are parameters
    RUNTIME = 1  # under every service: lifecycle, HTTP app and server, auth, metrics, addresses
    ADAPTER = 2  # transports, bus, storage, attestation backends, key files, native code
    SERVICE = 3  # stages and adapters composed into runnable processes
    INTERFACE = 4  # the CLI, HTTP APIs, the demo and the experiments behind `meterseal bench`


CORE, RUNTIME, ADAPTER, SERVICE, INTERFACE = Layer

# Most specific prefix wins. A new package has no entry and fails `test_every_module_has_a_layer`
# until someone decides where it stands.
LAYERS: dict[str, Layer] = {
    "meterseal": CORE,
    "meterseal.errors": CORE,
    "meterseal.model": CORE,
    "meterseal.native": CORE,  # finds the optional C extensions; no I/O of its own
    "meterseal.deployment": ADAPTER,  # the deployment's key files
    "meterseal.runner": SERVICE,
    "meterseal.simulation": SERVICE,  # what `meterseal simulate` does: fleet, period, store check
    "meterseal.ui": RUNTIME,  # progress bars and tables: what people see, from any layer above
    "meterseal.__main__": INTERFACE,
    "meterseal.cli": INTERFACE,
    "meterseal.cli_billing": INTERFACE,
    "meterseal.cli_bill_proofs": INTERFACE,
    "meterseal.cli_billdoc": INTERFACE,
    "meterseal.cli_bills": INTERFACE,
    "meterseal.cli_corrections": INTERFACE,
    "meterseal.cli_billing_parts": INTERFACE,
    "meterseal.cli_common": INTERFACE,
    "meterseal.cli_extras": INTERFACE,
    "meterseal.cli_certs": INTERFACE,
    "meterseal.cli_mqtt": INTERFACE,
    "meterseal.cli_accounts": INTERFACE,
    "meterseal.cli_init": INTERFACE,
    "meterseal.cli_keys": INTERFACE,
    "meterseal.cli_kvs": INTERFACE,
    "meterseal.cli_kvs_export": INTERFACE,
    "meterseal.cli_kvs_common": INTERFACE,  # the gateway client the KVS commands share
    "meterseal.cli_meter_certs": INTERFACE,
    "meterseal.bootstrap": SERVICE,  # keys, CAS state, policies and secrets of a new deployment
    "meterseal.demo": INTERFACE,
    "meterseal.demo_serve": INTERFACE,  # demo --serve: the portal on the demo's data
    "meterseal.demo_router": INTERFACE,  # demo --serve's in-process dissemination router
    "meterseal.api": INTERFACE,  # the Python API for programs: a facade over the core and key files
    "meterseal.runtime": RUNTIME,
    "meterseal.runtime.refusals": RUNTIME,  # an API's threaded call, its errors as problems
    "meterseal.runtime.durable": RUNTIME,  # files written whole and synced with their directory
    # Reads one file and the environment (I/O, so not core); every layer above may read settings.
    "meterseal.config": RUNTIME,
    "meterseal.config.cli": INTERFACE,
    "meterseal.config.sections": RUNTIME,  # the file's sections and keys, split from settings
    "meterseal.runtime.transitions": CORE,  # sans-IO: the core protocols' tables use it
    "meterseal.crypto": CORE,
    "meterseal.accounts": CORE,  # roles, password hashes, tokens, API keys, the throttle
    "meterseal.accounts.authn": RUNTIME,  # the runtime's Authenticator over accounts
    "meterseal.accounts.api": INTERFACE,  # sign-in and the access log over HTTP
    "meterseal.transparency": CORE,
    "meterseal.commands": CORE,  # signed meter commands, the verifier, the log's chain
    "meterseal.commands.keys": ADAPTER,  # the operator command key's files
    "meterseal.commands.logfile": ADAPTER,  # the command log on a file
    "meterseal.commands.desk": SERVICE,  # the head-end's side: issue, record, expire
    "meterseal.commands.cli": INTERFACE,
    "meterseal.acquisition": CORE,
    "meterseal.acquisition.http": ADAPTER,
    "meterseal.acquisition.tcp": ADAPTER,
    "meterseal.acquisition.mqtt": ADAPTER,
    "meterseal.acquisition.mqtt_endpoint": ADAPTER,
    "meterseal.acquisition.mosquitto": ADAPTER,
    "meterseal.acquisition.relay": ADAPTER,
    "meterseal.acquisition.relay_pool": ADAPTER,
    "meterseal.acquisition.links": ADAPTER,
    "meterseal.acquisition.memory": ADAPTER,
    "meterseal.acquisition.parallel": ADAPTER,
    "meterseal.acquisition.ingest": ADAPTER,
    "meterseal.acquisition.headend": SERVICE,
    "meterseal.storage": ADAPTER,
    "meterseal.storage.engine": ADAPTER,  # engine settings, split from the schema
    "meterseal.billing": CORE,
    "meterseal.exchange": CORE,  # CSV and ESPI formats, sans-IO
    "meterseal.exchange.importer": ADAPTER,  # into the store
    "meterseal.exchange.cli": INTERFACE,
    "meterseal.exchange.cli_customers": INTERFACE,
    "meterseal.exchange.cli_scope": INTERFACE,
    "meterseal.billing.service": SERVICE,
    "meterseal.billing.auditor": SERVICE,
    "meterseal.billing.api": INTERFACE,
    "meterseal.billing.api_views": INTERFACE,  # the API's answers, split from its routes
    "meterseal.portal": INTERFACE,  # the customer's pages on the bills API
    "meterseal.meter": CORE,
    "meterseal.meter.profiles": CORE,  # the interval grid and profiles, split from load
    "meterseal.meter.provisioning": ADAPTER,
    "meterseal.meter.enrolment": ADAPTER,  # factory-made meters certified and registered
    "meterseal.meter.workload": ADAPTER,
    "meterseal.meter.simulator": ADAPTER,  # the meter side of every transport (MeterLink)
    "meterseal.trust": CORE,
    "meterseal.trust.stages": CORE,  # the stage tables, split from measurement
    "meterseal.trust.cas_store": ADAPTER,
    "meterseal.trust.client": ADAPTER,
    "meterseal.trust.admin_client": ADAPTER,  # an administrator over the CAS API
    "meterseal.trust.material": ADAPTER,
    "meterseal.trust.worker": SERVICE,
    "meterseal.trust.api": INTERFACE,
    "meterseal.trust.cli": INTERFACE,
    "meterseal.services": SERVICE,
    "meterseal.services.bus": ADAPTER,
    "meterseal.services.nats_bus": ADAPTER,
    "meterseal.services.nats_server": ADAPTER,  # writes the nats-server config and certificate
    "meterseal.services.nats_cluster": SERVICE,  # runs a local nats-server cluster (tests, bench)
    "meterseal.services.messages": CORE,
    "meterseal.services.cli": INTERFACE,
    "meterseal.services.__main__": INTERFACE,
    "meterseal.dissemination": CORE,
    "meterseal.dissemination.feed": ADAPTER,
    "meterseal.dissemination.nats_transport": ADAPTER,
    "meterseal.dissemination.inproc": ADAPTER,
    "meterseal.dissemination.service": SERVICE,
    "meterseal.dissemination.provision": SERVICE,
    "meterseal.dissemination.runners": SERVICE,
    "meterseal.dissemination.cli": INTERFACE,
    "meterseal.dissemination.cli_serve": INTERFACE,
    "meterseal.dissemination.cli_consent": INTERFACE,
    "meterseal.dissemination.customers": ADAPTER,  # the store's meters, the anonymization key
    "meterseal.dissemination.__main__": INTERFACE,
    "meterseal.integrity": ADAPTER,  # the monitor: ptrace, seccomp, ELF files, gcc
    "meterseal.integrity.judgement": CORE,
    "meterseal.integrity.behaviour": CORE,
    "meterseal.integrity.trace": CORE,
    "meterseal.integrity.errors": CORE,
    "meterseal.integrity.report": CORE,
    "meterseal.integrity.section": CORE,
    "meterseal.integrity.platform_key": CORE,
    "meterseal.integrity.auditlog": ADAPTER,
    "meterseal.integrity.cli": INTERFACE,
    "meterseal.fraud": CORE,
    "meterseal.fraud.readers": ADAPTER,
    "meterseal.fraud.model": ADAPTER,  # model files (joblib)
    "meterseal.fraud.stream": ADAPTER,  # CSV files read in chunks
    "meterseal.fraud.plots": INTERFACE,
    "meterseal.fraud.report": ADAPTER,  # rankings and evaluations written as CSV and tables
    "meterseal.fraud.cli": INTERFACE,
    "meterseal.bench": INTERFACE,
    "meterseal.jobs": CORE,  # the controller modes, the monitor, the job lifecycle: sans-IO
    "meterseal.jobs.engine": ADAPTER,  # Dask distributed: the cluster and its scaling
    "meterseal.jobs.kubernetes": ADAPTER,  # scaling Dask workers as a Kubernetes Job's pods
    "meterseal.jobs.runner": ADAPTER,  # chunks as Dask tasks under the monitor and controller
    "meterseal.jobs.validation": SERVICE,  # the audit of a period's bills, chunk by chunk
    "meterseal.jobs.fraud": ADAPTER,  # the fraud analysis's per-chunk step as Dask tasks
    "meterseal.jobs.records": ADAPTER,  # durable job records, one JSON file per job
    "meterseal.jobs.metrics": RUNTIME,  # the Monitor's figures as Prometheus metrics
    "meterseal.jobs.manager": SERVICE,  # submit, run, cancel, list
    "meterseal.jobs.applications": SERVICE,  # one run of a validation, fraud, re-encode job
    "meterseal.jobs.submission": SERVICE,  # a job as asked (input, control, site) and as seen
    "meterseal.jobs.kvs_source": SERVICE,  # the fraud job reading the KVS export
    "meterseal.jobs.reencode": SERVICE,  # a KVS bucket re-encoded through its gateway client
    "meterseal.jobs.attest": SERVICE,  # workers attest to the CAS for the job's keys (a plugin)
    "meterseal.jobs.service": SERVICE,  # a served Manager: its runner thread and its Stage
    "meterseal.jobs.client": SERVICE,  # a client of a served Manager's API (the CLI's --url)
    "meterseal.jobs.http_api": INTERFACE,  # the Manager over the runtime's HTTP API
    "meterseal.cli_jobs": INTERFACE,
    "meterseal.kvs": ADAPTER,  # the secure KVS: nodes, catalogs, the store engine
    "meterseal.kvs.policy": CORE,
    "meterseal.kvs.sealing": CORE,
    "meterseal.kvs.erasure": CORE,  # pyeclib in memory: no I/O
    "meterseal.kvs.erasure_native": CORE,  # liberasurecode via ctypes, in memory: no I/O
    "meterseal.kvs.manifest": CORE,
    "meterseal.kvs.freshness": CORE,  # refusing manifests older than one seen
    "meterseal.kvs.chunks": CORE,  # cutting streams into chunks, chunks into blobs
    "meterseal.kvs.nodes": ADAPTER,
    "meterseal.kvs.nats_nodes": ADAPTER,  # nodes, replica sets and catalog on NATS JetStream
    "meterseal.kvs.nats_stream": ADAPTER,  # one JetStream stream of split blobs
    "meterseal.kvs.listing": ADAPTER,  # the store's name index for paged listing
    "meterseal.kvs.store": ADAPTER,
    "meterseal.kvs.store_read": ADAPTER,  # the store's reads: blobs checked, decoded, opened
    "meterseal.kvs.pool": ADAPTER,  # the nodes, their health, where a write goes
    "meterseal.kvs.repair": ADAPTER,  # scrub: checks and rebuilds blobs through the store
    "meterseal.kvs.gateway_keys": CORE,  # API keys and their scopes, sans-IO
    "meterseal.kvs.gateway_auth": SERVICE,  # the gateway's authenticator and access rules
    "meterseal.kvs.gateway_state": SERVICE,
    "meterseal.kvs.gateway_reencode": SERVICE,  # background re-encoding, stored and resumed
    "meterseal.kvs.gateway_http": SERVICE,
    "meterseal.kvs.gateway": SERVICE,  # the gateway's REST API
    "meterseal.kvs.gateway_client": SERVICE,  # its client (CLI, benches)
    "meterseal.kvs.service": SERVICE,  # the attested gateway as a running service
    "meterseal.kvs.service_trust": SERVICE,  # its CAS policy, secrets and attestation
    "meterseal.kvs.service_health": SERVICE,  # its storage nodes' health, for /readyz
    "meterseal.kvs.service_sweep": SERVICE,  # its background sweep of unnamed blobs
    "meterseal.cascadb": CORE,  # SQL to ordered keys: parser, plan, executor over an OrderedKv
    "meterseal.cascadb.kvs_adapter": ADAPTER,  # the OrderedKv on the secure KVS
    "meterseal.cascadb.gateway_kv": SERVICE,  # the OrderedKv through the KVS gateway client
    "meterseal.cascadb.pgwire": SERVICE,  # the PostgreSQL wire protocol server: startup, login
    "meterseal.cascadb.pgwire_queries": SERVICE,  # its sessions after login: the query loop
    "meterseal.cascadb.http_api": SERVICE,  # the JSON-over-HTTP API (as kvs.gateway's REST API)
    "meterseal.cascadb.identities": RUNTIME,  # the accounts' identities on HTTP and the protocol
    "meterseal.cascadb.service": SERVICE,  # the attested server: JSON API and PostgreSQL protocol
    "meterseal.cascadb.service_trust": SERVICE,  # its CAS policy, secrets and attestation
    "meterseal.cli_cascadb": INTERFACE,
    "meterseal.kvs.export": SERVICE,  # exported customer months: the platform's use of the KVS
    "meterseal.kvs.export_format": SERVICE,
    "meterseal.kvs.export_objects": SERVICE,
    "meterseal.kvs.export_read": SERVICE,
    "meterseal.kvs.export_store": SERVICE,
    "meterseal.kvs.export_gateway": SERVICE,
    "meterseal.agent": CORE,  # the driver protocol, frame codecs and readings: sans-IO
    "meterseal.agent.nbr_driver": ADAPTER,  # NBR 14522 reader over TCP or a serial device
    "meterseal.agent.nbr_emulator": ADAPTER,  # emulated NBR 14522 meters on TCP ports
    "meterseal.agent.nbr_sealed_link": ADAPTER,  # the sealed, asynchronous NBR 14522 on TCP
    "meterseal.agent.serial_port": ADAPTER,  # serial devices and pseudo-terminals as streams
    "meterseal.agent.link_keys": ADAPTER,  # key files of sealed links
    "meterseal.agent.protocols": ADAPTER,  # protocol name -> driver factory
    "meterseal.agent.dlms_driver": ADAPTER,  # DLMS/COSEM client (dlms-cosem) over TCP
    "meterseal.agent.dlms_emulator": ADAPTER,  # emulated DLMS meters on TCP ports
    "meterseal.agent.dlms_keys": ADAPTER,  # DLMS meters' secrets file
    "meterseal.agent.spool": ADAPTER,  # the agent's sealed packets, kept to resend as they are
    "meterseal.agent.dlms_cli": INTERFACE,  # agent emulate-dlms
    "meterseal.agent.emulation": INTERFACE,  # the emulators' meter list and serving
    "meterseal.agent.dlms_commands": SERVICE,  # signed commands carried out through a driver
    "meterseal.agent.runner": SERVICE,  # the agent's pass: read, seal, send to the head-end
    "meterseal.agent.cli": INTERFACE,  # meterseal agent run | emulate
}


def module_name(path: Path) -> str:
    """The dotted name of a source file of the package."""
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of meterseal, by dotted name."""
    return {module_name(path): path for path in sorted(PACKAGE_ROOT.rglob("*.py"))}


def imported(name: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every meterseal module that `name` imports, wherever the import is."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:  # `from pkg import module` imports the module
                yield node.lineno, f"{base}.{alias.name}"


def layer_of(name: str) -> Layer | None:
    """The layer of module `name`: the most specific LAYERS entry naming it or a parent package.

    Every module directly in meterseal/ and every package needs an entry of its own.
    """
    parts = name.split(".")
    for end in range(len(parts), 1, -1):
        layer = LAYERS.get(".".join(parts[:end]))
        if layer is not None:
            return layer
    return LAYERS["meterseal"] if name == "meterseal" else None


def edges() -> Iterator[tuple[str, int, str]]:
    """(importer, line, imported module) for every import of a meterseal module."""
    known = modules()
    for name, path in known.items():
        for line, target in imported(name, path):
            if target in known:
                yield name, line, target


def test_every_module_has_a_layer() -> None:
    unplaced = [name for name in modules() if layer_of(name) is None]
    assert unplaced == [], f"give these a layer in LAYERS: {unplaced}"


Edge = tuple[str, int, str]


def upward(found: Iterable[Edge]) -> list[str]:
    """Each import of a module in a higher layer than the importer's, as a line of text."""
    return [
        f"{importer}:{line} ({_name(importer)}) imports {target} ({_name(target)})"
        for importer, line, target in found
        if _rank(target) > _rank(importer)
    ]


def _rank(module: str) -> int:
    layer = layer_of(module)
    return -1 if layer is None else int(layer)  # unplaced modules fail their own test


def _name(module: str) -> str:
    layer = layer_of(module)
    return "no layer" if layer is None else layer.name


def feature_package(name: str) -> str:
    """The top-level package (or module) of meterseal that `name` belongs to."""
    return ".".join(name.split(".")[:2])


def both_ways(found: Iterable[Edge]) -> list[str]:
    """Pairs of feature packages that import each other from below the services."""
    # Services and interfaces compose across packages (the head-end in acquisition builds on
    # storage, which stores acquisition's records); below them, a dependency between two
    # feature packages runs one way.
    depends = {
        (feature_package(importer), feature_package(target))
        for importer, _, target in found
        if _below_services(importer)
    }
    return sorted(f"{a} <-> {b}" for a, b in depends if a < b and (b, a) in depends)


def _below_services(module: str) -> bool:
    layer = layer_of(module)
    return layer is not None and layer < Layer.SERVICE


def test_layers_import_downwards_only() -> None:
    found = upward(edges())
    assert found == [], "\n".join(found)


def test_feature_packages_form_no_cycle() -> None:
    assert both_ways(edges()) == []


def test_the_checks_can_fail() -> None:
    assert upward([("meterseal.crypto.packet", 1, "meterseal.cli")]) != []
    assert upward([("meterseal.storage.store", 1, "meterseal.runtime.http")]) == []
    assert upward([("meterseal.runtime.http", 1, "meterseal.storage.store")]) != []
    cycle = [
        ("meterseal.storage.store", 1, "meterseal.billing.compute"),
        ("meterseal.billing.compute", 1, "meterseal.storage.schema"),
    ]
    assert both_ways(cycle) == ["meterseal.billing <-> meterseal.storage"]
    assert both_ways(cycle[:1]) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import meterseal.cli\n", {"meterseal.cli"}),
        ("from meterseal.billing import api\n", {"meterseal.billing", "meterseal.billing.api"}),
        ("def f():\n    from .tcp import X\n", {"meterseal.acquisition.tcp"}),
        ("from . import tcp\n", {"meterseal.acquisition", "meterseal.acquisition.tcp"}),
    ],
)
def test_imports_are_found_wherever_they_are(
    tmp_path: Path, source: str, expected: set[str]
) -> None:
    path = tmp_path / "meterseal" / "acquisition" / "example.py"
    path.parent.mkdir(parents=True)
    path.write_text(source)
    found = {target for _, target in imported("meterseal.acquisition.example", path)}
    assert expected <= found
    assert all(target.startswith("meterseal") for target in found)
