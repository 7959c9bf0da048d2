"""A CSV file as a spreadsheet saved it, read into a tablib Dataset.

The dataset holds the resource's own columns, found by their header names,
the file's other columns (which custom fields may claim), and each row's
number as the spreadsheet shows it (the header is row 1; a blank row still
counts; a quoted cell spanning lines is one row), so every
problem can be pointed at the row the user sees.
"""

import csv
import io

import tablib
from django.utils.translation import gettext as _

from .columns import (
    EXTRA_PREFIX,
    NOT_FIELDS,
    ROW_COLUMN,
    Column,
    cell_text,
    header_columns,
    header_key,
)
from .decoding import text_from_bytes
from .issues import file_error

SNIFF_ROWS = 50
# Recipients one file may bring; more are refused before any row is checked.
MAX_ROWS = 200_000


def sheet_read(*, data: bytes, columns: dict[str, Column], required: str):
    """The file's rows under the columns' names, with their row numbers.

    Raises ClientImportError when the file as a whole cannot be read: not
    text, not CSV, empty, or without the `required` column.
    """
    if not data.strip():
        raise file_error(_("The file is empty."))
    text = text_from_bytes(data)
    # Strict: an unclosed quotation mark is an error, not a cell that
    # silently swallows every row after it.
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=_sniff(text), strict=True
    )
    rows = _Numbered(reader)
    try:
        # Blank rows before the header still count, as in a spreadsheet.
        header_row, header = next(
            ((n, row) for n, row in rows if "".join(row).strip()), (0, None)
        )
        if header is None:
            raise file_error(_("The file is empty."))
        found = header_columns(
            header, header_row=header_row, columns=columns, required=required
        )
        found.update(_extra_columns(header, found))
        dataset = tablib.Dataset(headers=[*found, ROW_COLUMN])
        for number, row in rows:
            if "".join(row).strip():
                if len(dataset) >= MAX_ROWS:
                    raise file_error(
                        _(
                            "The file has more than %(max)s recipients. Split "
                            "it into smaller files."
                        )
                        % {"max": f"{MAX_ROWS:,}".replace(",", " ")}
                    )
                dataset.append([*_cells(row, found.values()), number])
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise file_error(
                _("the row is not valid CSV: a cell is longer than %(max)s characters.")
                % {"max": f"{csv.field_size_limit():,}".replace(",", " ")},
                rows.last + 1,
            ) from exc
        raise file_error(
            _(
                "the row is not valid CSV (%(error)s). Check that its quotation "
                "marks are paired."
            )
            % {"error": exc},
            rows.last + 1,
        ) from exc
    if not dataset:
        raise file_error(_("The file has a header row but no recipients."))
    return dataset


class _Numbered:
    """Rows with their spreadsheet number; `last` is the last one read."""

    def __init__(self, reader):
        self.reader = reader
        self.last = 0

    def __iter__(self):
        return self

    def __next__(self):
        row = next(self.reader)
        self.last += 1
        return self.last, row


def _extra_columns(header: list[str], found: dict) -> dict[str, list[int]]:
    """The file's other columns, under EXTRA_PREFIX: the owner's custom
    fields may claim them (ClientResource), or the user may create fields
    for them. Each header once; empty ones and NOT_FIELDS are left out."""
    used = {index for indexes in found.values() for index in indexes}
    extra, seen = {}, set()
    for index, name in enumerate(header):
        name = " ".join(name.replace("\ufeff", "").split())
        key = header_key(name)
        if index in used or not key or key in NOT_FIELDS or key in seen:
            continue
        seen.add(key)
        extra[EXTRA_PREFIX + name[:100]] = [index]
    return extra


def _cells(row: list[str], places):
    width = len(row)
    for indexes in places:
        if len(indexes) == 1:
            yield row[indexes[0]] if indexes[0] < width else ""
        else:
            # A whole value from its parts: "John", "Q.", "Public".
            parts = (cell_text(row[i]) for i in indexes if i < width)
            yield " ".join(filter(None, parts))


def _sniff(text: str) -> str:
    """Comma, semicolon (Excel in Russian locales) or tab, from the first rows.

    The delimiter that splits the header into the most columns and keeps the
    most rows at that width wins; a one-column file reads as commas.
    """
    lines = text[:65536].splitlines()
    sample = lines[:SNIFF_ROWS] if len(lines) > SNIFF_ROWS else lines[:-1] or lines
    best, best_score = ",", None
    for delimiter in (",", ";", "\t"):
        try:
            rows = csv.reader(sample, delimiter=delimiter)
            widths = [len(row) for row in rows if row]
        except csv.Error:
            continue
        if not widths:
            continue
        score = (widths[0] > 1, sum(w == widths[0] for w in widths), widths[0])
        if best_score is None or score > best_score:
            best, best_score = delimiter, score
    return best
