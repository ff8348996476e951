"""meterseal.toml: one configuration file every command of a deployment reads.

`load_settings(path)` reads and checks it (stdlib tomllib, relative paths against the file's
directory) under the environment's ``MS_<SECTION>_<KEY>`` variables; `render_config(values)`
writes one (`meterseal init` does). The CLI (config/cli.py) feeds the settings to every
command as defaults, below its flags.
"""

from meterseal.config.render import render_config
from meterseal.config.settings import (
    CONFIG_ENV,
    CONFIG_FILE,
    KEYS,
    Settings,
    Source,
    load_settings,
    locate,
)

__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILE",
    "KEYS",
    "Settings",
    "Source",
    "load_settings",
    "locate",
    "render_config",
]
