"""Run `meterseal ARGS` in-process through `cli.main`, its error mapping included."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from click.testing import CliRunner, Result

from meterseal.cli import main


class _Main:
    """`cli.main` shaped as click's CliRunner calls a command: `main(args=..., prog_name=...)`."""

    name = "meterseal"

    def main(self, args: Sequence[str], prog_name: str, **_: Any) -> None:
        main(list(args))


def invoke(
    args: Sequence[str], env: Mapping[str, str | None] | None = None, input: str | None = None
) -> Result:
    """Run the command line as `meterseal ARGS` would; output, exit code and exception captured."""
    runner = CliRunner()
    return runner.invoke(_Main(), list(args), env=env, input=input)  # type: ignore[arg-type]
