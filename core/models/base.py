from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .grants import owner_field_name, perm_name, permissions_grant_owner


def sees_all(user, model) -> bool:
    """Whether `user` sees every row of `model`: superusers, and managers
    (a global view permission). Everyone else sees their own rows only."""
    return user.is_superuser or user.has_perm(perm_name(model, "view"))


class OwnedQuerySet(models.QuerySet):
    """Rows that belong to one user; permissions on them follow the owner."""

    def owned_by(self, user):
        return self.filter(**{owner_field_name(self.model): user})

    def visible_to(self, user):
        """What `user` may see: everything (`sees_all`) or their own rows.

        Admin lists, reports and the dashboard all ask this.
        """
        if not user.is_authenticated:
            return self.none()
        if sees_all(user, self.model):
            return self
        return self.owned_by(user)

    def bulk_create(self, objs, *args, **kwargs):
        # Bulk inserts skip save() and post_save: grant the owner's object
        # permissions here, so a CSV import owns what it creates.
        created = super().bulk_create(objs, *args, **kwargs)
        permissions_grant_owner(objs=[obj for obj in created if obj.pk is not None])
        return created


class OwnedModel(models.Model):
    # The field OwnedQuerySet, OwnedAdmin and the grants read the owner from;
    # a model whose owner has another name (Article.author) sets its own.
    owner_field = "owner"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("changed"), auto_now=True)

    objects = OwnedQuerySet.as_manager()

    class Meta:
        abstract = True
