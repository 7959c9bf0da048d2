"""Uploaded files waiting for "Confirm import", in a directory of our own.

django-import-export keeps each checked upload in a temporary file until it
is confirmed; unconfirmed ones stayed for good, up to 20 MB a request. Here
they live under IMPORT_UPLOAD_DIR (only this service reads it), each user
keeps one (a new upload replaces the one before), and uploads older than
the confirmation window are removed whenever anyone uploads.
"""

import os
import time
import uuid
from pathlib import Path

from django.conf import settings
from import_export.tmp_storages import TempFolderStorage

# How long an uploaded file waits for its "Confirm import".
CONFIRM_MAX_AGE = 60 * 60


def uploads_dir() -> Path:
    path = Path(settings.IMPORT_UPLOAD_DIR)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


class UploadStorage(TempFolderStorage):
    """The library's temporary-folder storage, in our directory."""

    def save(self, data):
        if not self.name:
            self.name = uuid.uuid4().hex
        binary = isinstance(data, bytes)
        encoding = None if binary else self.encoding
        with open(
            self.get_full_path(), "wb" if binary else "w", encoding=encoding
        ) as f:
            f.write(data)

    def get_full_path(self):
        return str(uploads_dir() / os.path.basename(self.name))


def _owner_prefix(user_id: int) -> str:
    return f"u{user_id}-"


def upload_keep(*, name: str, user_id: int) -> str:
    """Make `name` the user's one pending upload; return its new name.

    The user's earlier pending upload is removed, and so is anyone's that
    the confirmation window has passed.
    """
    directory = uploads_dir()
    prefix = _owner_prefix(user_id)
    kept = prefix + os.path.basename(name).removeprefix(prefix)
    os.replace(directory / os.path.basename(name), directory / kept)
    cutoff = time.time() - CONFIRM_MAX_AGE
    for path in directory.iterdir():
        try:
            if path.name != kept and (
                path.name.startswith(prefix) or path.stat().st_mtime < cutoff
            ):
                path.unlink()
        except OSError:  # removed meanwhile by a confirm or another purge
            continue
    return kept


def upload_is_users(*, name: str, user_id: int) -> bool:
    return os.path.basename(name).startswith(_owner_prefix(user_id))
