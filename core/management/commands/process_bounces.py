"""Read the bounce mailbox once: record bounces and complaints, act on them."""

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from core.services.bounces import MailboxError, bounces_process
from core.services.bounces.mailboxes import mailbox_name


class Command(BaseCommand):
    help = _(
        "Read the bounce mailbox (BOUNCE_MAILBOX_URL, or --url) once: record "
        "bounces and complaints, suppress the addresses they call for, delete "
        "what was read. What cannot be read stays there, listed for managers."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--url",
            help=_("another mailbox: imap(s)://, pop3(s):// or maildir://"),
        )

    def handle(self, *args, url=None, **options):
        try:
            intake = bounces_process(url=url)
        except MailboxError as error:
            raise CommandError(
                _("The bounce mailbox could not be read: %(error)s") % {"error": error}
            ) from None
        if url:
            self.stdout.write(mailbox_name(url))
        self.stdout.write(intake.line())
