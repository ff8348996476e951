"""CascaDB's errors: PEP 249's hierarchy under meterseal's one exception root."""

from __future__ import annotations

from meterseal.errors import MetersealError


class Warning(Exception):  # PEP 249 names it so
    """PEP 249's warning (CascaDB raises none)."""


class Error(MetersealError):
    """Root of CascaDB's errors (PEP 249 `Error`)."""


class InterfaceError(Error):
    """The driver was misused: a closed cursor or connection, a bad parameter count."""


class DatabaseError(Error):
    """The statement failed in the database."""


class DataError(DatabaseError):
    """A value cannot be stored or compared as asked (a NaN key, a bad cast)."""


class OperationalError(DatabaseError):
    """The store failed or could not be reached; the statement left nothing behind."""


class IntegrityError(DatabaseError):
    """A primary key or unique index would hold a duplicate, or a NOT NULL column a NULL."""


class InternalError(DatabaseError):
    """The data dictionary or a row is not what CascaDB wrote."""


class ProgrammingError(DatabaseError):
    """The SQL is wrong: a syntax error, an unknown table or column."""


class NotSupportedError(DatabaseError):
    """Valid SQL outside what CascaDB answers."""


class TransactionAborted(OperationalError):
    """A statement failed earlier in this PostgreSQL-dialect transaction: only ROLLBACK (or
    ROLLBACK TO a savepoint) is run until then, as PostgreSQL does (SQLSTATE 25P02)."""
