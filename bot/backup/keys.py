"""The encryption keys a snapshot is written and read with (ATLAS_ENCRYPTION_KEY[_FILE])."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.errors import AtlasError
from bot.records import Snapshot

if TYPE_CHECKING:
    from bot.store.crypto import Identity


class Keys:
    """Loaded once, on first use: pyrage is imported only when a key is configured."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._identity: Identity | None = None
        self._loaded = False
        self._lock = threading.Lock()

    def current(self) -> Identity | None:
        """The identity new artifacts are encrypted to, or None without a key."""
        with self._lock:
            if not self._loaded:
                st = self.settings
                if st.encryption_key is not None or st.encryption_key_file is not None:
                    from bot.store import crypto

                    env = {}
                    if st.encryption_key is not None:
                        env[crypto.KEY_ENV] = st.encryption_key.get_secret_value()
                    if st.encryption_key_file is not None:
                        env[crypto.KEY_FILE_ENV] = str(st.encryption_key_file)
                    self._identity = crypto.load_identity(env)
                self._loaded = True
            return self._identity

    def for_snapshot(self, snap: Snapshot) -> Identity | None:
        """What reads `snap`: None for a plain artifact; an error if it is encrypted and
        no key is configured."""
        if snap.encryption != "age":
            return None
        identity = self.current()
        if identity is None:
            raise AtlasError(
                f"Snapshot {snap.id} is encrypted (age), and no key is configured.",
                "set ATLAS_ENCRYPTION_KEY_FILE to the key it was made with",
            )
        return identity
