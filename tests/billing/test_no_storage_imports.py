"""Billing declares the repositories it needs (billing.ports) and imports nothing from storage."""

from __future__ import annotations

import ast
from pathlib import Path

import meterseal.billing

STORAGE = "meterseal.storage"


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_no_billing_module_imports_storage() -> None:
    root = Path(meterseal.billing.__file__).parent
    offenders = [
        f"{path.relative_to(root)}:{line} imports {name}"
        for path in sorted(root.rglob("*.py"))
        for line, name in _imported(ast.parse(path.read_text()))
        if name == STORAGE or name.startswith(f"{STORAGE}.")
    ]
    assert offenders == []


def test_the_check_sees_every_form_of_import() -> None:
    for source, expected in (
        ("import meterseal.storage\n", "meterseal.storage"),
        ("from meterseal import storage\n", "meterseal.storage"),
        (
            "def f():\n    from meterseal.storage.bill_store import B\n",
            "meterseal.storage.bill_store",
        ),
    ):
        assert expected in {name for _, name in _imported(ast.parse(source))}
