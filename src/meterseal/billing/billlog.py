"""The append-only bill log: an RFC 9162 Merkle log of signed bills and its signed tree heads.

Leaf i is the i-th signed bill's bytes. After each append the billing service signs the new
tree head (size, root, time in seconds). Anyone holding two heads can demand a consistency
proof and check that the log only grew: no bill was removed or rewritten between them.
"""

from __future__ import annotations

from meterseal.billing.bill import BillFormatError, BillSignatureError
from meterseal.transparency.documents import DocumentType
from meterseal.transparency.heads import HeadFormat
from meterseal.transparency.merkle import leaf_hash

HEAD_CONTENT_TYPE = "application/meterseal-bill-log-head+cbor"
# Verified heads raise BillFormatError or BillSignatureError, as bills do.
BILL_LOG_HEAD = HeadFormat(
    DocumentType(HEAD_CONTENT_TYPE, "bill-log tree head", BillFormatError, BillSignatureError),
    "issued_at",
)


def bill_leaf(signed_bill: bytes) -> bytes:
    """The log's leaf hash of a signed bill."""
    return leaf_hash(signed_bill)
