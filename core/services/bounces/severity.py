"""What a failure says of the address: hard, soft, policy or content.

By the enhanced status code (RFC 3463) first; where a server gives none, or
only a generic one (5.0.0, 5.5.0, Exchange's 5.4.1), by the SMTP code and
the words of its answer. A hard bounce suppresses the address at once, soft
ones only after SOFT_BOUNCE_LIMIT within 30 days; policy and content
refusals are the sender's problem and never count against the address.
"""

import re

HARD, SOFT, POLICY, CONTENT = "hard", "soft", "policy", "content"

ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
BASIC = re.compile(r"(?<!\d)([45]\d\d)(?=[\s-]|$)")

# The answer's words, for the codes that do not say enough. Looked for in
# lower case; Russian as Mail.ru and Yandex answer.
WORDS = (
    (
        HARD,
        re.compile(
            r"user unknown|unknown user|no such (user|mailbox|recipient|account)"
            r"|does not exist|doesn't exist|not exist|recipient not found"
            r"|user not found|address not found|invalid (mailbox|recipient)"
            r"|mailbox (unavailable|not found|does not exist)|unknown recipient"
            r"|recipient address rejected: user unknown|account (is )?disabled"
            r"|нет такого|не существует|не найден"
        ),
    ),
    (
        SOFT,
        re.compile(
            r"over ?quota|quota exceeded|mailbox (is )?full|size limit"
            r"|insufficient (system )?storage|переполнен"
        ),
    ),
    (
        POLICY,
        re.compile(
            r"spam|blocked|block list|blocklist|blacklist|policy|reputation"
            r"|rate limit|too many|unsolicited|dmarc|spf|dkim|not authori[sz]ed"
        ),
    ),
)


# An answer about the sender (our return path, our domain), whatever its code:
# Postfix's "Sender address rejected", sender verification, SPF on MAIL FROM.
SENDER = re.compile(
    r"sender address|sender (verify|verification|domain|rejected|not allowed)"
    r"|mail from|envelope.?from|from address|отправител"
)


def enhanced_status(text: str) -> str:
    """The first enhanced status code in `text` ("5.1.1"), or ""."""
    match = ENHANCED.search(text or "")
    return ".".join(match.groups()) if match else ""


def severity_of(status: str, text: str = "") -> str:
    """The severity of a final failure with `status` (may be "") and the
    server's `text`."""
    status = status or enhanced_status(text)
    lowered = (text or "").lower()
    if SENDER.search(lowered):
        return POLICY  # our return path or domain was refused, not the address
    words = _by_words(lowered)
    if status:
        klass, subject, detail = status.split(".")
        if subject == "7":
            return POLICY  # 4.7.x too: greylisting, rate limits, reputation
        if klass == "4":
            return SOFT
        by_code = _by_code(subject, detail)
        if by_code:
            return by_code
    else:
        basic = BASIC.search(text or "")
        if basic and basic[1].startswith("4"):
            return SOFT
        if basic and basic[1] == "552":
            return words if words in (HARD, POLICY) else SOFT
    # A generic code: the words decide; a failure that says nothing clear
    # counts as soft, so one odd answer never suppresses an address.
    return words or SOFT


def _by_code(subject: str, detail: str) -> str:
    if subject == "1":
        # 5.1.7 and 5.1.8 are about our sender address, not the recipient.
        return POLICY if detail in ("7", "8") else HARD
    if subject == "2":
        return {"1": HARD, "3": CONTENT}.get(detail, SOFT)
    if subject == "3":
        return CONTENT if detail == "4" else SOFT
    if subject == "4" and detail == "4":
        return HARD  # unable to route: the domain does not exist
    if subject == "6":
        return CONTENT
    if subject == "7":
        return POLICY
    return ""


def _by_words(text: str) -> str:
    for severity, pattern in WORDS:
        if pattern.search(text):
            return severity
    return ""
