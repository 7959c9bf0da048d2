"""The text of an uploaded file: UTF-8, UTF-16 or Windows-1251, never binary.

Spreadsheets save "CSV" in whatever encoding the user's system prefers, and
name none of them; this module finds the one that reads the file, or says
why none does.
"""

import codecs
import re

from django.utils.translation import gettext as _

from .issues import ClientImportError, file_error

# Control characters never found in a spreadsheet's text; a file holding them
# is binary (a .xlsx, a picture, garbage). Tab, line breaks, vertical tab
# and form feed are text; a trailing Ctrl-Z is an old DOS end-of-file mark.
_BINARY_BYTES = re.compile(rb"[\x00-\x08\x0e-\x1f]")
_BINARY_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f]")


def text_from_bytes(data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, or Windows-1251."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode text".
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise _not_text(data[: exc.start].count(b"\n") + 1) from exc
        if found := _BINARY_CHARS.search(text):
            raise _not_text(text.count("\n", 0, found.start()) + 1)
        return text.removeprefix("\ufeff")
    data = data.removeprefix(codecs.BOM_UTF8).rstrip(b"\x1a")
    if found := _BINARY_BYTES.search(data):
        raise _not_text(data.count(b"\n", 0, found.start()) + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Not UTF-8 as a whole. A Windows-1251 line is almost never valid UTF-8
    # with letters beyond ASCII, so finding both kinds means mixed encodings
    # (typically rows pasted from two sources), which no single decoding
    # would read correctly.
    utf8_line = legacy_line = None
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            legacy_line = legacy_line or number
        else:
            utf8_line = utf8_line or number
        if utf8_line and legacy_line:
            raise file_error(
                _(
                    "The file mixes text encodings: line %(utf8)d is UTF-8, "
                    "line %(other)d is not. Save the whole file as “CSV UTF-8” "
                    "and upload it again."
                )
                % {"utf8": utf8_line, "other": legacy_line}
            )
    try:
        return data.decode("cp1251")
    except UnicodeDecodeError as exc:
        raise _not_text(data[: exc.start].count(b"\n") + 1) from exc


def _not_text(line: int) -> ClientImportError:
    return file_error(
        _(
            "This is not a text CSV file (unreadable data at line %(line)d). "
            "In your spreadsheet choose “Save as” → “CSV” and upload that file."
        )
        % {"line": line}
    )
