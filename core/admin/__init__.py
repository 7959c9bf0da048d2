from . import blog, clients, mailings, messages, reports, users  # noqa: F401  registers the back office
