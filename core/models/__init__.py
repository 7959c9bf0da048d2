from .audience import Field, Tag
from .blog import Article
from .clients import Client
from .consents import Consent
from .mailings import Attempt, Mailing, MailingRun, Message
from .permissions import (
    ArticleUserObjectPermission,
    ClientUserObjectPermission,
    FieldUserObjectPermission,
    MailingUserObjectPermission,
    MessageUserObjectPermission,
    SegmentUserObjectPermission,
    TagUserObjectPermission,
)
from .segments import Segment
from .suppressions import Suppression
from .users import User

__all__ = [
    "Article",
    "ArticleUserObjectPermission",
    "Attempt",
    "Client",
    "ClientUserObjectPermission",
    "Consent",
    "Field",
    "FieldUserObjectPermission",
    "Mailing",
    "MailingRun",
    "MailingUserObjectPermission",
    "Message",
    "MessageUserObjectPermission",
    "Segment",
    "SegmentUserObjectPermission",
    "Suppression",
    "Tag",
    "TagUserObjectPermission",
    "User",
]
