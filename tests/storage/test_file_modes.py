"""SQLite store files are the owner's only, whatever the umask: database, -wal and -shm."""

from __future__ import annotations

from pathlib import Path

from meterseal.storage import Store
from meterseal.trust.cas_store import CasStore


def _modes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir()}


def test_a_new_sqlite_store_and_its_wal_are_0600(tmp_path: Path, permissive_umask: None) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'meterseal.db'}"):  # creates the schema: writes
        modes = _modes(tmp_path)  # while open: the -wal and -shm files exist
    assert {"meterseal.db", "meterseal.db-wal", "meterseal.db-shm"} <= modes.keys()
    assert set(modes.values()) == {0o600}


def test_the_cas_store_is_0600(tmp_path: Path, permissive_umask: None) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'cas.db'}") as store:
        CasStore(store)
    assert _modes(tmp_path)["cas.db"] == 0o600


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    path.touch(mode=0o640)
    path.chmod(0o640)
    with Store.open(f"sqlite:///{path}"):
        pass
    assert path.stat().st_mode & 0o777 == 0o640
