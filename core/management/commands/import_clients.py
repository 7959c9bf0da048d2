"""Import recipients from a CSV file into one user's list."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from core.models import User
from core.services.recipients import (
    CONSENT_TEXT,
    ClientImportError,
    ImportConsent,
    clients_import,
    clients_import_check_size,
    suppressed_note,
)


class Command(BaseCommand):
    help = (
        "Import recipients from FILE (CSV: UTF-8, UTF-16 or Windows-1251, "
        "separated by commas, semicolons or tabs) into the list of the user "
        "with e-mail EMAIL, exactly as the admin's Import does: existing "
        "addresses are updated, duplicate rows merged, and if any row is "
        "invalid nothing is imported."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="path of the CSV file")
        parser.add_argument(
            "--owner", required=True, metavar="EMAIL", help="the list's owner"
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="check the file and print the counts without saving anything",
        )
        parser.add_argument(
            "--consent",
            action="store_true",
            help=(
                "the owner confirms that everyone in the file agreed to the "
                "processing of their personal data and to receive their "
                "mailings; recorded for each recipient added (required to import)"
            ),
        )

    def handle(self, *args, file, owner, dry_run, consent, **options):
        user = User.objects.with_email(owner).first()
        if user is None:
            raise CommandError(
                _("No user with the e-mail %(email)s.") % {"email": owner}
            )
        path = Path(file)
        try:
            clients_import_check_size(size=path.stat().st_size)
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as error:
            raise CommandError(_("No such file: %(file)s.") % {"file": file}) from error
        except OSError as error:
            raise CommandError(
                _("Cannot read %(file)s: %(error)s") % {"file": file, "error": error}
            ) from error
        except ClientImportError as error:
            raise CommandError("\n".join(error.listing())) from error
        if not (dry_run or consent):
            raise CommandError(
                _(
                    "Nothing was imported: pass --consent to confirm that the "
                    "people in the file agreed to receive the owner's mailings."
                )
            )
        given = ImportConsent(text=str(CONSENT_TEXT), user_agent="import_clients")
        try:
            result = clients_import(
                owner=user, data=data, dry_run=dry_run, consent=given
            )
        except ClientImportError as error:
            lines = [_("Nothing was imported from %(file)s:") % {"file": file}]
            raise CommandError("\n".join([*lines, *error.listing()])) from error
        counts = _(
            "%(rows)d rows read; created: %(created)d, updated: %(updated)d, "
            "unchanged: %(unchanged)d, duplicate rows merged: %(merged)d, "
            "rows without an e-mail skipped: %(skipped)d."
        ) % {
            "rows": result.rows,
            "created": result.created,
            "updated": result.updated,
            "unchanged": result.unchanged,
            "merged": result.merged,
            "skipped": result.skipped,
        }
        if result.suppressed:
            counts = f"{counts} {suppressed_note(result)}"
        if dry_run:
            self.stdout.write(
                _("Dry run, nothing saved. %(counts)s") % {"counts": counts}
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    _("Imported into %(owner)s's list. %(counts)s")
                    % {"owner": user.email, "counts": counts}
                )
            )
