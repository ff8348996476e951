"""A store that cannot be reached or a URL that names none: one line, exit 2, no password."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from meterseal.storage.reach import shown
from tests.command_line import invoke

SECRET = "s3cr3t-pw"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port nothing listens on (bound, never listening, for the test's length)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


def _refused(args: list[str]) -> str:
    result = invoke(args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert SECRET not in result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_nothing_listening_on_the_postgresql_port(closed_port: int) -> None:
    url = f"postgresql+psycopg://nobody:{SECRET}@127.0.0.1:{closed_port}/x"
    line = _refused(["tariffs", "list", "--store", url])
    assert f"nobody:***@127.0.0.1:{closed_port}/x" in line
    assert "refused" in line.lower()
    assert "is PostgreSQL running" in line


@pytest.mark.services
def test_wrong_postgresql_role_and_database(postgres_url: str) -> None:
    base = sa.make_url(postgres_url)
    no_role = base.set(username="nobody_here", password=SECRET)
    line = _refused(["tariffs", "list", "--store", no_role.render_as_string(False)])
    assert 'role "nobody_here" does not exist' in line
    no_database = base.set(database="no_such_database_here")
    line = _refused(["tariffs", "list", "--store", no_database.render_as_string(False)])
    assert 'database "no_such_database_here" does not exist' in line
    assert "createdb" in line


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"postgresql+psycopg://u:{SECRET}@127.0.0.1:notaport/x", "is malformed"),
        ("not a url", "is malformed"),
        (f"nosuchdb://u:{SECRET}@host/x", "cannot use"),
        (f"postgresql+nosuchdriver://u:{SECRET}@host/x", "cannot use"),
        (f"mysql://u:{SECRET}@host/x", "not mysql"),
    ],
)
def test_a_url_that_names_no_store(url: str, says: str) -> None:
    line = _refused(["tariffs", "list", "--store", url])
    assert says in line
    assert "sqlite:///PATH" in line  # what to give instead


def test_sqlite_in_a_missing_directory(tmp_path: Path) -> None:
    line = _refused(["tariffs", "list", "--store", f"sqlite:///{tmp_path}/absent/store.db"])
    assert f"directory {tmp_path}/absent does not exist" in line


def test_sqlite_path_that_is_not_a_file(tmp_path: Path) -> None:
    line = _refused(["tariffs", "list", "--store", f"sqlite:///{tmp_path}"])
    assert f"{tmp_path} is a directory" in line


def test_read_only_store_that_does_not_exist(tmp_path: Path) -> None:
    line = _refused(["bills", "serve", "--store", f"sqlite:///{tmp_path}/none.db"])
    assert "does not exist" in line


def test_a_read_only_store_is_named_as_the_operator_gave_it(tmp_path: Path) -> None:
    # Not as the read-only URI it is opened with (sqlite:///file%3A…?mode=ro&uri=true).
    line = _refused(["bills", "list", "--store", f"sqlite:///{tmp_path}/none.db"])
    assert f"cannot reach the store sqlite:///{tmp_path}/none.db: " in line
    line = _refused(["bills", "list", "--store", "sqlite:///absent-dir/meterseal.db"])
    assert "cannot reach the store sqlite:///absent-dir/meterseal.db: " in line


def test_serve_with_a_wrong_postgresql_url_as_installed(tmp_path: Path, closed_port: int) -> None:
    """The attacker's finding: `meterseal serve --store <wrong URL>` printed 562 lines."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    subprocess.run(
        [sys.executable, "-m", "meterseal", "keys", "init", str(tmp_path / "dep")],
        check=True,
        capture_output=True,
        env=env,
    )
    url = f"postgresql+psycopg://nobody:{SECRET}@127.0.0.1:{closed_port}/x"
    serve = ["serve", "--deployment", str(tmp_path / "dep"), "--store", url, "--admin", "off"]
    done = subprocess.run(
        [sys.executable, "-m", "meterseal", *serve],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if not line.startswith("warning:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"error: cannot reach the store {shown(url)}: ")
    assert SECRET not in done.stderr + done.stdout


def test_shown_hides_the_password_of_unparseable_urls() -> None:
    assert shown(f"postgresql://u:{SECRET}@h:port/x") == "postgresql://u:***@h:port/x"
    assert shown("sqlite:///a/b.db") == "sqlite:///a/b.db"


TLS_OPTIONS = "sslmode=verify-full&sslrootcert=/etc/meterseal/ca.cert.pem"


def test_a_tls_url_is_shown_without_its_password_and_with_its_sslmode() -> None:
    url = f"postgresql+psycopg://meterseal:{SECRET}@db.example:5432/meterseal?{TLS_OPTIONS}"
    for given in (url, sa.make_url(url)):
        text = shown(given)
        assert SECRET not in text
        assert "meterseal:***@db.example" in text
        assert "sslmode=verify-full" in text


@pytest.mark.services
def test_sslmode_reaches_libpq_and_its_refusal_hides_the_password(postgres_url: str) -> None:
    from meterseal.storage import Store
    from meterseal.storage.reach import StoreUnreachable

    # The local server either has no TLS or a certificate this made-up CA did not issue:
    # libpq refuses both under verify-full, which shows the option got through to it.
    url = sa.make_url(postgres_url).set(password=SECRET)
    url = url.update_query_dict({"sslmode": "verify-full", "sslrootcert": "/nonexistent/ca.pem"})
    with pytest.raises(StoreUnreachable) as caught:
        Store.open(url.render_as_string(hide_password=False))
    assert SECRET not in str(caught.value)
    assert SECRET not in str(caught.value.diagnostics())
    assert "sslmode=verify-full" in str(caught.value)
    assert "ssl" in str(caught.value).lower()
