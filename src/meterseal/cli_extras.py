"""Which install extra brings which package, so a missing one is named, not a traceback.

`pip install meterseal` is the core: the crypto, the reading format and `verify-bill`
(cryptography, cbor2, typer, rich). The extras of pyproject.toml add the rest; this table
mirrors them (tests/test_extras.py holds the two together).
"""

from __future__ import annotations

from meterseal.errors import ConfigurationError

# Import name -> distribution, per extra (its own packages, not the extras it includes).
_HEADEND = {
    "sqlalchemy": "sqlalchemy",
    "psycopg": "psycopg",
    "aiomqtt": "aiomqtt",
    "paho": "paho-mqtt",
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "httpx": "httpx",
    "pydantic": "pydantic",
    "h11": "h11",
    "httptools": "httptools",
    "prometheus_client": "prometheus-client",
    "nats": "nats-py",
    "numpy": "numpy",
    "pandas": "pandas",
    "demandlib": "demandlib",
    "argon2": "argon2-cffi",
    "jwt": "PyJWT",
    "defusedxml": "defusedxml",
    "jinja2": "jinja2",
    "fpdf": "fpdf2",
    "segno": "segno",
    "sqlglot": "sqlglot",
}
_DISSEMINATION = {"phe": "phe", "gmpy2": "gmpy2", "opendp": "opendp"}
_FRAUD = {
    "numpy": "numpy",
    "pandas": "pandas",
    "matplotlib": "matplotlib",
    "minisom": "minisom",
    "sklearn": "scikit-learn",
}
_INTEGRITY = {"elftools": "pyelftools", "pyseccomp": "pyseccomp", "ptrace": "python-ptrace"}
_KVS = {"pyeclib": "pyeclib"}
_JOBS = {"dask": "dask", "distributed": "distributed"}
_DLMS = {"dlms_cosem": "dlms-cosem"}
_BENCH = {"matplotlib": "matplotlib"}

OWN_PACKAGES: dict[str, dict[str, str]] = {
    "headend": _HEADEND,
    "dissemination": _DISSEMINATION,
    "fraud": _FRAUD,
    "integrity": _INTEGRITY,
    "kvs": _KVS,
    "jobs": _JOBS,
    "dlms": _DLMS,
    "bench": _BENCH,
}
INCLUDED: dict[str, tuple[str, ...]] = {
    "dissemination": ("headend",),
    "kvs": ("headend",),
    "jobs": ("headend",),
    "dlms": ("headend",),
    "bench": ("headend", "dissemination", "fraud", "integrity", "kvs", "jobs", "dlms"),
}
# The extra each command group needs; every other command beyond the core needs `headend`.
GROUP_EXTRA = {
    "router": "dissemination",
    "fraud": "fraud",
    "integrity": "integrity",
    "kvs": "kvs",
    "jobs": "jobs",
    "bench": "bench",
}


def packages_of(extra: str) -> dict[str, str]:
    """Import name -> distribution of everything `extra` installs, included extras too."""
    found = dict(OWN_PACKAGES[extra])
    for included in INCLUDED.get(extra, ()):
        found.update(packages_of(included))
    return found


class MissingExtra(ConfigurationError):
    """A command needs a package that an install extra brings and this install lacks."""

    def __init__(self, command: str, package: str, extra: str) -> None:
        super().__init__(
            f"`meterseal {command}` needs {package}, which this install lacks: "
            f"pip install 'meterseal[{extra}]'"
        )
        self.extra = extra

    @classmethod
    def of(cls, exc: ModuleNotFoundError, command: str) -> MissingExtra | None:
        """The extra that brings the module `exc` misses, for `command`; None if none does."""
        package = (exc.name or "").partition(".")[0]
        wanted = GROUP_EXTRA.get(command, "headend")
        candidates = [wanted, *OWN_PACKAGES]  # the command's own extra first
        extra = next((e for e in candidates if package in packages_of(e)), None)
        return None if extra is None else cls(command, packages_of(extra)[package], extra)
