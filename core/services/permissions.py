"""Repairs of owners' object permissions (the grants: core/models/grants.py)."""

from django.db.models import Exists, OuterRef
from guardian.utils import get_user_obj_perms_model

from core.models.grants import owned_models, owner_column, owner_permissions


def permissions_sync(*, chunk_size: int = 10000) -> dict[str, int]:
    """Grant owners every missing permission on their rows; return counts.

    Reads rows in chunks, so a list of millions does not fill the memory.
    """
    missing = {}
    for model in owned_models():
        grant_model = get_user_obj_perms_model(model)
        perms = owner_permissions(model)
        column = owner_column(model)
        added = 0
        for perm in perms:
            has_grant = grant_model.objects.filter(
                permission=perm,
                user_id=OuterRef(column),
                content_object_id=OuterRef("pk"),
            )
            rows = (
                model.objects.exclude(Exists(has_grant))
                .values_list("pk", column)
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
