"""Encrypt every stored secret again under the first of ENCRYPTION_KEYS."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.translation import gettext as _

from core.keys import SecretUnavailable
from core.services.senders import secrets_rotate


class Command(BaseCommand):
    help = (
        "Encrypt every stored secret (sender domains' DKIM keys, relays' passwords) "
        "again with the "
        "first key of ENCRYPTION_KEYS. Run it after putting a new key first; "
        "then the old key can be removed."
    )

    def handle(self, *args, **options):
        try:
            with transaction.atomic():
                count = secrets_rotate()
        except SecretUnavailable as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            _("Secrets encrypted with the first key: %(count)d.") % {"count": count}
        )
