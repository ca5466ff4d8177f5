"""Digests: checking them, verifying streams against them, chain ids."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from .. import errors

__all__ = ["Verifier", "chain_ids", "check_digest", "sha256_digest"]

_SHA256 = re.compile(r"sha256:[a-f0-9]{64}\Z")


def check_digest(value: object, what: str = "digest") -> str:
    """``value`` if it is a sha256 digest in canonical form.

    Raises:
        InvalidArgument: anything else (other algorithms are not supported).
    """
    if not isinstance(value, str) or not _SHA256.match(value):
        raise errors.InvalidArgument(f"bad {what}: {value!r} (sha256:<64 hex> expected)")
    return value


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """The chain id of every layer prefix, as containerd names committed
    snapshots: the first is the first diff id, each next one is
    ``sha256(previous + " " + diff_id)``."""
    out: list[str] = []
    for diff_id in diff_ids:
        check_digest(diff_id, "diff id")
        if not out:
            out.append(diff_id)
        else:
            out.append(sha256_digest(f"{out[-1]} {diff_id}".encode()))
    return out


class Verifier:
    """Counts and hashes bytes as they stream past, to check against a descriptor."""

    def __init__(self, digest: str, size: int) -> None:
        self.digest = check_digest(digest)
        self.size = size
        self.seen = 0
        self._hash = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self.seen += len(data)
        if self.seen > self.size:
            raise errors.FailedPrecondition(
                f"{self.digest}: more than the {self.size} bytes its descriptor says"
            )
        self._hash.update(data)

    def check(self) -> None:
        """Raise FailedPrecondition unless exactly the expected bytes went by."""
        if self.seen != self.size:
            raise errors.FailedPrecondition(
                f"{self.digest}: got {self.seen} bytes, its descriptor says {self.size}"
            )
        got = "sha256:" + self._hash.hexdigest()
        if got != self.digest:
            raise errors.FailedPrecondition(
                f"content digest {got} is not the expected {self.digest}"
            )
