# Importing the modules registers the back office.
from . import (  # noqa: F401
    blog,
    clients,
    consents,
    fields,
    mailings,
    messages,
    relays,
    reports,
    segments,
    senders,
    subscriptions,
    suppressions,
    tags,
    users,
)
