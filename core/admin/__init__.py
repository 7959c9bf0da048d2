from . import blog, clients, mailings, users  # noqa: F401  registers the back office
