"""Code identity of a trusted stage: a SHA-256 over its modules, dependencies and configuration.

`measure(modules, config)` returns a `Measurement` (frozen; `.digest` 32 bytes, `.hex`). It hashes

* the bytes of every named module's file, sorted by module name. A package stands for all of
  its submodules (every .py file and built extension under it), a module brings its parent
  packages' `__init__.py`, which Python runs when it imports the module, and a module that
  loads an optional C extension (`OPTIONAL_EXTENSIONS`) brings the extension's shared
  library when it is built: native code a stage may run is measured like its Python;
* the versions of the distributions those files import (`importlib.metadata`), and the
  interpreter's implementation and version;
* the configuration, as canonical CBOR (RFC 8949 section 4.2.1).

Files are located without importing them, so a worker can measure itself before it runs the
stage's code, as the Python-in-enclave design hashed the application before running it.
Same files, versions and configuration give the same digest in any process, on any run.

`STAGE_MODULES` (trust/stages.py, re-exported here) names what each trusted stage runs;
`stage_measurement(stage, config)` measures one. `import_closure` and `uncovered` let tests
(and the services that start the stages) check that a stage's list covers every meterseal
module its entry points import.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.machinery
import importlib.metadata
import importlib.util
import platform
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import cbor2

from meterseal.trust.errors import MeasurementError

# The stage tables moved to trust.stages (they grow with every stage, the hashing does not);
# re-exported so that the callers importing them from here keep working.
from meterseal.trust.stages import HEAD_END as HEAD_END
from meterseal.trust.stages import STAGE_ENTRIES as STAGE_ENTRIES
from meterseal.trust.stages import STAGE_MODULES as STAGE_MODULES
from meterseal.trust.stages import TRUST_RUNTIME as TRUST_RUNTIME

FORMAT = "meterseal-measurement/1"
# Modules that load an optional C extension by name (`native.optional_extension`), which no
# import statement shows: measuring the module measures the extension too, when it is built.
OPTIONAL_EXTENSIONS = {
    "meterseal.billing.hashing": "meterseal.billing._hashes",
    "meterseal.crypto.fixed": "meterseal.crypto._fixed",
}
_EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)
DIGEST_BYTES = 32
PACKAGE = "meterseal"

Versions = Callable[[str], tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Component:
    """One measured input: a module's file hash, a distribution's version, the config hash."""

    kind: str  # "module", "distribution", "python" or "config"
    name: str
    value: str


@dataclass(frozen=True)
class Measurement:
    """A stage's code identity: 32 bytes; `components` (not compared) tell what went in."""

    digest: bytes
    components: tuple[Component, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.digest, bytes) or len(self.digest) != DIGEST_BYTES:
            raise MeasurementError(f"a measurement is {DIGEST_BYTES} bytes")

    @property
    def hex(self) -> str:
        """The digest in lowercase hex (64 characters)."""
        return self.digest.hex()

    @property
    def short(self) -> str:
        """The first 12 hex digits and an ellipsis, for messages."""
        return f"{self.hex[:12]}…"

    @classmethod
    def from_hex(cls, text: str) -> Measurement:
        """Parse 64 hex digits; MeasurementError otherwise."""
        try:
            digest = bytes.fromhex(text.strip())
        except ValueError:
            digest = b""
        if len(digest) != DIGEST_BYTES:
            raise MeasurementError(f"not a measurement (64 hex digits): {text[:80]!r}")
        return cls(digest)

    def __str__(self) -> str:
        return self.hex


def measure(
    modules: Iterable[str],
    config: Mapping[str, object],
    *,
    versions: Versions | None = None,
) -> Measurement:
    """Measure `modules` (packages include their submodules) under `config`; deterministic.

    `versions(top_level_import)` gives the (distribution, version) pairs providing an import
    name; the default asks importlib.metadata. MeasurementError for an unknown module or a
    configuration value that has no canonical CBOR form.
    """
    files = module_files(modules)
    if not files:
        raise MeasurementError("nothing to measure: name at least one module")
    lookup = versions or installed_versions
    module_hashes = []
    imported: set[str] = set()
    measured_tops = {name.partition(".")[0] for name in files}
    for name in sorted(files):
        data = _read(files[name])
        module_hashes.append(Component("module", name, hashlib.sha256(data).hexdigest()))
        if not _is_extension(files[name]):
            imported |= {n.partition(".")[0] for n in _imports(data, files[name], name)}
    third_party = sorted(imported - measured_tops - set(sys.stdlib_module_names) - {"__future__"})
    dists = sorted({pair for top in third_party for pair in lookup(top)})
    config_bytes = canonical_config(config)
    components = (
        *module_hashes,
        *(Component("distribution", dist, version) for dist, version in dists),
        Component("python", platform.python_implementation(), platform.python_version()),
        Component("config", "sha256", hashlib.sha256(config_bytes).hexdigest()),
    )
    body = [FORMAT, [[c.kind, c.name, c.value] for c in components], config_bytes]
    return Measurement(hashlib.sha256(cbor2.dumps(body, canonical=True)).digest(), components)


