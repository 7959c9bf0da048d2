from django.db import migrations

from core.services.roles import roles_ensure


def extend_roles(apps, schema_editor):
    roles_ensure(apps=apps)


class Migration(migrations.Migration):
    dependencies = [("core", "0006_articles")]

    operations = [migrations.RunPython(extend_roles, migrations.RunPython.noop)]
