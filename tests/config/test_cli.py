"""`meterseal --config`, `config show|check|example`, and the settings fed to every command."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from meterseal.cli import app
from meterseal.config import load_settings
from meterseal.config.cli import config_path, default_map, hidden
from tests.command_line import invoke

NORTH = '[deployment]\nname = "north"\ndir = "keys"\n'


@pytest.fixture
def north(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configuration file in tmp_path/north; the working directory elsewhere, nothing in env."""
    for spec_env in ("MS_CONFIG", "MS_STORE_URL", "MS_NATS_URL", "MS_DEPLOYMENT_DIR"):
        monkeypatch.delenv(spec_env, raising=False)
    (tmp_path / "north").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    path = tmp_path / "north" / "meterseal.toml"
    path.write_text(NORTH)
    return path


def test_default_map_feeds_each_option_its_setting(north: Path) -> None:
    settings = load_settings(north, environ={})
    defaults = default_map(typer.main.get_command(app), settings)
    keys = north.parent / "keys"
    assert defaults["serve"]["deployment_dir"] == keys
    assert defaults["serve"]["store"] == f"sqlite:///{keys}/meterseal.db"
    assert defaults["serve"]["prefix"] == "north_"  # NATS streams
    assert defaults["service"]["run"]["prefix"] == "north_"
    assert defaults["service"]["streams"]["prefix"] == "north_"
    assert defaults["mqtt"]["acl"]["prefix"] == "meterseal/v1/north"  # MQTT topics
    assert defaults["serve"]["mqtt_prefix"] == "meterseal/v1/north"
    assert defaults["simulate"]["mqtt_prefix"] == "meterseal/v1/north"
    assert defaults["router"]["consent"]["grant"]["namespace"] == "north.dissem"
    assert defaults["router"]["serve"]["deployment"] == keys
    assert "prefix" not in defaults["meters"]["provision"]  # that --prefix is the meter ids'
    assert "bench" not in defaults  # experiments stay reproducible
    assert "config" not in defaults
    assert "init" not in defaults  # a new deployment, not this one


def test_every_router_command_takes_its_keys_from_the_deployment(north: Path) -> None:
    # `meterseal init` writes the router's keys to DEPLOYMENT_DIR/router: `router …` finds them.
    defaults = default_map(typer.main.get_command(app), load_settings(north, environ={}))
    router = typer.main.get_command(app).commands["router"]  # type: ignore[attr-defined]
    fed = []

    def walk(node: object, fed_here: dict[str, object], path: str) -> None:
        for name, sub in getattr(node, "commands", {}).items():
            walk(sub, fed_here.get(name, {}), f"{path} {name}")  # type: ignore[arg-type]
        if any("--keys" in p.opts for p in getattr(node, "params", [])):
            assert fed_here.get("keys") == north.parent / "keys" / "router", path
            fed.append(path)

    walk(router, defaults["router"], "router")
    assert {"router serve", "router provision", "router consent grant"} <= set(fed)


def test_the_integrity_key_and_log_live_in_the_deployment(north: Path) -> None:
    # Not var/integrity under whatever directory the operator ran keygen in.
    defaults = default_map(typer.main.get_command(app), load_settings(north, environ={}))
    keys = north.parent / "keys" / "integrity"
    integrity = defaults["integrity"]
    for command in ("keygen", "embed", "verify", "monitor", "log"):
        assert integrity[command]["key_dir"] == keys, command
    assert integrity["monitor"]["log"] == keys / "audit.log"
    assert integrity["log"]["log"] == keys / "audit.log"


def test_flag_beats_environment_beats_file_beats_default(north: Path) -> None:
    cwd = Path.cwd()
    (cwd / "var").mkdir()
    north.write_text(NORTH + '[store]\nurl = "sqlite:///file.db"\n')
    assert invoke(["tariffs", "list"]).exit_code == 0  # no file here: the built-in default
    assert (cwd / "var" / "meterseal.db").exists()
    assert invoke(["--config", str(north), "tariffs", "list"]).exit_code == 0
    assert (north.parent / "file.db").exists()
    env = {"MS_CONFIG": str(north), "MS_STORE_URL": "sqlite:///env.db"}
    assert invoke(["tariffs", "list"], env=env).exit_code == 0
    assert (cwd / "env.db").exists()
    assert invoke(["tariffs", "list", "--store", "sqlite:///flag.db"], env=env).exit_code == 0
    assert (cwd / "flag.db").exists()
    assert sorted(p.name for p in cwd.iterdir()) == ["env.db", "flag.db", "var"]


