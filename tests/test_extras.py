"""The core install: `pip install meterseal` verifies a bill; the extras bring the rest."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from meterseal.cli_extras import OWN_PACKAGES, MissingExtra, packages_of
from tests.billing.on_disk import ExportedBill, exported_bill
from tests.services import require_service

ROOT = Path(__file__).resolve().parents[1]
CORE = {"cryptography", "cbor2", "typer", "rich"}
# Typer validates its parameters with pydantic, so the core has it too.
WITH_THE_CORE = {"pydantic"}
HEAVY = {name for extra in OWN_PACKAGES for name in packages_of(extra)} - WITH_THE_CORE

# Refuses every heavy package, as an install without the extras would, then runs the CLI and
# reports on stderr which heavy packages got imported anyway.
BLOCKED_RUN = """
import sys
heavy = set(sys.argv[1].split(","))

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in heavy:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Refuse())
from meterseal.cli import main
try:
    main(sys.argv[2:])
finally:
    print("imported:", sorted({m.partition(".")[0] for m in sys.modules} & heavy), file=sys.stderr)
"""


def _requirements(extra: str, table: dict[str, list[str]]) -> set[str]:
    """Distribution names an extra installs, its `meterseal[...]` inclusions expanded."""
    names = set()
    for line in table[extra]:
        requirement = Requirement(line)
        if requirement.name == "meterseal":
            for included in requirement.extras:
                names |= _requirements(included, table)
        else:
            names.add(requirement.name)
    return names


def test_the_table_of_extras_is_pyproject_s() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {Requirement(r).name for r in project["dependencies"]} == CORE
    extras = project["optional-dependencies"]
    for extra in OWN_PACKAGES:
        assert _requirements(extra, extras) == set(packages_of(extra).values()), extra
    assert _requirements("all", extras) == set(packages_of("bench").values())


def test_a_missing_package_names_the_extra_of_the_command() -> None:
    def missing(package: str, command: str) -> str | None:
        found = MissingExtra.of(ModuleNotFoundError(name=package), command)
        return None if found is None else found.extra

    assert missing("numpy.linalg", "fraud") == "fraud"
    assert missing("numpy", "serve") == "headend"
    assert missing("sqlalchemy", "fraud") == "headend"  # fraud rank --store reads a store
    assert missing("sklearn", "serve") == "fraud"
    assert missing("ptrace", "integrity") == "integrity"
    assert missing("opendp", "router") == "dissemination"
    assert missing("no_such_package", "serve") is None  # a bug, left a traceback
    error = MissingExtra.of(ModuleNotFoundError(name="sklearn"), "fraud")
    assert error is not None
    assert "pip install 'meterseal[fraud]'" in error.diagnostics()


@pytest.fixture(scope="module")
def bill(tmp_path_factory: pytest.TempPathFactory) -> ExportedBill:
    """A real bill, audited and exported with one reading's proof."""
    return exported_bill(tmp_path_factory.mktemp("bill"))


def _blocked(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", BLOCKED_RUN, ",".join(sorted(HEAVY)), *args]
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def test_verify_bill_and_help_import_nothing_heavy(bill: ExportedBill) -> None:
    verified = _blocked(*bill.verify_args())
    assert verified.returncode == 0, verified.stderr
    assert "verified" in verified.stdout
    assert f"meter {bill.meter_id} counter {bill.counter}" in verified.stdout
    assert "imported: []" in verified.stderr
    shown = _blocked("--help")
    assert shown.returncode == 0, shown.stderr
    assert "verify-bill" in shown.stdout
    assert "needs meterseal[fraud]" in shown.stdout  # the group is there, naming its extra


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["fraud", "rank", "--csv", "x.csv"], "fraud"),
        (["fraud", "--help"], "fraud"),
        (["serve"], "headend"),
        (["bench", "crypto"], "bench"),
    ],
)
def test_a_command_without_its_extra_says_which_in_one_line(args: list[str], extra: str) -> None:
    done = _blocked(*args)
    assert done.returncode == 2, done.stderr
    error, imported = done.stderr.strip().splitlines()
    assert error.startswith(f"error: `meterseal {args[0]}` needs ")
    assert error.endswith(f"pip install 'meterseal[{extra}]'")
    assert imported.startswith("imported:")


def _pypi_reachable() -> None:
    socket.create_connection(("pypi.org", 443), timeout=5).close()


@pytest.mark.slow
def test_the_core_installs_alone_and_verifies_a_bill(tmp_path: Path, bill: ExportedBill) -> None:
    require_service("PyPI", "https://pypi.org", _pypi_reachable)
    source = tmp_path / "meterseal"  # a copy: building in the checkout would write into it
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src",
        source / "src",
        ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info"),
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--quiet", str(source)], check=True, timeout=900)

    listed = subprocess.run([*pip, "list", "--format=json"], capture_output=True, check=True)
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    heavy = {dist for extra in OWN_PACKAGES for dist in packages_of(extra).values()}
    assert installed & (heavy - WITH_THE_CORE) == set()
    assert installed >= CORE

    meterseal = str(venv / "bin" / "meterseal")  # the installed script, through main()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"COLUMNS": "200"}
    verified = subprocess.run(
        [meterseal, *bill.verify_args()], capture_output=True, text=True, env=env, timeout=120
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"meter {bill.meter_id} counter {bill.counter}" in verified.stdout
    refused = subprocess.run(
        [meterseal, "fraud", "rank"], capture_output=True, text=True, env=env, timeout=120
    )
    assert refused.returncode == 2
    assert "pip install 'meterseal[fraud]'" in refused.stderr
    assert "Traceback" not in refused.stderr
