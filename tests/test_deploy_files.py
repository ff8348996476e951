"""deploy/: the systemd units, the Compose file and the Kubernetes manifests parse, every
`meterseal …` command line in them (and in docs/deployments.md's "Running it as a service")
is one the command line accepts, and their probes ask the admin endpoint what it answers."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import typer.main
import yaml  # type: ignore[import-untyped]  # PyYAML ships no types
from typer.core import TyperGroup, TyperOption
from typer.exceptions import TyperException

from meterseal.cli import app
from meterseal.config.settings import KEYS, load_settings

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
IMAGE = "meterseal:latest"
PROBE_PATHS = {"/healthz", "/readyz"}  # what the runtime's admin endpoint answers (checked live)
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "StateDirectory": "meterseal",
    "User": "meterseal",
}


# --- the command line ---------------------------------------------------------------------


def check_command(argv: list[str], where: str) -> None:
    """`meterseal ARGV` names an existing command and parses: options, their values, arguments."""
    command = typer.main.get_command(app)
    path = ["meterseal"]
    args = list(argv)
    while isinstance(command, TyperGroup):
        assert args, f"{where}: `{' '.join(path)}` needs a subcommand"
        name = args.pop(0)
        if name.startswith("-"):  # a group's own option (the global --config FILE)
            option = next((p for p in command.params if name in p.opts), None)
            assert isinstance(option, TyperOption), f"{where}: `{' '.join(path)}` has no {name}"
            if not option.is_flag:
                config = Path(args.pop(0))
                if name == "--config":
                    check_config(config, where)
            continue
        sub = command.commands.get(name)
        assert sub is not None, f"{where}: `{' '.join(path)}` has no command {name!r}"
        command, path = sub, [*path, name]
    try:
        command.make_context(" ".join(path), args, resilient_parsing=False)
    except typer.Exit:
        pass
    except TyperException as exc:  # click's (typer's) usage errors: unknown, missing, invalid
        raise AssertionError(f"{where}: `meterseal {shlex.join(argv)}`: {exc}") from exc


def check_config(path: Path, where: str) -> None:
    """A configuration file a command names is shipped here and loads without an error."""
    shipped = {"/etc/meterseal/meterseal.toml": SYSTEMD / "meterseal.toml"}
    assert str(path) in shipped, f"{where}: --config {path} is not a file deploy/ ships"
    settings = load_settings(shipped[str(path)], environ={})
    assert settings.file is not None
    assert settings.deployment.name == "meterseal"


def meterseal_argv(words: list[str]) -> list[str] | None:
    """The arguments of a `meterseal` (or /path/to/meterseal) command, else None."""
    if words and (words[0] == "meterseal" or words[0].endswith("/meterseal")):
        return words[1:]
    return None


def shell_commands(script: str) -> Iterator[list[str]]:
    """The simple commands of a small shell script (split at newlines, ;, &&, ||, |)."""
    lexer = shlex.shlex(script.replace("\n", " ; "), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True  # words split at blanks and ;&|() only (keeps URLs whole)
    words: list[str] = []
    for token in [*lexer, ";"]:
        if token in {";", "&&", "||", "|", "&", "{", "}", "(", ")"}:
            if words:
                yield words
            words = []
        else:
            words.append(token)


def test_the_checker_refuses_what_the_command_line_refuses() -> None:
    check_command(["serve", "--mode", "services", "--workers", "2", "--admin", ":9400"], "ok")
    for wrong in (
        ["serve", "--no-such-option", "x"],
        ["service", "run"],  # NAME is required
        ["serve", "--workers", "two"],
        ["no-such-command"],
        ["cas"],
    ):
        with pytest.raises(AssertionError):
            check_command(wrong, "wrong")


# --- systemd --------------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file's sections as (key, value) lists: keys may repeat, values may continue."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            assert line.endswith("]"), f"line {number}: {raw!r}"
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"line {number}: a setting before any section"
        key, sep, value = line.partition("=")
        assert sep, f"line {number}: {raw!r}"
        assert re.fullmatch(r"[A-Za-z]+", key.strip()), f"line {number}: {raw!r}"
        current.append((key.strip(), value.strip()))
    assert not pending, "a continued line at the end of the file"
    return sections


def parse_env(path: Path) -> dict[str, str]:
    """An EnvironmentFile: KEY=VALUE lines, comments."""
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: {raw!r}"
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path.name}: {raw!r}"
            values[key] = value
    return values


def expand(command: str, env: dict[str, str]) -> list[str]:
    """ExecStart's words with systemd's expansion: ${VAR} one word, $VAR split on whitespace."""
    words: list[str] = []
    for word in shlex.split(command):
        if re.fullmatch(r"\$[A-Z_][A-Z0-9_]*", word):
            assert word[1:] in env, f"{word} is set nowhere"
            words += env[word[1:]].split()
            continue

        def one(match: re.Match[str]) -> str:
            assert match[1] in env, f"${{{match[1]}}} is set nowhere"
            return env[match[1]]

        words.append(re.sub(r"\$\{([A-Z_][A-Z0-9_]*)\}", one, word))
    return words


def unit_files() -> list[Path]:
    return sorted(SYSTEMD.glob("*.service"))


def instances(unit: Path) -> list[str]:
    """A template's instances (one per shipped stage-NAME.env), or the unit alone."""
    if "@" not in unit.name:
        return [""]
    return sorted(p.name[len("stage-") : -len(".env")] for p in SYSTEMD.glob("stage-*.env"))


