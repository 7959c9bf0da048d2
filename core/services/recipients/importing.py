"""Importing a recipients file into one owner's list: the service doors call.

It reads the whole file before it writes anything, and then writes every
row, or nothing (see resource.py for how).
"""

from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _

from core.models import User

from .issues import file_error
from .resource import ClientResource, ImportConsent, RecipientCSV
from .results import ImportSummary

DEFAULT_MAX_BYTES = 20 * 1024 * 1024


def clients_import_max_bytes() -> int:
    return getattr(settings, "IMPORT_EXPORT_CLIENTS_MAX_UPLOAD_SIZE", DEFAULT_MAX_BYTES)


def clients_import_check_size(*, size: int) -> None:
    """Refuse a file over the limit before anyone reads it into memory."""
    limit = clients_import_max_bytes()
    if size > limit:
        raise file_error(
            _(
                "The file is %(size)s; files up to %(limit)s can be "
                "imported. Split it into smaller files."
            )
            % {"size": filesizeformat(size), "limit": filesizeformat(limit)}
        )


def clients_import(
    *,
    owner: User,
    data: bytes,
    dry_run: bool = False,
    consent: ImportConsent | None = None,
    new_fields: dict | None = None,
) -> ImportSummary:
    """Add the file's recipients to `owner`'s list, or update them by e-mail.

    Raises ClientImportError listing every problem, and then saves nothing.
    E-mails match case-insensitively; a non-empty name, comment or custom
    field value in the file replaces the stored one; tags are added.
    Subscriptions are only ever ended, never renewed: an import cannot
    re-subscribe someone who unsubscribed. An import (not a check) needs the
    owner's `consent`: their word that these people agreed, recorded for
    each recipient added. `new_fields` maps a column to the (key, kind) of a
    custom field to create for it first.
    """
    clients_import_check_size(size=len(data))
    dataset = RecipientCSV().create_dataset(data)
    resource = ClientResource(owner=owner, consent=consent, new_fields=new_fields)
    result = resource.import_data(
        dataset, dry_run=dry_run, rollback_on_validation_errors=True
    )
    if error := result.error():
        raise error
    return result.summary(dry_run=dry_run)
