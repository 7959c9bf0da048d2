from .audience import Tag
from .blog import Article
from .clients import Client
from .mailings import Attempt, Mailing, MailingRun, Message
from .permissions import (
    ArticleUserObjectPermission,
    ClientUserObjectPermission,
    MailingUserObjectPermission,
    MessageUserObjectPermission,
    TagUserObjectPermission,
)
from .suppressions import Suppression
from .users import User

__all__ = [
    "Article",
    "ArticleUserObjectPermission",
    "Attempt",
    "Client",
    "ClientUserObjectPermission",
    "Mailing",
    "MailingRun",
    "MailingUserObjectPermission",
    "Message",
    "MessageUserObjectPermission",
    "Suppression",
    "Tag",
    "TagUserObjectPermission",
    "User",
]
