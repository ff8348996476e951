"""Append-only logs anyone can check: RFC 9162 Merkle trees, signed tree heads, typed documents.

Sans-IO and shared by every log of the platform: the bill log (billing), the CAS's event log
(trust) and the integrity monitor's audit log. `merkle` builds trees and proofs and verifies
them, `documents` signs and opens COSE_Sign1 documents typed by their content type, and
`heads` encodes and signs the `TreeHead` each log publishes.
"""
