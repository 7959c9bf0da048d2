# Importing the modules registers the back office.
from . import (  # noqa: F401
    blog,
    clients,
    mailings,
    messages,
    reports,
    suppressions,
    tags,
    users,
)
