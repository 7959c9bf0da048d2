from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    """Whitenoise's manifest storage, minus the 500 on a file it does not list.

    jazzmin's templates name a few files that its package does not ship;
    under the strict default every admin page would fail with DEBUG=False.
    """

    manifest_strict = False
