"""The jobs API's client: a job id is one path segment, whatever it holds."""

from __future__ import annotations

import httpx
import pytest

from meterseal.jobs.client import JobsClient


def _recording_client(paths: list[bytes]) -> JobsClient:
    def answer(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path)
        return httpx.Response(200, json={"id": "job-0"})

    client = JobsClient("http://127.0.0.1:1", "credential")
    # The transport is what is under test: the client's own, answering from here.
    client._http = httpx.Client(
        base_url="http://127.0.0.1:1", transport=httpx.MockTransport(answer)
    )
    return client


@pytest.mark.parametrize("job_id", ["a/../b", "../metrics", "job-1?x=1", "job 1#f"])
def test_an_odd_job_id_stays_one_escaped_segment(job_id: str) -> None:
    paths: list[bytes] = []
    with _recording_client(paths) as client:
        client.status(job_id)
        client.cancel(job_id)
    for path, suffix in zip(paths, (b"", b"/cancel"), strict=True):
        assert path.startswith(b"/v1/jobs/")
        segment = path.removeprefix(b"/v1/jobs/").removesuffix(suffix)
        assert not {b"/", b"?", b"#"} & {bytes([c]) for c in segment}
        assert httpx.URL("http://x/" + segment.decode()).path.removeprefix("/") == job_id


def test_a_plain_job_id_is_sent_as_it_is() -> None:
    paths: list[bytes] = []
    with _recording_client(paths) as client:
        client.status("job-0123456789abcdef")
    assert paths == [b"/v1/jobs/job-0123456789abcdef"]