def test_a_file_in_the_working_directory_is_found(north: Path) -> None:
    (Path.cwd() / "meterseal.toml").write_text('[deployment]\nname = "here"\n')
    result = invoke(["config", "show"])
    assert result.exit_code == 0, result.output
    assert "here_" in result.stdout


def test_show_tells_where_each_value_comes_from_without_secrets(north: Path) -> None:
    env = {"MS_CONFIG": str(north), "MS_STORE_URL": "postgresql+psycopg://ms:hunter2@db/ms"}
    result = invoke(["config", "show", "--nats", "nats://t0ken@bus:4222"], env=env)
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert lines["deployment.name"] == ["north", "file", "(MS_DEPLOYMENT_NAME)"]
    assert lines["nats.prefix"][:2] == ["north_", "derived"]
    shown = "postgresql+psycopg://ms:***@db/ms?options=-csearch_path%3Dnorth"  # the schema
    assert lines["store.url"][:2] == [shown, "env"]
    assert lines["nats.url"][:2] == ["nats://***@bus:4222", "flag"]
    assert lines["cas.url"][:2] == ["(unset)", "default"]
    assert "hunter2" not in result.output
    assert "t0ken" not in result.output


def test_check_reports_the_wrong_key_and_fails(north: Path) -> None:
    result = invoke(["config", "check", str(north)])
    assert result.exit_code == 0, result.output
    assert "ok (2 keys set)" in result.stdout
    north.write_text(NORTH + "[nats]\nurl = 4222\n")
    result = invoke(["config", "check", str(north)])
    assert result.exit_code == 2
    assert f"{north}:5: nats.url must be a string, not int 4222" in result.stderr
    # Every other command refuses to run on it, with the same reason.
    result = invoke(["--config", str(north), "tariffs", "list"])
    assert result.exit_code == 2
    assert "nats.url must be a string" in result.stderr


def test_check_without_a_file_says_so(north: Path) -> None:
    result = invoke(["config", "check"])
    assert result.exit_code == 2
    assert "no configuration file" in result.output


def test_example_is_a_valid_file(north: Path) -> None:
    result = invoke(["config", "example"])
    assert result.exit_code == 0
    north.write_text(result.stdout)
    assert invoke(["config", "check", str(north)]).exit_code == 0


@pytest.mark.parametrize(
    ("argv", "path"),
    [
        (["--config", "a.toml", "serve"], Path("a.toml")),
        (["--config=b.toml", "serve"], Path("b.toml")),
        (["serve", "--config", "c.toml"], None),  # a command's own --config (cas measure)
        ([], None),
    ],
)
def test_config_path_is_the_global_option_only(argv: list[str], path: Path | None) -> None:
    assert config_path(argv) == path


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("nats://token@h:4222", "nats://***@h:4222"),
        ("mqtts://h:8883?password=x&ca=/c.pem", "mqtts://h:8883?password=***&ca=/c.pem"),
        ("sqlite:////var/ms.db", "sqlite:////var/ms.db"),
        (None, "(unset)"),
    ],
)
def test_hidden(value: str | None, shown: str) -> None:
    assert hidden(value) == shown


def test_a_cas_typed_for_services_mode_is_still_refused(north: Path) -> None:
    # serve drops a configured cas.url unless --mode trusted, not one typed on its line.
    result = invoke(["serve", "--mode", "services", "--cas", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "--cas URL goes with --mode trusted" in result.output


def test_none_means_no_file_even_in_the_working_directory(north: Path) -> None:
    (Path.cwd() / "meterseal.toml").write_text('[deployment]\nname = "here"\n')
    for args, env in (
        (["config", "show"], {"MS_CONFIG": "none"}),
        (["--config", "none", "config", "show"], {}),
    ):
        result = invoke(args, env=env)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("configuration file: (none)")
        assert "here" not in result.stdout