def stage_measurement(
    stage: str, config: Mapping[str, object] | None = None, *, extra: Iterable[str] = ()
) -> Measurement:
    """The measurement of a named stage (`STAGE_MODULES`, plus `extra` modules the process
    that runs it imports) under `config` plus {"stage": stage}."""
    try:
        modules = (*STAGE_MODULES[stage], *extra)
    except KeyError:
        known = ", ".join(STAGE_MODULES)
        raise MeasurementError(f"no trusted stage {stage!r} (known: {known})") from None
    return measure(modules, {**(config or {}), "stage": stage})


def canonical_config(config: Mapping[str, object]) -> bytes:
    """Canonical CBOR of a configuration of str keys and CBOR-able values; else MeasurementError."""
    _check_config(config, "config")
    return cbor2.dumps(config, canonical=True)


def _check_config(value: object, where: str) -> None:
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_config(item, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MeasurementError(f"{where}: configuration keys are strings, not {key!r}")
            _check_config(item, f"{where}.{key}")
        return
    raise MeasurementError(
        f"{where}: {type(value).__name__} has no canonical form; use str, int, float, bool, "
        "bytes, None, lists or maps"
    )


@functools.cache
def _distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def installed_versions(top_level: str) -> tuple[tuple[str, str], ...]:
    """(distribution, version) of each installed distribution providing import `top_level`."""
    names = sorted(set(_distributions().get(top_level, ())))
    if not names:
        return ((f"import:{top_level}", "no distribution"),)
    return tuple((name.lower(), importlib.metadata.version(name)) for name in names)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MeasurementError(f"cannot read {path} to measure it: {exc.strerror}") from exc


def _root(top: str) -> Path:
    """The directory (package) or file (module) of a top-level import name, not importing it."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise MeasurementError(f"no module {top!r} to measure")
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin is None:
        raise MeasurementError(f"module {top!r} has no file to measure")
    return Path(spec.origin)


def _locate(name: str) -> tuple[Path | None, Path | None]:
    """(file, package directory) of a dotted name: a module's file, or a package's directory
    and its __init__.py (None for a namespace package)."""
    top, _, rest = name.partition(".")
    root = _root(top)
    if root.is_file():
        if rest:
            raise MeasurementError(f"{top} is a module, so {name!r} does not exist")
        return root, None
    path = root.joinpath(*rest.split(".")) if rest else root
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py"), None
    for suffix in _EXTENSION_SUFFIXES:
        if (built := path.with_name(path.name + suffix)).is_file():
            return built, None
    if path.is_dir() and "__pycache__" not in path.parts:
        init = path / "__init__.py"
        return (init if init.is_file() else None), path
    raise MeasurementError(f"no module {name!r} to measure (looked in {root})")


def _is_extension(path: Path) -> bool:
    return path.name.endswith(_EXTENSION_SUFFIXES)


def _submodules(base: Path, package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted(base.rglob("*")):
        if "__pycache__" in path.parts or not (path.suffix == ".py" or _is_extension(path)):
            continue
        parts = path.relative_to(base).parts
        parts = (*parts[:-1], parts[-1].partition(".")[0])  # drop .py or .cpython-…so
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join((package, *parts)), path


def module_files(modules: Iterable[str]) -> dict[str, Path]:
    """Module name → file for everything `measure` hashes for `modules` (parents included)."""
    files: dict[str, Path] = {}
    for name in modules:
        path, package = _locate(name)
        parts = name.split(".")
        for depth in range(1, len(parts)):
            parent = ".".join(parts[:depth])
            init = _locate(parent)[0]
            if init is not None:
                files[parent] = init
        if package is not None:
            files.update(_submodules(package, name))
        elif path is not None:
            files[name] = path
    for owner, extension in OPTIONAL_EXTENSIONS.items():
        if owner in files and extension not in files:
            try:
                built = _locate(extension)[0]
            except MeasurementError:
                continue  # not built in this install
            if built is not None:
                files[extension] = built
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (imports under `if TYPE_CHECKING:` never do)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _import_nodes(ast.Module(body=[child], type_ignores=[]))
        else:
            yield from _import_nodes(node)


def _imports(source: bytes, path: Path, module: str) -> set[str]:
    """Dotted names a module's source imports; `from a import b` gives a and a.b."""
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise MeasurementError(f"{path} is not valid Python: {exc.msg}") from None
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            base = f"{anchor}.{base}" if base else anchor
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _exists(name: str) -> bool:
    try:
        _locate(name)
    except MeasurementError:
        return False
    return True


def import_closure(modules: Iterable[str], *, within: str = PACKAGE) -> frozenset[str]:
    """Every module under `within` that importing `modules` may run (static, parents included).

    Imports inside functions count (they run when called); `if TYPE_CHECKING:` ones do not.
    """
    seen: set[str] = set()
    code: set[str] = set()
    work = list(modules)
    while work:
        name = work.pop()
        if name in seen or not (name == within or name.startswith(within + ".")):
            continue
        seen.add(name)
        if not _exists(name):
            continue  # `from package import attribute`: not a module
        parts = name.split(".")
        work.extend(".".join(parts[:depth]) for depth in range(1, len(parts)))
        path = _locate(name)[0]
        if path is not None:  # a namespace package has no code of its own
            code.add(name)
            if not _is_extension(path):
                work.extend(_imports(_read(path), path, name))
    return frozenset(code)


def uncovered(listed: Iterable[str], entries: Iterable[str]) -> frozenset[str]:
    """Modules the `entries` may run that measuring `listed` would not hash."""
    return import_closure(entries) - set(module_files(listed))
