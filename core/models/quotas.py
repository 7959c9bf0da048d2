from django.db import models
from django.utils.translation import gettext_lazy as _


class SendingUsage(models.Model):
    """How many messages one owner's mailings took for sending on one day
    (in TIME_ZONE): what sending quotas count, kept for every owner.

    A claim adds what it takes; what goes back to the queue unsent (a retry
    later, a run paused, a worker stopped) is given back when recorded. So a
    message counts once it is handed to the relay, whatever the answer.
    """

    owner = models.ForeignKey(
        "core.User",
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="+",
    )
    day = models.DateField(_("day"))
    count = models.PositiveIntegerField(_("messages"), default=0)

    class Meta:
        verbose_name = _("sending usage")
        verbose_name_plural = _("sending usage")
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "day"], name="sending_usage_owner_day_unique"
            ),
        ]

    def __str__(self):
        return f"{self.owner_id} {self.day}: {self.count}"
