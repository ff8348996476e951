"""The runtime under every service: lifecycle, HTTP app and server, metrics, addresses, access.

Below every feature package: it imports only `meterseal.errors`, the crypto core (`peer`
reads service names from certificates) and third-party libraries, and every service (the
head-end, services mode's stages and supervisor, the CAS, the bills API, the dissemination
router and aggregator) runs on it. `auth` is where authentication
and authorization plug in (every route declares one access rule); `transitions` is the one
way a protocol's transition table refuses a move, telling our bug from the peer's fault;
`tls` and `peer` are TLS, mutual TLS and the identity a client certificate proves;
`nats_endpoint` is where and as whom a NATS client connects (TLS and mutual TLS included).
"""
