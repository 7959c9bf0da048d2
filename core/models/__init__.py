from .audience import Field, Tag
from .blog import Article
from .clients import Client
from .consents import Consent
from .events import Event, EventCount, EventCountsUntil, UnreadBounce
from .mailings import Attempt, Mailing, MailingRun, Message
from .permissions import (
    ArticleUserObjectPermission,
    ClientUserObjectPermission,
    FieldUserObjectPermission,
    MailingUserObjectPermission,
    MessageUserObjectPermission,
    SegmentUserObjectPermission,
    SenderDomainUserObjectPermission,
    SmtpRelayUserObjectPermission,
    SubscriptionFormUserObjectPermission,
    TagUserObjectPermission,
)
from .quotas import SendingUsage
from .relays import SmtpRelay
from .segments import Segment
from .senders import SenderDomain
from .subscriptions import SubscriptionForm
from .suppressions import Suppression
from .users import User

__all__ = [
    "Article",
    "ArticleUserObjectPermission",
    "Attempt",
    "Client",
    "ClientUserObjectPermission",
    "Consent",
    "Event",
    "EventCount",
    "EventCountsUntil",
    "Field",
    "FieldUserObjectPermission",
    "Mailing",
    "MailingRun",
    "MailingUserObjectPermission",
    "Message",
    "MessageUserObjectPermission",
    "Segment",
    "SegmentUserObjectPermission",
    "SenderDomain",
    "SenderDomainUserObjectPermission",
    "SendingUsage",
    "SmtpRelay",
    "SmtpRelayUserObjectPermission",
    "SubscriptionForm",
    "SubscriptionFormUserObjectPermission",
    "Suppression",
    "Tag",
    "TagUserObjectPermission",
    "UnreadBounce",
    "User",
]