@pytest.mark.parametrize("unit", unit_files(), ids=lambda p: p.name)
def test_systemd_units_parse_harden_and_run_real_commands(unit: Path) -> None:
    sections = parse_unit(unit.read_text())
    assert set(sections) == {"Unit", "Service", "Install"}
    service = sections["Service"]
    settings = dict(service)
    for key, value in HARDENING.items():
        assert settings.get(key) == value, f"{unit.name}: {key}={settings.get(key)}"
    assert ("WantedBy", "multi-user.target") in sections["Install"]
    for instance in instances(unit):
        env: dict[str, str] = {}
        for key, value in service:
            if key == "Environment":
                env.update(dict(item.split("=", 1) for item in shlex.split(value)))
            if key == "EnvironmentFile":
                shipped = SYSTEMD / Path(value.replace("%i", instance)).name
                assert shipped.exists(), f"{unit.name}: {value} is not shipped in deploy/systemd"
                env.update(parse_env(shipped))
        commands = [v for k, v in service if k in {"ExecStartPre", "ExecStart"}]
        assert [k for k, _ in service].count("ExecStart") == 1, unit.name
        for command in commands:
            argv = meterseal_argv(expand(command.replace("%i", instance), env))
            assert argv is not None, command
            assert argv[:2] == ["--config", "/etc/meterseal/meterseal.toml"], command
            check_command(argv, f"{unit.name} {instance}".strip())


def test_every_stage_has_a_unit_instance() -> None:
    from meterseal.services.keys import STAGE_SECRETS

    stages = set(instances(SYSTEMD / "meterseal-stage@.service"))
    assert stages == {"receiver", "open-verify", "anonymize-store", "billing"}
    assert stages <= set(STAGE_SECRETS)


def test_the_passphrase_is_only_in_the_environment_file_with_a_warning() -> None:
    text = (SYSTEMD / "meterseal.env").read_text()
    assert "WARNING" in text
    assert "#MS_PASSPHRASE=" in text  # shipped unset
    for unit in unit_files():
        assert "MS_PASSPHRASE" not in unit.read_text(), unit.name


# --- Compose and Kubernetes -----------------------------------------------------------------


