"""CascaDB served attested: keys from the CAS, TLS, the accounts' identities, values unlogged.

The server runs in-process on port 0 (both listeners), attests to a CAS served over HTTP with
the simulated attestation backend (the protocol is real, the hardware guarantee is not), and
keeps its database in a bucket of local KVS storage nodes or in memory.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.accounts.credentials import TokenSigner, ensure_token_key, token_key
from meterseal.accounts.model import Role
from meterseal.cascadb.service import CascadbOptions, serve_cascadb
from meterseal.cascadb.service_trust import (
    CASCADB_STAGE,
    attest_cascadb,
    bucket_secret,
    provision_cascadb,
)
from meterseal.crypto import certs
from meterseal.errors import ConfigurationError
from meterseal.kvs.sealing import derive_bucket_key
from meterseal.kvs.service import StoreLayout
from meterseal.kvs.service_trust import MASTER_SECRET
from meterseal.runtime.http import ThreadedServer
from meterseal.runtime.tls import client_context
from meterseal.services.trusted_setup import issue_worker_tls
from meterseal.storage import Store
from meterseal.storage.accounts import AccountStore
from meterseal.trust.api import create_cas_app
from meterseal.trust.attestation import SimulatedAttester
from meterseal.trust.errors import ReleaseRefused
from meterseal.trust.state import MemoryCasState
from meterseal.trust.worker import tls_secret
from tests.accounts.people import PASSWORD, Clock, People
from tests.command_line import invoke
from tests.nats_cluster import running_cluster
from tests.trust.conftest import World, make_world, platform

BUCKET = "meters"


@dataclass
class Deployment:
    """A CAS (served), the deployment CA's certificate, the accounts' store and its people."""

    world: World
    cas_url: str
    ca: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    store: str
    people: People

    def options(self, tmp_path: Path, *, memory: bool = False) -> CascadbOptions:
        """Options of a server on free ports, over three local storage nodes (or memory)."""
        layout = None if memory else StoreLayout(tmp_path / "kvs", 3)
        return CascadbOptions(
            self.world.directory,
            self.cas_url,
            self.store,
            layout,
            bucket=BUCKET,
            default_policy="rep:2",
            listen="127.0.0.1:0",
            pg_listen="127.0.0.1:0",
        )

    def provision(self) -> None:
        """What `meterseal cascadb provision --bucket meters --host 127.0.0.1` does."""
        provision_cascadb(
            self.world.cas,
            os.urandom,
            buckets=[BUCKET],
            issue_tls=lambda cas, stage: issue_worker_tls(
                cas, self.ca_key, self.ca, stage, ["127.0.0.1"]
            ),
            hosts=["127.0.0.1"],
        )


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    directory = platform(tmp_path / "deployment")
    world = make_world(directory, MemoryCasState())
    ca_key, ca = certs.create_ca("cascadb CA", now=dt.datetime.now(dt.UTC), rng=os.urandom)
    (directory / "ca.cert.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    ensure_token_key(directory, None)
    url = f"sqlite:///{tmp_path / 'meterseal.db'}"
    with Store.open(url) as store, ThreadedServer(create_cas_app(world.cas)) as cas_url:
        people = People(AccountStore(store), Clock(dt.datetime.now(dt.UTC).timestamp()))
        people.signer = TokenSigner(token_key(directory, None))  # the deployment's, as servers'
        yield Deployment(world, cas_url, ca, ca_key, url, people)


class Served:
    """`serve_cascadb` in a thread of its own: what it announced and logged, its addresses."""

    def __init__(self, options: CascadbOptions) -> None:
        self.announced: list[str] = []
        self.logged: list[str] = []
        self.error: BaseException | None = None
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.thread = threading.Thread(target=self._run, args=(options,), daemon=True)
        self.thread.start()

    def _run(self, options: CascadbOptions) -> None:
        serving = serve_cascadb(
            options, announce=self.announced.append, log=self.logged.append, stop=self.stop
        )
        try:
            self.loop.run_until_complete(serving)
        except BaseException as exc:  # handed to the test
            self.error = exc

    def wait_ready(self) -> Served:
        """Wait until it is ready; raise what stopped it otherwise."""
        for _ in range(600):
            if "ready cascadb" in self.announced:
                return self
            if not self.thread.is_alive():
                raise self.error or AssertionError(f"stopped: {self.announced}")
            self.thread.join(0.05)
        raise AssertionError(f"not ready: {self.announced}")

    def address(self, name: str) -> str:
        """The address of `listening NAME ADDRESS`."""
        prefix = f"listening {name} "
        return next(line[len(prefix) :] for line in self.announced if line.startswith(prefix))

    def close(self) -> None:
        """Stop it and wait for it to end."""
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)
        assert not self.thread.is_alive()
        assert self.error is None, self.error


@pytest.fixture
def served(deployment: Deployment, tmp_path: Path) -> Iterator[Served]:
    deployment.provision()
    running = Served(deployment.options(tmp_path)).wait_ready()
    try:
        yield running
    finally:
        running.close()


def _dsn(deployment: Deployment, served: Served, tmp_path: Path, user: str, password: str) -> str:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(deployment.ca.public_bytes(serialization.Encoding.PEM))
    host, port = served.address("cascadb-pg").removeprefix("postgresql://").rsplit(":", 1)
    return (
        f"host={host} port={port} dbname=cascadb user={user} password={password} "
        f"sslmode=verify-full sslrootcert={ca}"
    )


def test_psycopg_over_tls_with_an_api_key_then_the_json_api(
    deployment: Deployment, served: Served, tmp_path: Path
) -> None:
    people = deployment.people
    people.add("mdc", Role.OPERATOR)
    key = people.api_key("mdc", Role.OPERATOR)
    with psycopg.connect(_dsn(deployment, served, tmp_path, "mdc", key), autocommit=True) as conn:
        assert conn.pgconn.ssl_in_use
        conn.execute(
            "CREATE TABLE reading(meter TEXT, ts BIGINT, kwh NUMERIC(10, 3), "
            "PRIMARY KEY (meter, ts))"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO reading VALUES (%s, %s, %s)",
                [("CUST-0042", t, f"{t}.125") for t in range(4)],
            )
            cur.execute(
                "SELECT ts, kwh FROM reading WHERE meter = %s AND ts >= %s ORDER BY ts",
                ("CUST-0042", 2),
            )
            assert [(ts, str(kwh)) for ts, kwh in cur.fetchall()] == [(2, "2.125"), (3, "3.125")]
    verify = client_context(deployment.ca)
    api = served.address("cascadb")
    assert api.startswith("https://")
    with httpx.Client(base_url=api, verify=verify) as client:
        answer = client.post(
            "/v1/sql",
            json={
                "sql": "SELECT COUNT(*), SUM(kwh) FROM reading WHERE meter = ?",
                "params": ["CUST-0042"],
            },
            headers={"Authorization": f"Bearer {key}"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["rows"] == [[4, "6.500"]]
    # the rows are sealed on the storage nodes: no value is there in the clear
    stored = b"".join(p.read_bytes() for p in (tmp_path / "kvs").rglob("*") if p.is_file())
    assert stored
    assert b"CUST-0042" not in stored
    assert b"3.125" not in stored
    # and the log said who ran which statement, never a value
    logged = "\n".join(served.logged)
    assert "mdc: INSERT INTO reading VALUES ($1, $2, $3)" in served.logged
    assert "mdc: SELECT COUNT(*), SUM(kwh) FROM reading WHERE meter = $1" in served.logged
    assert "CUST-0042" not in logged
    assert "125" not in logged


def test_the_json_api_refuses_absent_wrong_and_unentitled_identities(
    deployment: Deployment, served: Served
) -> None:
    people = deployment.people
    people.add("alice", Role.CUSTOMER, customer_id="CUST-A")
    people.add("ops", Role.OPERATOR)
    customer_key = people.api_key("alice", Role.CUSTOMER)
    body = {"sql": "SELECT 1"}
    with httpx.Client(
        base_url=served.address("cascadb"), verify=client_context(deployment.ca)
    ) as client:
        assert client.post("/v1/sql", json=body).status_code == 401
        wrong = {"Authorization": "Bearer msk_0123456789abcdef_not-the-secret"}
        assert client.post("/v1/sql", json=body, headers=wrong).status_code == 401
        customer = {"Authorization": f"Bearer {customer_key}"}
        assert client.post("/v1/sql", json=body, headers=customer).status_code == 403
        # a login token of an operator (the bills API or the CAS signs it with the same key)
        token = people.headers("ops")
        assert client.post("/v1/sql", json=body, headers=token).json()["rows"] == [[1]]
    assert served.logged == ["ops: SELECT ?"]


def test_the_protocol_takes_the_accounts_password_and_refuses_others(
    deployment: Deployment, served: Served, tmp_path: Path
) -> None:
    people = deployment.people
    people.add("admin", Role.ADMINISTRATOR)
    people.add("bob", Role.CUSTOMER, customer_id="CUST-B")
    dsn = _dsn(deployment, served, tmp_path, "admin", PASSWORD.replace(" ", "-"))
    refused = "password authentication failed"
    with pytest.raises(psycopg.OperationalError, match=refused):
        psycopg.connect(dsn)  # not the password
    with psycopg.connect(_dsn(deployment, served, tmp_path, "admin", f"'{PASSWORD}'")) as conn:
        assert conn.execute("SELECT %s::text", ("ok",)).fetchone() == ("ok",)
    with pytest.raises(psycopg.OperationalError, match=refused):  # the right password, a customer
        psycopg.connect(_dsn(deployment, served, tmp_path, "bob", f"'{PASSWORD}'"))
    key = people.api_key("admin", Role.ADMINISTRATOR)
    with pytest.raises(psycopg.OperationalError, match=refused):  # another account's key
        psycopg.connect(_dsn(deployment, served, tmp_path, "bob", key))
    plain = dsn.split(" sslmode=")[0] + " sslmode=disable"
    with pytest.raises(psycopg.OperationalError, match="must use TLS"):
        psycopg.connect(plain)


def test_readyz_and_metrics_on_the_admin_endpoint(
    deployment: Deployment, served: Served, tmp_path: Path
) -> None:
    deployment.people.add("mdc", Role.OPERATOR)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(_dsn(deployment, served, tmp_path, "mdc", "wrong"))
    admin = served.address("admin")
    with httpx.Client(base_url=admin) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["state"] == "ready"
        metrics = client.get("/metrics").text
    assert 'meterseal_cascadb_pg_total{kind="refused"} 1.0' in metrics


def test_without_attestation_it_gets_no_key_and_does_not_start(
    deployment: Deployment, tmp_path: Path
) -> None:
    # no policy for CascaDB in the CAS: nothing is released, nothing listens
    server = Served(deployment.options(tmp_path))
    server.thread.join(60)
    assert isinstance(server.error, ReleaseRefused)
    assert not any(line.startswith("listening") for line in server.announced)
    # provisioned, but quoted by a platform the CAS does not trust
    deployment.provision()
    other = platform(tmp_path / "elsewhere")
    with pytest.raises(ReleaseRefused):
        attest_cascadb(
            deployment.cas_url,
            deployment.world.directory,
            bucket=BUCKET,
            attester=SimulatedAttester.from_deployment(other),
        )
    # nor is another bucket's key released to it
    with pytest.raises(ReleaseRefused):
        attest_cascadb(
            deployment.cas_url,
            deployment.world.directory,
            bucket="billing",
            attester=deployment.world.attester,
        )


def test_attested_it_holds_its_bucket_key_only(deployment: Deployment) -> None:
    deployment.provision()
    released = attest_cascadb(
        deployment.cas_url,
        deployment.world.directory,
        bucket=BUCKET,
        attester=deployment.world.attester,
    )
    cas = deployment.world.cas
    master = cas.state.latest_secret(MASTER_SECRET)
    assert master is not None
    opened = cas.vault.open(MASTER_SECRET, master.version, master.sealed)
    assert released.bucket_key == derive_bucket_key(opened, BUCKET)  # what the gateway seals with
    assert released.bucket_key.hex() not in repr(secrets)
    assert "simulated" in released.provenance
    assert certs.service_of(released.tls.certificate) == CASCADB_STAGE
    policy = {(rule.stage, rule.secret) for rule in cas.state.rules()}
    assert (CASCADB_STAGE, MASTER_SECRET) not in policy
    assert {
        (CASCADB_STAGE, bucket_secret(BUCKET)),
        (CASCADB_STAGE, tls_secret(CASCADB_STAGE)),
    } <= policy


def test_provisioning_keeps_keys_and_needs_hosts_for_its_first_tls_identity(
    deployment: Deployment,
) -> None:
    cas = deployment.world.cas
    with pytest.raises(ConfigurationError, match="--host"):
        provision_cascadb(cas, os.urandom, buckets=[BUCKET])
    deployment.provision()
    again = provision_cascadb(cas, os.urandom, buckets=[BUCKET])
    assert again.secrets == {
        bucket_secret(BUCKET): (1, False),
        tls_secret(CASCADB_STAGE): (1, False),
    }


def test_in_memory_it_still_attests_for_its_tls_key(deployment: Deployment, tmp_path: Path) -> None:
    deployment.provision()
    deployment.people.add("mdc", Role.OPERATOR)
    key = deployment.people.api_key("mdc", Role.OPERATOR)
    running = Served(replace(deployment.options(tmp_path, memory=True))).wait_ready()
    try:
        assert "database in memory: gone when the server stops" in running.announced
        with psycopg.connect(_dsn(deployment, running, tmp_path, "mdc", key)) as conn:
            assert conn.execute("SELECT %s + 1", (41,)).fetchone() == (42,)
    finally:
        running.close()
    assert not (tmp_path / "kvs").exists()


def test_over_storage_nodes_on_nats(deployment: Deployment, tmp_path: Path) -> None:
    with running_cluster(tmp_path / "nats", 3) as cluster:
        deployment.provision()
        deployment.people.add("mdc", Role.OPERATOR)
        key = deployment.people.api_key("mdc", Role.OPERATOR)
        namespace = f"cdb{secrets.token_hex(4)}"  # this run's streams on the cluster
        layout = StoreLayout(tmp_path / "unused", 3, ",".join(cluster.urls), namespace)
        options = replace(deployment.options(tmp_path), layout=layout)
        running = Served(options).wait_ready()
        try:
            assert any(f"KVS_{namespace}_" in line for line in running.announced)
            dsn = _dsn(deployment, running, tmp_path, "mdc", key)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("CREATE TABLE m(id BIGINT PRIMARY KEY, v TEXT)")
                conn.execute("INSERT INTO m VALUES (%s, %s), (%s, %s)", (10, "ten", 9, "nine"))
                assert conn.execute(
                    "SELECT v FROM m WHERE id >= %s ORDER BY id", (9,)
                ).fetchall() == [
                    ("nine",),
                    ("ten",),
                ]
        finally:
            running.close()
        assert not (tmp_path / "unused").exists()  # nothing on local disks


def test_the_command_refuses_to_start_without_a_release(
    deployment: Deployment, tmp_path: Path
) -> None:
    common = ["-d", str(deployment.world.directory), "--cas", deployment.cas_url,
              "--store", deployment.store, "--dir", str(tmp_path / "kvs"), "--nodes", "3",
              "--default-policy", "rep:2", "--listen", "127.0.0.1:0", "--pg-listen", "127.0.0.1:0",
              "--admin", "off"]  # fmt: skip
    refused = invoke(["cascadb", "serve", *common], env={"MS_CONFIG": "none", "COLUMNS": "200"})
    assert refused.exit_code == 2, refused.output
    assert "the CAS refused to release secrets" in refused.output
    assert "(stage cascadb) is not allowed secret 'tls/cascadb'" in refused.output
    assert "listening" not in refused.output
    assert not (tmp_path / "kvs").exists()  # no store opened, no node touched


def test_the_idle_in_transaction_timeout_of_the_options_reaches_the_protocol(
    deployment: Deployment, tmp_path: Path
) -> None:
    deployment.provision()
    deployment.people.add("mdc", Role.OPERATOR)
    key = deployment.people.api_key("mdc", Role.OPERATOR)
    options = replace(deployment.options(tmp_path, memory=True), idle_in_transaction_timeout=0.3)
    running = Served(options).wait_ready()
    try:
        dsn = _dsn(deployment, running, tmp_path, "mdc", key)
        with psycopg.connect(dsn) as idle, psycopg.connect(dsn, autocommit=True) as other:
            other.execute("CREATE TABLE t(k INTEGER PRIMARY KEY)")
            idle.execute("INSERT INTO t VALUES (1)")  # then nothing: it holds the write lock
            # waits for the idle session to be ended (the default, 60 s, outlasts lock_timeout)
            other.execute("INSERT INTO t VALUES (2)")
            with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
                idle.execute("SELECT 1")
            assert other.execute("SELECT k FROM t").fetchall() == [(2,)]
    finally:
        running.close()
