"""Trusted workers, attestation and secret release (the SecureCloud CAS protocol).

* `measurement`: a stage's code identity (`measure`, `Measurement`, `STAGE_MODULES`).
* `attestation`: `Attester` / `QuoteVerifier`; simulated (no hardware guarantee) and
  configfs-tsm (TDX / SEV-SNP guests; verification not built, refuses).
* `sealing`: secrets at rest under a key bound to the measurement.
* `policy`: composable, fail-closed release policies.
* `cas` (sans-IO core, `TRANSITIONS`), `state`, `vault`, `cas_store`, `api`, `cli`: the
  configuration and attestation service.
* `client` (`fetch_secrets`), `worker` (`start_trusted`), `material`: the worker's side.

docs/trust.md has the protocol, the threat model and what simulated mode does not guarantee.
"""
