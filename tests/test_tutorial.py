"""docs/tutorial.md runs as written, command by command; and the harness that checks it fails."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import meterseal
from tests.services import REQUIRE_ENV, services_required
from tests.tutorial_page import PageError, PageRun, Step, match_sample, parse_page

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
# What the page's commands inherit from the test's environment: where the shared services are.
PASSED_ON = ("MS_POSTGRES_URL", "MS_NATS_URL", "MS_MQTT_URL", "MS_MOSQUITTO", "LANG", "LC_ALL")


def page_env(home: Path) -> dict[str, str]:
    """A new user's environment: this checkout's meterseal first on PATH, an empty home.

    The deployment name is the run's own, so the streams, topics and schema the page creates on
    the shared services are too (it is the namespace every one of them derives from).
    """
    home.mkdir(parents=True, exist_ok=True)
    env = {name: os.environ[name] for name in PASSED_ON if name in os.environ}
    env.update(
        MS_DEPLOYMENT_NAME=f"tutorial{os.getpid():x}{secrets.token_hex(3)}",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        # The package under test, also when it runs from a worktree's src without an install.
        PYTHONPATH=str(Path(meterseal.__file__).resolve().parents[1]),
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        COLUMNS="160",
        NO_COLOR="1",
        TERM="dumb",
    )
    return env


def run_page(text: str, tmp_path: Path, **kwargs: Callable[[Step], str | None]) -> PageRun:
    """Run `text` as a page in a fresh directory under `tmp_path`."""
    workdir, harness = tmp_path / "work", tmp_path / "harness"
    workdir.mkdir()
    harness.mkdir()
    run = PageRun(workdir, harness, page_env(tmp_path / "home"))
    run.run(parse_page(textwrap.dedent(text)), **kwargs)
    return run


def _probe_postgres() -> None:
    import sqlalchemy as sa

    url = os.environ.get("MS_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    finally:
        engine.dispose()


def _probe_nats() -> None:
    from tests.services_mode.conftest import _probe_nats as probe

    probe()


def _probe_mosquitto() -> None:
    socket.create_connection(("127.0.0.1", 1883), timeout=3).close()


PROBES: dict[str, Callable[[], None]] = {
    "postgresql": _probe_postgres,
    "nats": _probe_nats,
    "mosquitto": _probe_mosquitto,
}


def service_gate() -> Callable[[Step], str | None]:
    """Why a step cannot run here (a service it needs does not answer), probed once a service."""
    answers: dict[str, str | None] = {}

    def reason(step: Step) -> str | None:
        for name in sorted(step.needs):
            if name not in answers:
                try:
                    PROBES[name]()
                    answers[name] = None
                except Exception as exc:
                    answers[name] = f"{name}: {(str(exc).splitlines() or [repr(exc)])[0]}"
            if answers[name] is not None:
                if services_required():
                    pytest.fail(f"{answers[name]} ({REQUIRE_ENV}=1)")
                return answers[name]
        return None

    return reason


@pytest.mark.slow
@pytest.mark.services
def test_tutorial_runs_as_written(tmp_path: Path) -> None:
    steps = parse_page(TUTORIAL.read_text())
    assert len(steps) >= 30, "docs/tutorial.md has lost its commands"
    assert not {need for step in steps for need in step.needs} - set(PROBES)
    workdir, harness = tmp_path / "tutorial", tmp_path / "harness"
    workdir.mkdir()
    harness.mkdir()
    env = page_env(tmp_path / "home")
    try:
        outcome = PageRun(workdir, harness, env).run(steps, service_gate())
    finally:
        # The page deletes its streams at the end; a run that failed before leaves none either.
        prefix = f"{env['MS_DEPLOYMENT_NAME']}_"
        subprocess.run(
            ["meterseal", "service", "streams", "--prefix", prefix, "--delete"],
            env=env, cwd=tmp_path, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
    if outcome.skipped:
        reasons = sorted({reason for _, reason in outcome.skipped})
        pytest.skip(
            f"{len(outcome.ran)} commands green; {len(outcome.skipped)} not run: "
            + "; ".join(reasons)
        )


# The harness itself: each of these would pass a page that is wrong if the harness were lax.


def test_a_failing_command_fails_the_page(tmp_path: Path) -> None:
    with pytest.raises(PageError, match=r"page line 3: `false` exited 1"):
        run_page(
            """
            ```console
            $ false
            ```
            """,
            tmp_path,
        )


def test_output_that_no_longer_matches_fails_the_page(tmp_path: Path) -> None:
    with pytest.raises(PageError, match=r"printed no line matching\n    bill 3 signed"):
        run_page(
            """
            ```console
            $ echo "bill 2 signed"
            bill 3 signed
            ```
            """,
            tmp_path,
        )


def test_sample_lines_must_come_in_order(tmp_path: Path) -> None:
    page = """
        ```console
        $ printf 'first\\nsecond\\n'
        second
        first
        ```
        """
    with pytest.raises(PageError, match="printed no line matching\n    first"):
        run_page(page, tmp_path)


def test_a_sample_is_a_subset_with_ellipses_and_placeholders(tmp_path: Path) -> None:
    run_page(
        """
        ```console
        $ printf 'header\\nbill 0f3a for CUST-1:    €12.40 in 0.31 s\\nfooter\\n'
        bill <id> for CUST-1: €... in <seconds> s
        ...
        footer
        ```
        """,
        tmp_path,
    )


def test_a_placeholder_is_one_value_not_any_text() -> None:
    assert match_sample(["bill <id> signed"], "bill 0f3a signed")[1] is None
    assert match_sample(["bill <id> signed"], "bill 0f3a 12 signed")[1] == "bill <id> signed"
    assert match_sample(["bill ... signed"], "bill 0f3a 12 signed")[1] is None
    assert match_sample(["total 12"], "total 123")[1] == "total 12"  # whole lines only


def test_variables_and_directory_carry_over_and_captures_set_variables(tmp_path: Path) -> None:
    run_page(
        """
        ```console
        $ mkdir site && cd site && BILL=b-17
        $ echo "issued bill b-$((6 * 7)) at $(date +%s)"
        issued bill <SECOND> at <time>
        ```

        Later, in another block:

        ```console
        $ echo "$BILL $SECOND in ${PWD##*/}"
        b-17 b-42 in site
        ```
        """,
        tmp_path,
    )


def test_continuation_lines_and_here_documents(tmp_path: Path) -> None:
    run_page(
        """
        ```console
        $ cat > tariff.toml <<'EOF'
        > id = "flat"
        > EOF
        $ grep id \\
        >   tariff.toml
        id = "flat"
        ```
        """,
        tmp_path,
    )


SERVER = """
import signal, socket, sys
signal.signal(signal.SIGTERM, lambda *_: sys.exit(print("bye", flush=True)))
server = socket.socket()
server.bind(("127.0.0.1", int(sys.argv[1].split(":")[1])))
server.listen()
print("listening tcp 127.0.0.1:%d" % server.getsockname()[1], flush=True)
while True:
    connection, _ = server.accept()
    connection.sendall(b"hello\\n")
    connection.close()
