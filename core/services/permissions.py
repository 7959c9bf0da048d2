"""Object permissions: every owned row gives its owner view, change and delete.

Grants are written whatever created the row: `post_save` covers forms, the
shell and `loaddata`; `OwnedQuerySet.bulk_create` covers CSV imports; and
`permissions_sync` repairs anything else (raw SQL, `QuerySet.update`).
"""

from collections import defaultdict

from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Exists, OuterRef
from django.db.models.signals import post_save
from django.dispatch import receiver
from guardian.utils import get_user_obj_perms_model

from core.models import Article, Client, Mailing, Message
from core.models.base import owner_field_name

OWNED_MODELS = (Client, Message, Mailing, Article)
OWNER_ACTIONS = ("view", "change", "delete")


def _owner_column(model) -> str:
    """The owner's key column: `owner_id`, or `author_id` for articles."""
    return model._meta.get_field(owner_field_name(model)).column


def _owner_permissions(model):
    """The permissions an owner gets on a row of `model`."""
    ctype = ContentType.objects.get_for_model(model)
    codenames = [f"{action}_{model._meta.model_name}" for action in OWNER_ACTIONS]
    return list(Permission.objects.filter(content_type=ctype, codename__in=codenames))


def permissions_grant_owner(*, objs, chunk_size: int = 900) -> int:
    """Give each object's owner view/change/delete on it; return rows offered.

    One INSERT … SELECT per chunk builds the grants in the database from the
    rows' own owners, so a 100,000-row import does not make 300,000 Python
    objects. Existing grants are left alone (ON CONFLICT DO NOTHING), so it
    is safe to call again for the same rows.
    """
    by_model = defaultdict(list)
    for obj in objs:
        if type(obj) in OWNED_MODELS and obj.pk is not None:
            by_model[type(obj)].append(obj.pk)
    offered = 0
    for model, pks in by_model.items():
        grant_table = get_user_obj_perms_model(model)._meta.db_table
        perm_ids = [perm.pk for perm in _owner_permissions(model)]
        for start in range(0, len(pks), chunk_size):
            chunk = pks[start : start + chunk_size]
            rows = ", ".join(["%s"] * len(chunk))
            perms = ", ".join(["%s"] * len(perm_ids))
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {grant_table} "
                    "(permission_id, user_id, content_object_id) "
                    f"SELECT p.id, o.{_owner_column(model)}, o.id "
                    f"FROM {model._meta.db_table} o, "
                    f"{Permission._meta.db_table} p "
                    f"WHERE o.id IN ({rows}) AND p.id IN ({perms}) "
                    "ON CONFLICT DO NOTHING",
                    [*chunk, *perm_ids],
                )
            offered += len(chunk) * len(perm_ids)
    return offered


def permissions_sync(*, chunk_size: int = 10000) -> dict[str, int]:
    """Grant owners every missing permission on their rows; return counts.

    Reads rows in chunks, so a list of millions does not fill the memory.
    """
    missing = {}
    for model in OWNED_MODELS:
        grant_model = get_user_obj_perms_model(model)
        perms = _owner_permissions(model)
        owner_column = _owner_column(model)
        added = 0
        for perm in perms:
            has_grant = grant_model.objects.filter(
                permission=perm,
                user_id=OuterRef(owner_column),
                content_object_id=OuterRef("pk"),
            )
            rows = (
                model.objects.exclude(Exists(has_grant))
                .values_list("pk", owner_column)
                .order_by()
            )
            batch = []
            for pk, owner_id in rows.iterator(chunk_size=chunk_size):
                batch.append(
                    grant_model(user_id=owner_id, permission=perm, content_object_id=pk)
                )
                if len(batch) >= chunk_size:
                    grant_model.objects.bulk_create(batch, ignore_conflicts=True)
                    added += len(batch)
                    batch = []
            grant_model.objects.bulk_create(batch, ignore_conflicts=True)
            added += len(batch)
        missing[model._meta.verbose_name_plural] = added
    return missing


@receiver(post_save)
def grant_owner_on_save(sender, instance, raw=False, **kwargs):
    """Forms, services, the shell and `loaddata` all end up here."""
    if sender in OWNED_MODELS:
        permissions_grant_owner(objs=[instance])
