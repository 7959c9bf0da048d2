from .clients import Client
from .mailings import Attempt, Mailing, MailingRun, Message
from .permissions import (
    ClientUserObjectPermission,
    MailingUserObjectPermission,
    MessageUserObjectPermission,
)
from .users import User

__all__ = [
    "Attempt",
    "Client",
    "ClientUserObjectPermission",
    "Mailing",
    "MailingRun",
    "MailingUserObjectPermission",
    "Message",
    "MessageUserObjectPermission",
    "User",
]
