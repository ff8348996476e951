"""CascaDB's errors: PEP 249's hierarchy under meterseal's one exception root."""

from __future__ import annotations

from meterseal.errors import MetersealError


class Warning(Exception):  # PEP 249 names it so
    """PEP 249's warning (CascaDB raises none)."""


class Error(MetersealError):
    """Root of CascaDB's errors (PEP 249 `Error`)."""

    sqlstate = "XX000"  # PostgreSQL's code for it, sent by the PostgreSQL protocol


class InterfaceError(Error):
    """The driver was misused: a closed cursor or connection, a bad parameter count."""

    sqlstate = "08P01"


class DatabaseError(Error):
    """The statement failed in the database."""


class DataError(DatabaseError):
    """A value cannot be stored or compared as asked (a NaN key, a bad cast)."""

    sqlstate = "22000"


class OperationalError(DatabaseError):
    """The store failed or could not be reached; the statement left nothing behind."""

    sqlstate = "57000"


class IntegrityError(DatabaseError):
    """A primary key or unique index would hold a duplicate, or a NOT NULL column a NULL."""

    sqlstate = "23505"


class InternalError(DatabaseError):
    """The data dictionary or a row is not what CascaDB wrote."""

    sqlstate = "XX000"


class ProgrammingError(DatabaseError):
    """The SQL is wrong: a syntax error, an unknown table or column."""

    sqlstate = "42601"


class UndefinedTable(ProgrammingError):
    """The statement names a table that does not exist."""

    sqlstate = "42P01"


class UndefinedColumn(ProgrammingError):
    """The statement names a column that does not exist."""

    sqlstate = "42703"


class UndefinedObject(ProgrammingError):
    """An object the statement names does not exist: a configuration parameter (42704)."""

    sqlstate = "42704"


class InvalidColumnReference(ProgrammingError):
    """A GROUP BY or ORDER BY position outside the select list (SQLSTATE 42P10)."""

    sqlstate = "42P10"


class GroupingError(ProgrammingError):
    """An aggregate where none may be (in GROUP BY, by itself or at a position), or a column
    of a grouped query read outside GROUP BY and aggregates (42803)."""

    sqlstate = "42803"


class DatatypeMismatch(ProgrammingError):
    """An expression of the wrong type for its place: WHERE 1 (SQLSTATE 42804)."""

    sqlstate = "42804"


class InvalidSqlStatementName(ProgrammingError):
    """A prepared statement that does not exist (DEALLOCATE, Bind, Describe; SQLSTATE 26000)."""

    sqlstate = "26000"


class InvalidCursorName(ProgrammingError):
    """A portal that does not exist (Describe, Execute; SQLSTATE 34000)."""

    sqlstate = "34000"


class NotSupportedError(DatabaseError):
    """Valid SQL outside what CascaDB answers."""

    sqlstate = "0A000"


class TransactionAborted(OperationalError):
    """A statement failed earlier in this PostgreSQL-dialect transaction: only ROLLBACK (or
    ROLLBACK TO a savepoint) is run until then, as PostgreSQL does (SQLSTATE 25P02)."""

    sqlstate = "25P02"


class ActiveSqlTransaction(OperationalError):
    """A transaction's mode set too late: its isolation level after its first query or in a
    savepoint, READ WRITE after a read-only one's first query (SQLSTATE 25001, PostgreSQL's)."""

    sqlstate = "25001"


class NoActiveSqlTransaction(OperationalError):
    """A savepoint's statement outside a PostgreSQL transaction block (SQLSTATE 25P01)."""

    sqlstate = "25P01"


class ReadOnlyTransaction(OperationalError):
    """A write (or FOR UPDATE) in a transaction begun or set READ ONLY (SQLSTATE 25006)."""

    sqlstate = "25006"


class CantChangeRuntimeParam(OperationalError):
    """A parameter that can only be read was set (PostgreSQL's 55P02)."""

    sqlstate = "55P02"


class NotNullViolation(IntegrityError):
    """A NOT NULL column (or a primary key's) would hold a NULL."""

    sqlstate = "23502"


class ForeignKeyViolation(IntegrityError):
    """A child row would name no parent row, or a parent row still named would go."""

    sqlstate = "23503"


class CannotCoerce(ProgrammingError):
    """A value of a type no cast converts to the type asked (bytes to an integer)."""

    sqlstate = "42846"


class InvalidTextRepresentation(DataError):
    """A value's text (or binary form) is not a value of its type."""

    sqlstate = "22P02"


class InvalidParameterValue(DataError):
    """A type's parameter outside what the type takes (NUMERIC's precision past 1000)."""

    sqlstate = "22023"


class NumericOverflow(DataError):
    """A value has more integer digits than its DECIMAL(p, s) column holds."""

    sqlstate = "22003"


class DivisionByZero(DataError):
    """A division or modulo by zero in PostgreSQL's dialect (SQLite's gives NULL)."""

    sqlstate = "22012"


class CharacterNotInRepertoire(DataError):
    """Text sent over the PostgreSQL protocol (a statement, a name, a value) is not UTF-8."""

    sqlstate = "22021"


class InvalidEscapeSequence(DataError):
    """An escape string's `\\u` or `\\U` without its hexadecimal digits (PostgreSQL's dialect)."""

    sqlstate = "22025"
