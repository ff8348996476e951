"""The cluster-manager actuator: Dask workers as the pods of a Kubernetes Job.

Each pod of the Job runs `dask worker tcp://SCHEDULER:8786`; the Job's `spec.parallelism` is
how many run at once, which is what this actuator reads and patches (a JSON merge patch to
the batch/v1 API, with the pod's service-account token), as Asperathos' KubeJobs plugin
scaled its Jobs. It was tested against a stand-in of the API (tests/jobs/test_kubernetes.py),
not against a real cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from meterseal.errors import ConfigurationError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IN_CLUSTER_API = "https://kubernetes.default.svc"


class KubernetesError(ConfigurationError):
    """The Kubernetes API refused or could not be reached."""


class KubernetesJobActuator:
    """Scales the Kubernetes Job `job` in `namespace` by its `spec.parallelism`."""

    def __init__(
        self,
        job: str,
        namespace: str,
        *,
        api: str = IN_CLUSTER_API,
        token: str = "",
        verify: str | bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.path = f"/apis/batch/v1/namespaces/{namespace}/jobs/{job}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            base_url=api, headers=headers, verify=verify, transport=transport, timeout=10.0
        )

    @classmethod
    def in_cluster(cls, job: str, namespace: str | None = None) -> KubernetesJobActuator:
        """The actuator of a Manager running in a pod: its service account's token and CA."""
        try:
            token = (SERVICE_ACCOUNT / "token").read_text().strip()
            space = namespace or (SERVICE_ACCOUNT / "namespace").read_text().strip()
        except OSError as exc:
            raise KubernetesError(f"not in a Kubernetes pod: {exc}") from exc
        return cls(job, space, token=token, verify=str(SERVICE_ACCOUNT / "ca.crt"))

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        try:
            answer = self.http.request(method, self.path, **kwargs)
        except httpx.HTTPError as exc:
            raise KubernetesError(f"Kubernetes API {self.path}: {exc}") from exc
        if answer.status_code != 200:
            raise KubernetesError(
                f"Kubernetes API {method} {self.path}: {answer.status_code} {answer.text[:200]}"
            )
        body: dict[str, Any] = answer.json()
        return body

    def workers(self) -> int:
        """The Job's parallelism: the worker pods asked for."""
        return int(self._call("GET")["spec"].get("parallelism", 1))

    def scale(self, workers: int) -> None:
        """Set the Job's parallelism to `workers`."""
        self._call(
            "PATCH",
            json={"spec": {"parallelism": workers}},
            headers={"Content-Type": "application/merge-patch+json"},
        )

    def close(self) -> None:
        """Close the HTTP connection."""
        self.http.close()
