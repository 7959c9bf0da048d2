"""An import's outcome: the library's Result, numbered as the spreadsheet.

`ClientImportResult.issues()` says why nothing was imported, row by row;
`summary()` is what the admin, the command and the benchmark report.
"""

from dataclasses import dataclass, field

from django.db import IntegrityError
from django.db.transaction import TransactionManagementError
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from import_export.results import Result, RowResult

from .columns import ROW_COLUMN
from .issues import (
    MAX_KEPT_ISSUES,
    MAX_LISTED_ISSUES,
    ClientImportError,
    ImportIssue,
)


@dataclass
class ImportSummary:
    """What an import did, or would do with `dry_run`."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    # Rows with no address at all, as contact exports have (phone-only
    # contacts): skipped, and shown before the import is confirmed.
    skipped: int = 0
    skipped_rows: list[int] = field(default_factory=list)
    # Addresses suppressed for the owner (DESIGN.md, List health): imported
    # as unsubscribed.
    suppressed: int = 0
    # The file's columns no field of the owner's claims: not imported, and
    # offered to be created as custom fields before the import is confirmed.
    unknown_columns: list[str] = field(default_factory=list)
    # Tags the file names that the owner has not got yet (created on
    # import), and how many recipients get tags.
    new_tags: list[str] = field(default_factory=list)
    tagged: int = 0
    dry_run: bool = False
    # (row, import type, email, full_name, comment) for the first addresses.
    preview: list[tuple[int, str, str, str, str]] = field(default_factory=list)

    @property
    def skipped_listing(self) -> str:
        more = ", …" if self.skipped > len(self.skipped_rows) else ""
        return ", ".join(str(row) for row in self.skipped_rows) + more


def suppressed_note(summary: ImportSummary) -> str:
    """What the admin and the command say of the file's suppressed addresses."""
    return ngettext(
        "%(count)d address is suppressed (it unsubscribed or was blocked): it "
        "is imported as unsubscribed, and no mailing reaches it.",
        "%(count)d addresses are suppressed (they unsubscribed or were "
        "blocked): they are imported as unsubscribed, and no mailing reaches "
        "them.",
        summary.suppressed,
    ) % {"count": summary.suppressed}


class ClientRowResult(RowResult):
    def __init__(self):
        super().__init__()
        # The spreadsheet row; the library counts dataset rows instead.
        self.number = None


class ClientImportResult(Result):
    """The library's result, numbered as the spreadsheet, with our counts."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.merged = 0
        self.suppressed = 0
        self.unlisted_invalid = 0
        self.skipped_rows: list[int] = []
        self.preview: list[tuple] = []
        self.unknown_columns: list[str] = []
        self.new_tags: list[str] = []
        self.tagged = 0

    def append_invalid_row(self, number, row, validation_error):
        # Kept up to MAX_KEPT_ISSUES, then only counted: nothing is imported
        # while one row is invalid anyway.
        if len(self.invalid_rows) >= MAX_KEPT_ISSUES:
            self.unlisted_invalid += 1
            return
        super().append_invalid_row(row[ROW_COLUMN], row, validation_error)

    def append_row_result(self, row_result):
        if row_result.import_type == RowResult.IMPORT_TYPE_INVALID and (
            self.unlisted_invalid
        ):
            return  # counted in totals; its errors are not listed
        super().append_row_result(row_result)

    def append_error_row(self, number, row, errors):
        super().append_error_row(row[ROW_COLUMN], row, errors)

    def issues(self) -> list[ImportIssue]:
        """Why nothing was imported, in the file's order; [] if it was.

        Raises what is no fault of the file (a bug, a full disk): the
        transaction was rolled back, and the error is not the user's to fix.
        """
        issues, raced = [], False
        for error in self.base_errors:
            if isinstance(error.error, ClientImportError):
                issues += error.error.issues
            elif isinstance(error.error, IntegrityError):
                raced = True
            elif not (raced and isinstance(error.error, TransactionManagementError)):
                raise error.error
        if raced:
            # Someone added one of the file's addresses meanwhile (the form,
            # a subscription): the lock only keeps other imports out.
            issues.append(
                ImportIssue(
                    None,
                    _(
                        "The recipient list changed while the file was being "
                        "imported, so nothing was imported. Please try again."
                    ),
                )
            )
        for row in self.error_rows:
            raise row.errors[0].error
        for row in self.invalid_rows:
            for messages in row.error_dict.values():
                issues += [ImportIssue(row.number, message) for message in messages]
        return issues

    def error(self) -> ClientImportError | None:
        """Why nothing was imported (see `issues`), or None if it was."""
        if issues := self.issues():
            return ClientImportError(issues, more=self.unlisted_invalid)
        return None

    def summary(self, *, dry_run: bool) -> ImportSummary:
        skip = self.totals[RowResult.IMPORT_TYPE_SKIP]
        skipped = len(self.skipped_rows)
        return ImportSummary(
            rows=self.total_rows,
            created=self.totals[RowResult.IMPORT_TYPE_NEW],
            updated=self.totals[RowResult.IMPORT_TYPE_UPDATE],
            unchanged=skip - self.merged - skipped,
            merged=self.merged,
            skipped=skipped,
            skipped_rows=self.skipped_rows[:MAX_LISTED_ISSUES],
            suppressed=self.suppressed,
            unknown_columns=self.unknown_columns,
            new_tags=self.new_tags,
            tagged=self.tagged,
            dry_run=dry_run,
            preview=self.preview,
        )
