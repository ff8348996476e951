"""`meterseal init DIR`: one command makes a deployment that trusted mode can start from.

Every trusted stage (the three of `serve --mode trusted`, the dissemination router and
aggregator) finds a rule for this checkout's measurement and every secret it asks for, so a
real attested release succeeds for each; a directory that holds anything is refused, and
`--force` completes one without replacing a key.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from meterseal.bench.served import Served
from meterseal.cascadb.service_trust import CASCADB_STAGE, bucket_secret
from meterseal.crypto.at_rest import is_encrypted
from meterseal.dissemination.service import (
    AGGREGATOR_SECRETS,
    AGGREGATOR_STAGE,
    ROUTER_SECRETS,
    ROUTER_STAGE,
    default_allow,
    router_config,
)
from meterseal.kvs.service_trust import KVS_STAGE, MASTER_SECRET
from meterseal.services.catalog import TRUSTED_SERVICES
from meterseal.services.keys import STAGE_SECRETS
from meterseal.storage import Store
from meterseal.trust.attestation import SimulatedAttester, SimulatedVerifier
from meterseal.trust.cas import Cas, ReleaseRequest
from meterseal.trust.cas_store import CasStore
from meterseal.trust.channel import EphemeralKey
from meterseal.trust.measurement import stage_measurement
from meterseal.trust.vault import Vault
from tests.command_line import invoke

WANTED = {
    **{stage: STAGE_SECRETS[stage] for stage in TRUSTED_SERVICES},
    ROUTER_STAGE: tuple(ROUTER_SECRETS),
    AGGREGATOR_STAGE: tuple(AGGREGATOR_SECRETS),
    KVS_STAGE: (MASTER_SECRET,),
    CASCADB_STAGE: ("tls/cascadb", bucket_secret("cascadb")),
}


def _init(*args: str) -> str:
    result = invoke(["init", *args], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One `meterseal init` for the module (RSA-4096 keys take a moment): (DIR, output)."""
    directory = tmp_path_factory.mktemp("init") / "north"
    return directory, _init(str(directory))


def test_every_trusted_stage_is_released_its_secrets_by_the_cas_init_made(
    deployment: tuple[Path, str],
) -> None:
    directory, _ = deployment
    measurements = {stage: stage_measurement(stage) for stage in WANTED}
    measurements[ROUTER_STAGE] = stage_measurement(ROUTER_STAGE, router_config(default_allow()))
    attester = SimulatedAttester.from_deployment(directory)
    with Store.open(f"sqlite:///{directory / 'meterseal.db'}") as store:
        cas = Cas(
            CasStore(store),
            Vault.from_deployment(directory),
            [SimulatedVerifier.from_deployment(directory)],
        )
        for stage, names in WANTED.items():
            key = EphemeralKey.generate()
            quote = attester.quote(measurements[stage], cas.issue_nonce().nonce, key.public_bytes)
            released = cas.release(ReleaseRequest(stage, quote, tuple(names)))
            assert {s.name for s in released.secrets} == set(names), stage


def test_init_prints_what_it_made_and_the_next_commands(deployment: tuple[Path, str]) -> None:
    directory, output = deployment
    text = " ".join(output.split())
    for stage in WANTED:
        assert f"policy {stage} " in text
    assert f"policy open-verify {stage_measurement('open-verify').hex} may receive" in text
    assert "secret stage-key v1" in text
    # the batch jobs' workers attest for the authority's key (cas.url makes jobs attested)
    jobs = f"policy jobs-worker {stage_measurement('jobs-worker').hex} may receive"
    assert f"{jobs} jobs/metrology-key" in text
    assert "secret jobs/metrology-key v1" in text
    assert f"created {directory / 'stage-link.key'}" in text
    assert f"from elsewhere: meterseal --config {directory / 'meterseal.toml'}" in text
    for command in (
        "meterseal cas serve --listen 127.0.0.1:7490",
        "meterseal meters provision 100",
        "meterseal meters register fleet-p256.cbor",
        "meterseal serve --mode trusted",
        "meterseal kvs serve",
        "meterseal cascadb serve",
    ):
        assert f" {command} " in f"{text} "
    config = tomllib.loads((directory / "meterseal.toml").read_text())
    # DIR's name and a random suffix: two operators' `init north` do not share a namespace.
    name = config["deployment"].pop("name")
    assert re.fullmatch(r"north_[0-9a-f]{4}", name)
    assert f"deployment name {name}: NATS streams {name.upper()}_" in text
    assert config["deployment"] == {"dir": ".", "passphrase_env": "MS_PASSPHRASE"}
    assert config["store"]["url"] == "sqlite:///meterseal.db"
    assert config["cas"] == {"url": "http://127.0.0.1:7490", "listen": "127.0.0.1:7490"}
    assert (directory / "router" / "authority.key.pem").exists()


