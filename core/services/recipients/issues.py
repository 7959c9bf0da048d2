"""Why a recipients file cannot be imported, row by row."""

from dataclasses import dataclass

from django.utils.translation import gettext as _

MAX_LISTED_ISSUES = 50
# Invalid rows kept with their messages; past these they are only counted: a
# file of a million bad rows kept them all (280 MB) before.
MAX_KEPT_ISSUES = 1000


@dataclass(frozen=True)
class ImportIssue:
    """One reason the file cannot be imported; `row` counts as a spreadsheet
    does (the header is row 1), or is None for the file as a whole."""

    row: int | None
    message: str

    def __str__(self):
        if self.row is None:
            return self.message
        return _("Row %(row)d: %(message)s") % {
            "row": self.row,
            "message": self.message,
        }


class ClientImportError(Exception):
    """The file cannot be imported; nothing was saved."""

    def __init__(self, issues: list[ImportIssue], *, more: int = 0):
        self.issues = issues
        # Issues past those kept: counted, not held (see MAX_KEPT_ISSUES).
        self.more = more
        super().__init__("; ".join(str(issue) for issue in issues[:3]))

    def listing(self, limit: int = MAX_LISTED_ISSUES) -> list[str]:
        """The first `limit` issues as lines, then how many more there are."""
        lines = [str(issue) for issue in self.issues[:limit]]
        more = len(self.issues) - len(lines) + self.more
        if more:
            lines.append(_("… and %(count)d more.") % {"count": more})
        return lines


def file_error(message: str, row: int | None = None) -> ClientImportError:
    return ClientImportError([ImportIssue(row, message)])