def admin_port(argv: list[str]) -> int:
    """The port of the `--admin` option of a meterseal command line."""
    value = argv[argv.index("--admin") + 1]
    return int(value.rsplit(":", 1)[1])


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_services_run_real_commands_and_probe_the_admin_endpoint() -> None:
    services = compose()["services"]
    assert {"postgres", "nats", "receiver", "open-verify", "anonymize-store", "billing"} <= set(
        services
    )
    assert {"cas", "bills"} <= set(services)
    assert "-js" in services["nats"]["command"]  # JetStream
    checked = 0
    for name, service in services.items():
        if service.get("image") != IMAGE:
            continue
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY.parent / service["build"]["context"].lstrip("./") / "deploy").is_dir()
        if "entrypoint" in service:  # a shell script of meterseal commands
            assert service["entrypoint"][0] == "sh"
            for words in shell_commands(" ".join(service["command"])):
                argv = meterseal_argv(words)
                if argv is not None:
                    check_command(argv, f"compose {name}")
                    checked += 1
            continue
        argv = [str(word) for word in service["command"]]
        check_command(argv, f"compose {name}")
        checked += 1
        test = " ".join(service["healthcheck"]["test"])
        url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", test)
        assert url is not None, test
        assert (int(url[1]), url[2]) == (admin_port(argv), "/readyz"), name
    assert checked >= 8


def test_compose_configures_every_container_through_known_keys(tmp_path: Path) -> None:
    """The MS_<SECTION>_<KEY> variables are keys of meterseal.toml, and valid values."""
    services = compose()["services"]
    known = {spec.env for spec in KEYS.values()}
    env = services["receiver"]["environment"]
    configured = {k: str(v) for k, v in env.items() if k.startswith("MS_") and k in known}
    assert {"MS_DEPLOYMENT_DIR", "MS_STORE_URL", "MS_NATS_URL"} <= set(configured)
    settings = load_settings(None, environ=configured)
    assert settings.nats.prefix == "meterseal_"
    assert str(settings.deployment.dir) == "/var/lib/meterseal/deployment"
    for name in env:
        assert name in known or name in {"PGPASSWORD", "MS_PASSPHRASE"}, name


def test_compose_keeps_secrets_out_of_the_file() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    for line in text.splitlines():
        if (
            re.search(r"PASSWORD|PASSPHRASE", line)
            and ":" in line
            and not line.lstrip().startswith("#")
        ):
            value = line.split(":", 1)[1].strip()
            assert value.startswith("${"), line  # from the environment or .env, never inline
    for url in re.findall(r"postgresql\+psycopg://[^\"'\s]+", text):
        assert ":" not in url.split("//", 1)[1].split("@")[0], url  # no password in a URL


def manifests() -> list[dict[str, Any]]:
    documents = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert isinstance(document, dict), path.name
            assert {"apiVersion", "kind", "metadata"} <= set(document), path.name
            documents.append(document)
    return documents