def test_a_directory_that_holds_anything_is_refused_and_force_keeps_every_key(
    deployment: tuple[Path, str],
) -> None:
    directory, _ = deployment
    before = {p.name: p.read_bytes() for p in directory.iterdir() if p.suffix in {".pem", ".key"}}
    refused = invoke(["init", str(directory)])
    assert refused.exit_code == 2
    assert "is not empty" in refused.output
    assert "--force" in refused.output
    again = " ".join(_init(str(directory), "--force").split())
    assert "kept deployment keys" in again
    assert "secret headend-keys v1 (kept)" in again
    assert "secret stage-key v1 (kept)" in again
    assert "secret jobs/metrology-key v1 (kept)" in again
    after = {p.name: p.read_bytes() for p in directory.iterdir() if p.suffix in {".pem", ".key"}}
    assert after == before
    name = tomllib.loads((directory / "meterseal.toml").read_text())["deployment"]["name"]
    assert f"deployment name {name}:" in again  # --force keeps the name (and so the schema)


def test_a_non_empty_directory_is_left_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = invoke(["init", str(tmp_path)])
    assert result.exit_code == 2
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_store_that_holds_another_deployment_is_refused_before_any_file(
    deployment: tuple[Path, str], tmp_path: Path
) -> None:
    # Two deployments given one store (a shared SQLite file, or one PostgreSQL database and
    # the same name, hence the same schema) would mix their CAS state and their meters.
    directory, _ = deployment
    shared = f"sqlite:///{directory / 'meterseal.db'}"
    other = tmp_path / "south"
    refused = invoke(["init", str(other), "--store", shared], env={"COLUMNS": "250"})
    assert refused.exit_code == 2, refused.output
    text = " ".join(refused.output.split())
    assert "already holds a deployment" in text
    assert "--name" in text
    assert not other.exists() or not any(other.iterdir())


def test_the_configured_cas_is_for_trusted_mode_only(deployment: tuple[Path, str]) -> None:
    directory, _ = deployment
    config = ["--config", str(directory / "meterseal.toml")]
    # Monolith and services mode leave the file's CAS URL alone (workers 0: it stops there).
    services = invoke([*config, "serve", "--mode", "services", "--workers", "0"])
    assert "needs at least one worker per stage" in services.output, services.output
    # A --cas given on the command line is the operator's: refused without trusted mode.
    explicit = invoke([*config, "serve", "--mode", "services", "--cas", "http://127.0.0.1:1"])
    assert explicit.exit_code == 2
    assert "--cas URL goes with --mode trusted" in " ".join(explicit.output.split())


@pytest.mark.services
def test_a_postgresql_store_is_set_up_where_the_config_points(
    tmp_path: Path, unique_name: str
) -> None:
    from meterseal.config import load_settings
    from tests.services import require_service
    from tests.storage.databases import PG_URL, _probe_postgres

    require_service("PostgreSQL", PG_URL, _probe_postgres)
    directory = tmp_path / "south"
    _init(str(directory), "--store", PG_URL, "--name", unique_name, "--no-dissemination")
    settings = load_settings(directory / "meterseal.toml", environ={})
    assert unique_name in settings.store.url  # the deployment's own schema
    try:
        with Store.open(settings.store.url) as store:  # where serve and the CAS will look
            assert CasStore(store).rules()
    finally:
        import sqlalchemy as sa

        admin = sa.create_engine(PG_URL)
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {unique_name} CASCADE")
        admin.dispose()


