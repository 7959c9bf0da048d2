"""Authentication: Django's model backend, telling the login form when the
password was right but the account is blocked.

The form says "blocked" only to someone who knows the password. It used to
check the password a second time to find out, so a wrong password for a
blocked account cost two hashes and answered twice as slowly as any other:
the delay told a stranger which accounts were blocked.
"""

from django.contrib.auth.backends import ModelBackend


class AccountBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        # Django makes a backend per call, so this is this attempt's alone.
        self.refused_blocked = False
        user = super().authenticate(request, username, password, **kwargs)
        if user is None and self.refused_blocked and request is not None:
            request.login_refused_blocked = True
        return user

    def user_can_authenticate(self, user):
        # Asked only once the password matched.
        allowed = super().user_can_authenticate(user)
        self.refused_blocked = not allowed
        return allowed
