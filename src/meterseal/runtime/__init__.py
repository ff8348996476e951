"""The runtime under every service: lifecycle, HTTP app and server, metrics, addresses.

Below every feature package: it imports only `meterseal.errors` and third-party libraries,
and every service (the head-end, services mode's stages and supervisor, the CAS, the bills
API, the dissemination router and aggregator) runs on it.
"""