def test_with_a_host_the_cas_serves_tls_and_each_stage_gets_its_tls_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MS_PASSPHRASE", "correct horse battery staple")
    directory = tmp_path / "south"
    text = " ".join(_init(str(directory), "--host", "127.0.0.1").split())
    assert " meterseal cas serve --listen 127.0.0.1:7490 --tls cas " in text
    assert " meterseal serve --mode trusted --worker-tls " in text
    config_file = directory / "meterseal.toml"
    assert tomllib.loads(config_file.read_text())["cas"]["url"] == "https://127.0.0.1:7490"
    assert tomllib.loads(config_file.read_text())["kvs"]["url"] == "https://127.0.0.1:7470"
    assert f"{text} ".count(" meterseal kvs serve --tls ") == 1
    assert "secret tls/kvs-gateway v1" in text
    assert "secret tls/cascadb v1" in text
    assert is_encrypted((directory / "ca.key.pem").read_bytes())  # MS_PASSPHRASE: at rest
    assert is_encrypted((directory / "tls" / "cas.key.pem").read_bytes())
    config = ["--config", str(config_file)]
    # `cas serve` listens where the file's cas.listen says (`init --cas-listen`): a free port here.
    written = config_file.read_text()
    assert 'listen = "127.0.0.1:7490"' in written
    config_file.write_text(written.replace('listen = "127.0.0.1:7490"', 'listen = "127.0.0.1:0"'))
    cas = Served([*config, "cas", "serve", "--tls", "cas"], ready="cas")
    try:
        cas.wait_ready(60)
        url = cas.endpoint("cas")
        assert url.startswith("https://127.0.0.1:")
        fetch = ["cas", "fetch", "--cas", url, "--stage", "billing"]
        fetch += ["--secret", "billing-key", "--secret", "tls/billing"]
        fetched = subprocess.run(
            [sys.executable, "-m", "meterseal", *config, *fetch],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        cas.stop()
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert "released tls/billing v1" in fetched.stdout
    assert "released billing-key v1" in fetched.stdout
    again = " ".join(_init(str(directory), "--host", "127.0.0.1", "--force").split())
    assert "secret tls/billing v1 (kept)" in again  # --force renews no key


def test_a_directory_name_becomes_a_deployment_name_or_is_refused_before_any_file(
    tmp_path: Path,
) -> None:
    from meterseal.cli_init import deployment_name, namespace

    assert namespace(tmp_path / "2026 North-East Grid!") == "north_east_grid"
    assert namespace(tmp_path / ("x" * 80)) == "x" * 40
    assert namespace(tmp_path / "___") == "meterseal"
    assert deployment_name(tmp_path / "b" / "my-utility", "3fa2") == "my_utility_3fa2"
    assert deployment_name(tmp_path / ("x" * 80), "3fa2") == "x" * 35 + "_3fa2"
    mine, theirs = deployment_name(tmp_path / "my-utility"), deployment_name(tmp_path / "my-u")
    assert mine.startswith("my_utility_")
    assert theirs.startswith("my_u_")
    refused = invoke(["init", str(tmp_path / "d"), "--name", "North"])
    assert refused.exit_code == 2
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("--name", "n" * 41, "1-40 of a-z"),
        ("--nats", "nats://svc:bus-pw@127.0.0.1:4222", "credentials are never written"),
        ("--nats", "nats://s3cret-token@127.0.0.1:4222", "credentials are never written"),
    ],
)
def test_a_wrong_setting_is_refused_before_anything_is_made(
    tmp_path: Path, option: str, value: str, reason: str
) -> None:
    directory = tmp_path / "north"
    result = invoke(["init", str(directory), option, value], env={"COLUMNS": "250"})
    assert result.exit_code == 2, result.output
    assert reason in " ".join(result.output.split())
    assert not directory.exists()  # no keys, no CAS state: nothing to clean up


@pytest.mark.services
def test_the_store_password_stays_out_of_the_config_file(tmp_path: Path, unique_name: str) -> None:
    import sqlalchemy as sa

    from meterseal.config import load_settings
    from tests.services import require_service
    from tests.storage.databases import PG_URL, _probe_postgres

    require_service("PostgreSQL", PG_URL, _probe_postgres)
    url = sa.make_url(PG_URL)
    password = url.password or "init-pw-51"  # local trust authentication ignores it
    given = url.set(password=password).render_as_string(hide_password=False)
    directory = tmp_path / "east"
    try:
        output = _init(
            str(directory), "--store", given, "--name", unique_name, "--no-dissemination"
        )
        text = (directory / "meterseal.toml").read_text()
        assert password not in text
        settings = load_settings(directory / "meterseal.toml", environ={})
        assert sa.make_url(settings.store.url).password is None
        assert sa.make_url(settings.store.url).username == url.username
        assert "PGPASSWORD" in " ".join(output.split())
        shown = invoke(["--config", str(directory / "meterseal.toml"), "config", "show"])
        assert password not in shown.output
    finally:
        admin = sa.create_engine(PG_URL)
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {unique_name} CASCADE")
        admin.dispose()
