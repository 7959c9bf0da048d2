"""The two roles, `clients` and `managers`, as groups with permissions.

Data migrations call `roles_ensure` whenever models add permissions; it only
adds what is missing, so running it again changes nothing.
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions

CLIENTS = "clients"
MANAGERS = "managers"

# Permissions a group holds on every row. Clients' rights on the rows they own
# are object permissions granted per row; managers see everything read-only.
# A client's global `add_*` permissions open those parts of the admin; what
# they may see and change there is their own rows only.
ROLE_PERMISSIONS = {
    CLIENTS: [
        "core.add_client",
        "core.add_message",
        "core.add_mailing",
        "core.add_article",
        "core.add_suppression",
        "core.add_tag",
        "core.add_field",
        "core.add_segment",
        "core.add_subscriptionform",
        "core.add_senderdomain",
        "core.add_smtprelay",
    ],
    MANAGERS: [
        "core.view_user",
        "core.set_user_active_status",
        "core.suspend_sending",
        "core.view_client",
        "core.view_message",
        "core.view_mailing",
        "core.view_mailingrun",
        "core.view_attempt",
        "core.set_schedule_active_status",
        "core.view_article",
        "core.approve_article",
        "core.view_suppression",
        "core.view_tag",
        "core.view_field",
        "core.view_segment",
        "core.view_consent",
        "core.view_subscriptionform",
        "core.lift_suppression",
        "core.view_event",
        "core.view_unreadbounce",
        "core.view_senderdomain",
        "core.view_smtprelay",
    ],
}


def roles_ensure(*, apps=global_apps) -> None:
    """Create both groups and grant each the permissions that exist so far."""
    # On a fresh database permissions are only created after all migrations
    # (post_migrate); create them now so this migration can use them.
    for app_config in apps.get_app_configs():
        stub = getattr(app_config, "models_module", None) is None  # migration state
        if stub:
            app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        if stub:
            app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for dotted in perms:
            app_label, codename = dotted.split(".")
            permission = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if permission is not None:
                group.permissions.add(permission)
