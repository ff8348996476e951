"""Loading meterseal.toml: types, one clear error per wrong key, precedence, derived defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.config import Settings, Source, load_settings, locate
from meterseal.config.settings import KEYS, check_table
from meterseal.errors import ConfigurationError


def _write(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "meterseal.toml"
    path.write_text(text)
    return path


def test_nothing_configured_keeps_every_default(tmp_path: Path) -> None:
    settings = load_settings(None, environ={}, cwd=tmp_path)
    assert settings == Settings()
    assert list(settings.configured()) == []
    assert all(settings.source(key) is Source.DEFAULT for key in KEYS)


def test_file_values_typed_and_relative_to_the_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "north",
        '[deployment]\nname = "north"\ndir = "keys"\n[store]\nurl = "sqlite:///data/ms.db"\n',
    )
    settings = load_settings(path, environ={}, cwd=Path("/"))
    assert settings.deployment.name == "north"
    assert settings.deployment.dir == tmp_path / "north" / "keys"
    assert settings.store.url == f"sqlite:///{tmp_path / 'north' / 'data' / 'ms.db'}"
    assert settings.source("deployment.dir") is Source.FILE
    assert settings.file == path


def test_a_cascadb_store_directory_is_relative_to_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "east", '[store]\nurl = "cascadb:///data/cdb"\n')
    settings = load_settings(path, environ={}, cwd=Path("/"))
    assert settings.store.url == f"cascadb:///{tmp_path / 'east' / 'data' / 'cdb'}"


def test_defaults_derive_from_the_deployment(tmp_path: Path) -> None:
    path = _write(tmp_path / "South-Grid 2", "")
    settings = load_settings(path, environ={}, cwd=Path("/"))
    # The directory's name, made a valid schema/stream/topic name.
    assert settings.deployment.name == "south_grid_2"
    assert settings.deployment.dir == tmp_path / "South-Grid 2" / "var" / "deployment"
    assert settings.store.url == f"sqlite:///{settings.deployment.dir}/meterseal.db"
    assert settings.store.url.startswith("sqlite:////")  # absolute, not the working directory
    assert settings.nats.prefix == "south_grid_2_"
    assert settings.mqtt.topic_root == "meterseal/v1/south_grid_2"
    assert settings.router.namespace == "south_grid_2.dissem"
    assert settings.store.schema == "south_grid_2"  # PostgreSQL only: not in a SQLite URL
    for key in ("deployment.name", "store.url", "nats.prefix", "mqtt.topic_root"):
        assert settings.source(key) is Source.DERIVED


def test_environment_beats_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, '[store]\nurl = "sqlite:///file.db"\n[nats]\nprefix = "a_"\n')
    environ = {"MS_STORE_URL": "sqlite:///env.db", "MS_NATS_PREFIX": ""}
    settings = load_settings(path, environ=environ, cwd=tmp_path / "elsewhere")
    # Relative paths of the environment resolve against the working directory.
    assert settings.store.url == f"sqlite:///{tmp_path / 'elsewhere' / 'env.db'}"
    assert settings.source("store.url") is Source.ENV
    assert settings.nats.prefix == "a_"  # an empty variable counts as unset
    assert settings.source("nats.prefix") is Source.FILE


def test_a_postgresql_store_lives_in_the_deployment_schema(tmp_path: Path) -> None:
    url = "postgresql+psycopg://ms:pw@db:5432/utility"
    path = _write(tmp_path / "north", f'[store]\nurl = "{url}"\n')
    settings = load_settings(path, environ={}, cwd=tmp_path)
    assert settings.store.url == f"{url}?options=-csearch_path%3Dnorth"
    path.write_text(f'[store]\nurl = "{url}?sslmode=require"\nschema = "billing_a"\n')
    settings = load_settings(path, environ={}, cwd=tmp_path)
    assert settings.store.url == f"{url}?sslmode=require&options=-csearch_path%3Dbilling_a"
    path.write_text(f'[store]\nurl = "{url}"\nschema = ""\n')  # the database's default
    assert load_settings(path, environ={}, cwd=tmp_path).store.url == url


def test_environment_alone_configures_without_a_file(tmp_path: Path) -> None:
    settings = load_settings(None, environ={"MS_DEPLOYMENT_DIR": "dep"}, cwd=tmp_path)
    assert settings.deployment.dir == tmp_path / "dep"
    assert settings.store.url == f"sqlite:///{tmp_path / 'dep' / 'meterseal.db'}"
    assert settings.nats.prefix == ""  # no name: no namespace
    assert settings.source("nats.prefix") is Source.DEFAULT


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[store]\nuri = 'x'\n",
            "meterseal.toml:2: unknown key 'uri' in [store] (known: url, schema)",
        ),
        ("[stor]\nurl = 'x'\n", "unknown section [stor] (known: deployment, store, nats"),
        ("[store]\n\nurl = 3\n", "meterseal.toml:3: store.url must be a string, not int 3"),
        ("[deployment]\ndir = true\n", "deployment.dir must be a path (string), not bool"),
        ("[deployment]\nname = 'North'\n", "deployment.name 'North' must match [a-z][a-z0-9_]*"),
        ("store = 1\n", "store must be a [store] table"),
        ("[store\n", "not valid TOML"),
    ],
)
def test_one_clear_error_per_wrong_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(path, environ={}, cwd=tmp_path)
    assert message in str(caught.value)


def test_a_wrong_environment_variable_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"MS_DEPLOYMENT_NAME: deployment\.name 'a b'"):
        load_settings(None, environ={"MS_DEPLOYMENT_NAME": "a b"}, cwd=tmp_path)


def test_a_missing_file_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot read the configuration .*missing\.toml"):
        load_settings(tmp_path / "missing.toml", environ={}, cwd=tmp_path)


def test_locate_order(tmp_path: Path) -> None:
    assert locate(None, {}, tmp_path) is None
    _write(tmp_path, "")
    assert locate(None, {}, tmp_path) == tmp_path / "meterseal.toml"
    assert locate(None, {"MS_CONFIG": "/e.toml"}, tmp_path) == Path("/e.toml")
    assert locate(Path("f.toml"), {"MS_CONFIG": "/e.toml"}, tmp_path) == Path("f.toml")
    assert locate(None, {"MS_CONFIG": "none"}, tmp_path) is None  # not even ./meterseal.toml
    assert locate(Path("none"), {"MS_CONFIG": "/e.toml"}, tmp_path) is None


@given(st.text(min_size=1, max_size=30))
def test_any_string_value_of_a_string_key_loads(value: str) -> None:
    values = check_table({"nats": {"prefix": value}})
    assert values == {"nats.prefix": value}
