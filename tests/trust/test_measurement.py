"""Measurements: deterministic, sensitive to code, dependency versions and configuration."""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.trust import measurement
from meterseal.trust.errors import MeasurementError
from meterseal.trust.measurement import (
    STAGE_ENTRIES,
    STAGE_MODULES,
    Measurement,
    canonical_config,
    import_closure,
    installed_versions,
    measure,
    module_files,
    stage_measurement,
    uncovered,
)


@pytest.fixture
def stage_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small importable package `fakestage` (with a submodule) on sys.path."""
    root = tmp_path / "fakestage"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text('"""Fake stage."""\nimport hashlib\n')
    (root / "core.py").write_text("import cbor2\n\n\ndef run() -> int:\n    return 1\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "deep.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return root


def test_same_inputs_same_digest_in_another_process() -> None:
    # The trust package, not a whole stage: other files may change while the suite runs.
    here = measure(["meterseal.trust"], {"suite": "p256"})
    script = (
        "from meterseal.trust.measurement import measure;"
        "print(measure(['meterseal.trust'], {'suite': 'p256'}).hex)"
    )
    there = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert there == here.hex
    assert len(here.digest) == 32
    assert here == measure(["meterseal.trust"], {"suite": "p256"})
    assert here.hex == here.digest.hex()
    assert here.short == here.hex[:12] + "…"


def test_a_package_covers_its_submodules_and_parents(stage_package: Path) -> None:
    files = module_files(["fakestage.sub.deep"])
    assert set(files) == {"fakestage", "fakestage.sub", "fakestage.sub.deep"}
    assert set(module_files(["fakestage"])) == {
        "fakestage",
        "fakestage.core",
        "fakestage.sub",
        "fakestage.sub.deep",
    }


def test_one_changed_byte_changes_the_measurement(stage_package: Path) -> None:
    before = measure(["fakestage"], {})
    deep = stage_package / "sub" / "deep.py"
    deep.write_text("X = 2\n")
    after = measure(["fakestage"], {})
    assert after != before
    changed = {c.name for c in set(after.components) ^ set(before.components)}
    assert changed == {"fakestage.sub.deep"}
    deep.write_text("X = 1\n")
    assert measure(["fakestage"], {}) == before


def test_a_dependency_version_changes_the_measurement(stage_package: Path) -> None:
    real = measure(["fakestage"], {})
    assert ("distribution", "cbor2") in {(c.kind, c.name) for c in real.components}

    def bumped(top: str) -> tuple[tuple[str, str], ...]:
        found = installed_versions(top)
        return tuple((d, v + ".post1" if d == "cbor2" else v) for d, v in found)

    assert measure(["fakestage"], {}, versions=installed_versions) == real
    assert measure(["fakestage"], {}, versions=bumped) != real


def test_configuration_changes_the_measurement_and_its_order_does_not() -> None:
    a = measure(["meterseal.trust.policy"], {"x": 1, "y": [1, 2]})
    assert a == measure(["meterseal.trust.policy"], {"y": [1, 2], "x": 1})
    assert a != measure(["meterseal.trust.policy"], {"x": 2, "y": [1, 2]})
    assert stage_measurement("open-verify") != stage_measurement("anonymize-store")


@given(st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=6))
def test_canonical_config_ignores_insertion_order(config: dict[str, object]) -> None:
    reordered = dict(reversed(list(config.items())))
    assert canonical_config(config) == canonical_config(reordered)


@pytest.mark.parametrize(
    ("config", "match"),
    [({"path": Path("/x")}, "PosixPath has no canonical form"), ({"a": {1: 2}}, "keys are")],
)
def test_a_config_without_canonical_form_is_refused(config: dict[str, object], match: str) -> None:
    with pytest.raises(MeasurementError, match=match):
        measure(["meterseal.trust.policy"], config)


def test_unknown_modules_and_stages_are_refused() -> None:
    with pytest.raises(MeasurementError, match="no module"):
        measure(["meterseal.no_such_module"], {})
    with pytest.raises(MeasurementError, match="no module"):
        measure(["no_such_top_level_package"], {})
    with pytest.raises(MeasurementError, match="no trusted stage 'oven'"):
        stage_measurement("oven")
    with pytest.raises(MeasurementError, match="64 hex digits"):
        Measurement.from_hex("3fa2")
    with pytest.raises(MeasurementError, match="32 bytes"):
        Measurement(b"short")


def test_measuring_does_not_import_the_stage(stage_package: Path) -> None:
    (stage_package / "core.py").write_text("raise SystemExit('imported!')\n")
    assert "fakestage.core" not in sys.modules
    measure(["fakestage.core"], {})
    assert "fakestage.core" not in sys.modules


@pytest.mark.parametrize("stage", sorted(STAGE_MODULES))
def test_each_stage_list_covers_what_its_entry_modules_import(stage: str) -> None:
    missing = uncovered(STAGE_MODULES[stage], STAGE_ENTRIES[stage])
    assert not missing, f"add to STAGE_MODULES[{stage!r}]: {sorted(missing)}"


def test_the_closure_follows_function_imports_but_not_type_checking_ones(
    stage_package: Path,
) -> None:
    (stage_package / "core.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from fakestage.sub import deep\n"
        "def late():\n    from fakestage.sub import deep\n"
    )
    (stage_package / "other.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import fakestage.sub.deep\n"
    )
    assert import_closure(["fakestage.core"], within="fakestage") == {
        "fakestage",
        "fakestage.core",
        "fakestage.sub",
        "fakestage.sub.deep",
    }
    assert import_closure(["fakestage.other"], within="fakestage") == {
        "fakestage",
        "fakestage.other",
    }


def test_a_built_extension_in_a_package_is_measured_by_its_bytes(stage_package: Path) -> None:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    native = stage_package / f"_native{suffix}"
    native.write_bytes(b"\x7fELF one")
    files = module_files(["fakestage"])
    assert files["fakestage._native"] == native
    assert set(module_files(["fakestage._native"])) == {"fakestage", "fakestage._native"}
    before = measure(["fakestage"], {})
    native.write_bytes(b"\x7fELF two")
    after = measure(["fakestage"], {})
    assert {c.name for c in set(after.components) ^ set(before.components)} == {"fakestage._native"}


def test_a_module_that_loads_an_optional_extension_brings_it_when_built(
    stage_package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    monkeypatch.setitem(measurement.OPTIONAL_EXTENSIONS, "fakestage.core", "fakestage._speed")
    assert "fakestage._speed" not in module_files(["fakestage.core"])  # not built: nothing
    (stage_package / f"_speed{suffix}").write_bytes(b"\x7fELF")
    assert module_files(["fakestage.core"])["fakestage._speed"].name == f"_speed{suffix}"


def test_every_optional_extension_is_known_to_the_measurement() -> None:
    # `optional_extension("…")` loads by name, which no import statement shows: each call's
    # module must be in OPTIONAL_EXTENSIONS, or a trusted stage would run unmeasured C.
    src = Path(measurement.__file__).parents[1]
    calls = {}
    for path in src.rglob("*.py"):
        for match in re.finditer(r'optional_extension\(\s*"([\w.]+)"', path.read_text()):
            module = ".".join(path.relative_to(src.parent).with_suffix("").parts)
            calls[module] = match.group(1)
    assert calls == measurement.OPTIONAL_EXTENSIONS


def test_the_billing_stage_measures_the_built_extensions() -> None:
    built = {
        name
        for name in measurement.OPTIONAL_EXTENSIONS.values()
        if importlib.util.find_spec(name) is not None
    }
    if not built:
        pytest.skip("no optional C extension is built in this install")
    measured = {c.name: c.value for c in stage_measurement("billing", {}).components}
    for name in built:
        spec = importlib.util.find_spec(name)
        assert spec is not None
        assert spec.origin is not None
        digest = hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()
        assert measured[name] == digest
