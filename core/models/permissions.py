"""django-guardian object permissions with direct foreign keys.

A direct key lets the database join permissions to rows by index instead of
matching text primary keys through a generic relation.
"""

from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from .audience import Field, Tag
from .blog import Article
from .clients import Client
from .mailings import Mailing, Message
from .relays import SmtpRelay
from .segments import Segment
from .senders import SenderDomain
from .subscriptions import SubscriptionForm


class ClientUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Client, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        abstract = False


class ClientGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Client, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        abstract = False


class MessageUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Message, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        abstract = False


class MessageGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Message, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        abstract = False


class MailingUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Mailing, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        abstract = False


class MailingGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Mailing, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        abstract = False


class ArticleUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Article, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        abstract = False


class ArticleGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Article, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        abstract = False


class TagUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Tag, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        abstract = False


class TagGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Tag, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        abstract = False


class FieldUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Field, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        abstract = False


class FieldGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Field, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        abstract = False


class SegmentUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Segment, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        abstract = False


class SegmentGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Segment, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        abstract = False


class SubscriptionFormUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(SubscriptionForm, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        abstract = False


class SubscriptionFormGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(SubscriptionForm, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        abstract = False


class SenderDomainUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(SenderDomain, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        abstract = False


class SenderDomainGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(SenderDomain, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        abstract = False


class SmtpRelayUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(SmtpRelay, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        abstract = False


class SmtpRelayGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(SmtpRelay, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        abstract = False
