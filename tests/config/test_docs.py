"""docs/configuration.md says what the loader does: its example loads, it names every key."""

from __future__ import annotations

import re
from pathlib import Path

from meterseal.config import KEYS, load_settings

DOCS = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_the_example_file_loads_as_described(tmp_path: Path) -> None:
    (example,) = re.findall(r"```toml\n(.*?)```", DOCS.read_text(), re.DOTALL)
    path = tmp_path / "north" / "meterseal.toml"
    path.parent.mkdir()
    path.write_text(example)
    settings = load_settings(path, environ={}, cwd=tmp_path)
    assert settings.deployment.dir == tmp_path / "north" / "keys"
    assert settings.store.url.endswith("/utility?options=-csearch_path%3Dnorth")
    assert settings.nats.prefix == "north_"
    assert settings.deployment.passphrase_env == "NORTH_PASSPHRASE"


def test_every_key_is_in_the_table() -> None:
    rows = {line.split("|")[1].strip(" `") for line in DOCS.read_text().splitlines()
            if line.startswith("| `")}  # fmt: skip
    assert set(KEYS) <= rows