def test_kubernetes_manifests_run_real_commands_and_probe_the_admin_endpoint(
    tmp_path: Path,
) -> None:
    documents = manifests()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in documents}
    assert ("StatefulSet", "meterseal-nats") in kinds
    assert not any(d["kind"] == "Secret" for d in documents)  # referenced, never inlined
    workloads = [d for d in documents if d["kind"] in {"Deployment", "StatefulSet"}]
    services = [d for d in documents if d["kind"] == "Service"]
    checked = 0
    for workload in workloads:
        template = workload["spec"]["template"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= (
            template["metadata"]["labels"].items()
        )
        spec = template["spec"]
        volumes = {v["name"] for v in spec.get("volumes", [])} | {
            claim["metadata"]["name"] for claim in workload["spec"].get("volumeClaimTemplates", [])
        }
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, (workload["metadata"]["name"], mount)
            if container["image"] != IMAGE:
                continue
            where = f"{workload['metadata']['name']}/{container['name']}"
            if container.get("command"):  # a shell script (the init container)
                for words in shell_commands(container["args"][0]):
                    argv = meterseal_argv(words)
                    if argv is not None:
                        check_command(argv, where)
                continue
            argv = container["args"]
            check_command(argv, where)
            checked += 1
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert ports["admin"] == admin_port(argv), where
            for probe in ("livenessProbe", "readinessProbe"):
                get = container[probe]["httpGet"]
                assert get["path"] in PROBE_PATHS, where
                assert ports.get(get["port"], get["port"]) == admin_port(argv), where
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            for item in container.get("env", []):
                assert "value" not in item or not re.search(r"PASSWORD|PASSPHRASE", item["name"]), (
                    where
                )
    assert checked == 6
    (config,) = [d for d in documents if d["kind"] == "ConfigMap"]
    toml = tmp_path / "meterseal.toml"
    toml.write_text(config["data"]["meterseal.toml"])
    assert load_settings(toml, environ={}).store.url.startswith("postgresql+psycopg://")
    for service in services:
        selected = [
            w
            for w in workloads
            if service["spec"]["selector"].items()
            <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected, service["metadata"]["name"]
        names = {
            p["name"]
            for w in selected
            for c in w["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names, (service["metadata"]["name"], port)


# --- the docs -------------------------------------------------------------------------------


def docs_section() -> str:
    text = (ROOT / "docs" / "deployments.md").read_text()
    start = text.index("## Running it as a service")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_the_docs_section_names_every_file_and_runs_real_commands() -> None:
    section = docs_section()
    shipped = [p.relative_to(ROOT).as_posix() for p in DEPLOY.rglob("*") if p.is_file()]
    for name in shipped:
        assert Path(name).name in section, f"docs/deployments.md does not describe {name}"
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    checked = 0
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            code = line.split("  #", 1)[0]
            for words in shell_commands(code):
                if words[:2] == ["sudo", "-u"]:
                    words = words[3:]
                if words[:3] == ["docker", "compose", "run"]:  # a meterseal image's entrypoint
                    at = next(i for i in range(3, len(words)) if not words[i].startswith("-"))
                    assert compose()["services"][words[at]]["image"] == IMAGE, line
                    words = ["meterseal", *words[at + 1 :]]
                argv = meterseal_argv(words)
                if argv is not None:
                    check_command(argv, f"docs: {line.strip()}")
                    checked += 1
    assert checked >= 7


# --- the probes against a running service ---------------------------------------------------


def test_the_admin_endpoint_answers_the_probe_paths(tmp_path: Path) -> None:
    """`bills serve --admin`, as the units run it: /healthz and /readyz answer 200 when ready."""
    from meterseal.storage import Store

    url = f"sqlite:///{tmp_path / 'store.db'}"
    Store.open(url).close()  # made and migrated, as the head-end leaves it
    from meterseal.accounts.token_key import ensure_token_key

    (tmp_path / "deployment").mkdir()
    ensure_token_key(tmp_path / "deployment", None)  # what `keys init` makes
    command = [sys.executable, "-m", "meterseal", "bills", "serve", "--store", url]
    command += ["-d", str(tmp_path / "deployment"), "--listen", "127.0.0.1:0"]
    command += ["--admin", "127.0.0.1:0"]
    check_command(command[3:], "this test")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        try:
            assert process.stdout is not None
            admin = ""
            for _ in range(3):
                line = process.stdout.readline()
                if line.startswith("listening admin "):
                    admin = line.split()[-1]
                if line.startswith("ready "):
                    break
            assert admin.startswith("http://127.0.0.1:"), admin
            for path in sorted(PROBE_PATHS):
                answer = httpx.get(f"{admin}{path}", timeout=10)
                assert answer.status_code == 200, (path, answer.text)
            assert httpx.get(f"{admin}/readyz", timeout=10).json()["state"] == "ready"
        finally:
            process.terminate()
        assert process.wait(timeout=20) == 0
