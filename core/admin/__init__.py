# Importing the modules registers the back office.
from . import blog, clients, mailings, messages, reports, suppressions, users  # noqa: F401
