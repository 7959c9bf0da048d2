"""Error reports mask every password a setting's URL holds."""

import pytest

from core.reporting import SecretsFilter

MASK = SecretsFilter.cleansed_substitute


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "smtp+tls://shop:s3cret@smtp.example.com:587",
            f"smtp+tls://shop:{MASK}@smtp.example.com:587",
        ),
        # An "@" in the user name, as SMTP logins have, or in the password.
        (
            "smtp://user@example.com:s3cret@smtp.example.com",
            f"smtp://user@example.com:{MASK}@smtp.example.com",
        ),
        ("redis://:p@ss@127.0.0.1:6379/0", f"redis://:{MASK}@127.0.0.1:6379/0"),
        (
            "rediscache://127.0.0.1:6379/1?password=s3cret&db=1",
            f"rediscache://127.0.0.1:6379/1?password={MASK}&db=1",
        ),
        ("https://example.com/path", "https://example.com/path"),
    ],
)
def test_passwords_inside_urls_are_masked(url, masked):
    cleansed = SecretsFilter().cleanse_setting("LOCATION", {"nested": [url]})
    assert cleansed == {"nested": [masked]}
    assert "s3cret" not in str(cleansed) and "p@ss" not in str(cleansed)
