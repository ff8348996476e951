"""The optional C extensions; everything else about the package is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # The bill's bulk SHA-256 work (OpenSSL's libcrypto). Optional: without a compiler or
        # the OpenSSL headers the install goes on and billing hashes in Python (same results).
        Extension(
            "meterseal.billing._hashes",
            ["src/meterseal/billing/native/hashes.c"],
            libraries=["crypto"],
            optional=True,
        ),
        # The audit's reader of signed originals (fixed.signed_reading in C); no library.
        Extension(
            "meterseal.crypto._fixed", ["src/meterseal/crypto/native/fixed.c"], optional=True
        ),
    ]
)
