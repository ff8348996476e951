"""Writing meterseal.toml: what `render_config` writes loads back as given."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterseal.config import KEYS, load_settings, render_config
from meterseal.errors import ConfigurationError


@given(
    prefix=st.text(max_size=20),
    url=st.text(min_size=1, max_size=40).filter(lambda u: "://" not in u),
)
def test_written_values_load_back(prefix: str, url: str) -> None:
    text = render_config({"nats": {"prefix": prefix, "url": url}})
    assert tomllib.loads(text) == {
        "deployment": {},
        "store": {},
        "nats": {"prefix": prefix, "url": url},
        "mqtt": {},
        "cas": {},
        "router": {},
        "integrity": {},
        "kvs": {},
        "cascadb": {},
        "agent": {},
        "portal": {},
    }


def test_template_documents_every_key(tmp_path: Path) -> None:
    text = render_config({"deployment": {"name": "north", "dir": Path("keys")}})
    for spec in KEYS.values():
        assert f"{spec.name} = " in text
        assert spec.env in text
    path = tmp_path / "meterseal.toml"
    path.write_text(text)
    settings = load_settings(path, environ={}, cwd=Path("/"))
    assert settings.deployment.name == "north"
    assert settings.deployment.dir == tmp_path / "keys"
    assert settings.nats.prefix == "north_"  # the commented-out keys keep their derived defaults


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"store": {"uri": "x"}}, "unknown key store.uri"),
        ({"nats": {"prefix": 1}}, "nats.prefix must be a string"),
        ({"deployment": {"name": "no way"}}, "deployment.name 'no way' must match"),
    ],
)
def test_refuses_what_the_loader_would(values: dict[str, dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        render_config(values)