"""
CLIENT = (
    "import socket, sys; print(socket.create_connection(sys.argv[1].split(':')).recv(9).decode())"
)


def test_a_server_in_the_background_is_awaited_used_and_stopped(tmp_path: Path) -> None:
    (tmp_path / "server.py").write_text(SERVER)
    (tmp_path / "client.py").write_text(CLIENT)
    run = run_page(
        f"""
        <!-- tutorial: timeout 30 -->
        ```console
        $ python {tmp_path}/server.py 127.0.0.1:7400 &
        listening tcp 127.0.0.1:7400
        $ python {tmp_path}/client.py 127.0.0.1:7400
        hello
        $ kill %1
        bye
        ```
        """,
        tmp_path,
    )
    # 7400 stood for this run's own free port: in the command, the sample and the client alike.
    moved = run.ports.ports[7400]
    assert f"listening tcp 127.0.0.1:{moved}" in (tmp_path / "harness" / "job-1.log").read_text()
    assert not run.jobs


def test_a_background_command_that_never_gets_ready_fails(tmp_path: Path) -> None:
    with pytest.raises(PageError, match="exited 3 before printing"):
        run_page(
            """
            ```console
            $ sh -c 'echo starting; exit 3' &
            ready
            ```
            """,
            tmp_path,
        )


def test_a_background_command_must_show_what_to_wait_for(tmp_path: Path) -> None:
    with pytest.raises(PageError, match="must show a line to wait for"):
        run_page("```console\n$ sleep 30 &\n```\n", tmp_path)


def test_blocks_that_need_absent_services_are_skipped_and_others_are_not(tmp_path: Path) -> None:
    page = """
        <!-- tutorial: needs postgresql -->
        ```console
        $ false
        ```

        <!-- tutorial: skip -->
        ```console
        $ false
        ```

        ```sh
        false
        ```

        ```console
        $ echo ran > ran.txt
        ```
        """
    steps = parse_page(textwrap.dedent(page))
    assert [(s.command, s.needs) for s in steps] == [
        ("false", frozenset({"postgresql"})),
        ("echo ran > ran.txt", frozenset()),
    ]
    run_page(page, tmp_path, unavailable=lambda s: "absent" if s.needs else None)
    assert (tmp_path / "work" / "ran.txt").read_text() == "ran\n"


def test_a_command_past_its_timeout_fails(tmp_path: Path) -> None:
    with pytest.raises(PageError, match="did not finish within 1 s"):
        run_page("<!-- tutorial: timeout 1 -->\n```console\n$ sleep 20\n```\n", tmp_path)


def test_kill_waits_for_what_the_job_prints_before_stopping_it(tmp_path: Path) -> None:
    # A subscriber prints what it received a moment after the publisher returned.
    run_page(
        """
        <!-- tutorial: timeout 30 -->
        ```console
        $ sh -c 'echo waiting; sleep 1; echo "received 3 publications"; exec sleep 60' &
        waiting
        $ kill %1
        received 3 publications
        ```
        """,
        tmp_path,
    )


def test_readmes_command_lines_are_the_tutorials_in_its_order() -> None:
    # README shows an excerpt; the page is what CI runs, so every line shown must be one of its.
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Command line") :]
    section = section[: section.index("\n## ", 1)]
    shown = [step.command for step in parse_page(section)]
    assert len(shown) >= 10
    commands = [step.command for step in parse_page(TUTORIAL.read_text())]
    positions = [commands.index(command) for command in shown if command in commands]
    assert [c for c in shown if c not in commands] == []
    assert positions == sorted(positions)


def test_a_block_needing_an_absent_service_is_skipped_or_fails_when_services_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def absent() -> None:
        raise OSError("connection refused")

    monkeypatch.setitem(PROBES, "nats", absent)
    needs_nats, plain = Step("x", (), 1, frozenset({"nats"})), Step("y", (), 2)
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    gate = service_gate()
    assert gate(needs_nats) == "nats: connection refused"
    assert gate(plain) is None
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="nats: connection refused"):
        service_gate()(needs_nats)
