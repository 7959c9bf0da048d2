"""Grant owners any object permission missing on their rows."""

from django.core.management.base import BaseCommand

from core.services.permissions import permissions_sync


class Command(BaseCommand):
    help = (
        "Give every owner view, change and delete permissions on each row they "
        "own (recipients, messages, mailings, articles) where a grant is missing, "
        "e.g. after rows were written with raw SQL. Safe to run any time."
    )

    def handle(self, *args, **options):
        added = permissions_sync()
        for name, count in added.items():
            self.stdout.write(f"{name}: {count} grant(s) added")
        self.stdout.write(self.style.SUCCESS("Object permissions are complete."))
