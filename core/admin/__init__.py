from . import users  # noqa: F401  registers the user admin
