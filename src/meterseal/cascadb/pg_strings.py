"""PostgreSQL's escape string constants (`E'…'`), read as its lexer (scan.l) reads them.

sqlglot tokenizes `E'…'` as a byte string, which CascaDB's evaluator has no value for, and
unescapes it its own way; here each is read again from the statement's text and becomes a
string token: `\\b \\f \\n \\r \\t`, octal `\\o` to `\\ooo` (of which a byte is kept), `\\xh`,
`\\xhh`, `\\uXXXX` and `\\UXXXXXXXX` (UTF-16 surrogates in pairs), `''` and a backslash before any
other character the character itself. PostgreSQL's errors: 22025 a `\\u` or `\\U` without its
digits, 42601 a code point of none or an unpaired surrogate, 22021 bytes that are not UTF-8
(a NUL among them). A string after it, past white space holding a newline, continues it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlglot.tokens import Token, TokenType  # type: ignore[attr-defined]

from meterseal.cascadb.errors import (
    CharacterNotInRepertoire,
    InvalidEscapeSequence,
    ProgrammingError,
)

MAY_HOLD = re.compile(r"(?<![\w$])[eE]'")  # where an escape string may begin
# an escape as flex picks it (the longest match; \u and \U with too few digits fail)
_ESCAPE = re.compile(
    r"\\(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|([uU])|([0-7]{1,3})"
    r"|x([0-9A-Fa-f]{1,2})|(.))|''|[^\\']+",
    re.S,
)
_SINGLE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
# white space holding a newline (`--` comments count as white space), as scan.l's between two
# parts of one string constant
_CONTINUATION = re.compile(r"(?:[ \t\f]|--[^\n\r]*)*[\n\r](?:[ \t\n\r\f]|--[^\n\r]*[\n\r])*", re.S)
_SURROGATE_PAIR = "invalid Unicode surrogate pair"


def read_escape_strings(sql: str, tokens: Sequence[Token]) -> list[Token]:
    """`tokens` with each escape string (and the strings continuing it) one string token of
    the text PostgreSQL reads."""
    out: list[Token] = []
    pending = iter(tokens)
    for token in pending:
        if token.token_type != TokenType.BYTE_STRING:
            out.append(token)
            continue
        parts = [sql[token.start + 2 : token.end]]
        end, following = token.end, None
        for following in pending:
            gap = sql[end + 1 : following.start]
            if following.token_type != TokenType.STRING or not _CONTINUATION.fullmatch(gap):
                break
            parts.append(sql[following.start + 1 : following.end])
            end, following = following.end, None
        text = escaped(parts)
        out.append(
            Token(TokenType.STRING, text, token.line, token.col, token.start, end, token.comments)
        )
        if following is not None:
            out.append(following)
    return out


def escaped(parts: Sequence[str]) -> str:
    """The text of an escape string's parts, as written between their quotes."""
    raw = b"".join(_bytes(part) for part in parts)
    return _utf8(raw)


def _bytes(body: str) -> bytes:
    out = bytearray()
    first: int | None = None  # a high surrogate waiting for its low one
    for found in _ESCAPE.finditer(body):
        code = _code_point(found)
        if first is not None:
            if code is None or not 0xDC00 <= code <= 0xDFFF:
                raise ProgrammingError(f'{_SURROGATE_PAIR} at or near "{_near(found)}"')
            code, first = 0x10000 + ((first - 0xD800) << 10) + (code - 0xDC00), None
        elif code is not None and 0xD800 <= code <= 0xDBFF:
            first = code
            continue
        elif code is not None and 0xDC00 <= code <= 0xDFFF:
            raise ProgrammingError(f'{_SURROGATE_PAIR} at or near "{found[0]}"')
        if code is not None:
            if not 0 < code <= 0x10FFFF:
                raise ProgrammingError(f'invalid Unicode escape value at or near "{found[0]}"')
            out += chr(code).encode()
        else:
            out += _other(found)
    if first is not None:
        raise ProgrammingError(f'{_SURROGATE_PAIR} at or near "\'"')
    return bytes(out)


def _code_point(found: re.Match[str]) -> int | None:
    """The code point of a \\u or \\U escape, else None; 22025 when its digits are missing."""
    if found[3] is not None:
        raise InvalidEscapeSequence("invalid Unicode escape")  # (\\uXXXX or \\UXXXXXXXX)
    digits = found[1] or found[2]
    return None if digits is None else int(digits, 16)


def _other(found: re.Match[str]) -> bytes:
    octal, hexadecimal, single = found[4], found[5], found[6]
    if octal is not None:
        return bytes([int(octal, 8) & 0xFF])  # \400 is a NUL, as C's unsigned char
    if hexadecimal is not None:
        return bytes([int(hexadecimal, 16)])
    if single is not None:
        return _SINGLE.get(single, single).encode()
    return b"'" if found[0] == "''" else found[0].encode()


def _near(found: re.Match[str]) -> str:
    """What PostgreSQL names after a high surrogate: a \\u or \\U escape, else one character."""
    return found[0] if found[1] or found[2] else found[0][0]


def _utf8(raw: bytes) -> str:
    """Bytes as text; 22021 as PostgreSQL's when they are not UTF-8 or hold a NUL."""
    try:
        text = raw.decode()
        bad = text.index("\0") if "\0" in text else -1
        at = len(text[:bad].encode()) if bad >= 0 else -1
    except UnicodeDecodeError as exc:
        at = exc.start
    if at < 0:
        return text
    shown = bad_sequence(raw[at:])
    raise CharacterNotInRepertoire(f'invalid byte sequence for encoding "UTF8": {shown}')


def bad_sequence(rest: bytes) -> str:
    """The bytes PostgreSQL shows of a sequence not UTF-8 (`rest` from its first byte on): as
    many as that byte announces, `0xc3 0x28`."""
    first = rest[0]
    length = 2 if first & 0xE0 == 0xC0 else 3 if first & 0xF0 == 0xE0 else 1
    length = 4 if first & 0xF8 == 0xF0 else length
    return " ".join(f"0x{b:02x}" for b in rest[:length])
