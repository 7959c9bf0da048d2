"""Create a group, or add permissions to an existing one."""

import difflib

from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Create the group NAME if it does not exist and give it the listed "
        "permissions (codename, or app_label.codename). Permissions it already "
        "has are kept; running the command twice is harmless."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="group name, e.g. managers")
        parser.add_argument("permissions", nargs="*", help="permission codenames")

    def handle(self, *args, name, permissions, **options):
        found = [self._permission(codename) for codename in permissions]
        group, created = Group.objects.get_or_create(name=name)
        group.permissions.add(*found)
        verb = "Created" if created else "Updated"
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} group {name!r}; it has {group.permissions.count()} "
                f"permission(s)."
            )
        )

    def _permission(self, dotted):
        app_label, _, codename = dotted.rpartition(".")
        matches = Permission.objects.filter(codename=codename)
        if app_label:
            matches = matches.filter(content_type__app_label=app_label)
        matches = list(matches.select_related("content_type"))
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            choices = ", ".join(
                f"{p.content_type.app_label}.{p.codename}" for p in matches
            )
            raise CommandError(
                f"Permission {dotted!r} is ambiguous; name one of: {choices}."
            )
        codenames = Permission.objects.values_list("codename", flat=True)
        close = difflib.get_close_matches(codename, codenames, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise CommandError(f"Unknown permission {dotted!r}.{hint} Nothing changed.")
