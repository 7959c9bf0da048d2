"""Recipient CSV import and export on django-import-export.

The admin, `import_clients` and the benchmark use only these names.

    decoding.py   bytes to text: UTF-8, UTF-16, Windows-1251, never binary
    rows.py       CSV to a dataset numbered as the spreadsheet
    columns.py    the columns' header names and widgets
    resource.py   ClientResource: the owner, merges, bulk writes; the format
    results.py    the library's Result numbered as the spreadsheet; a summary
    writing.py    the owner's lock, the set-based UPDATE
    importing.py  clients_import, the size limit
    export.py     streamed CSV export
"""

from .export import clients_export_csv
from .importing import (
    clients_import,
    clients_import_check_size,
    clients_import_max_bytes,
)
from .issues import ClientImportError, ImportIssue
from .resource import (
    CONSENT_TEXT,
    ClientResource,
    ImportConsent,
    RecipientCSV,
)
from .results import ImportSummary, suppressed_note

__all__ = [
    "CONSENT_TEXT",
    "ClientImportError",
    "ClientResource",
    "ImportConsent",
    "ImportIssue",
    "ImportSummary",
    "RecipientCSV",
    "clients_export_csv",
    "clients_import",
    "clients_import_check_size",
    "clients_import_max_bytes",
    "suppressed_note",
]
