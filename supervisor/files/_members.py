"""The checks every member of an archive passes before anything is written:
the rules image import applies (:mod:`supervisor.images._tar`), for files
that go into a container."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator

from .. import errors

__all__ = ["MAX_MEMBERS", "checked_members", "member_name", "refuse"]

# More members than this refuse the archive (a whole distribution has fewer).
MAX_MEMBERS = 1_000_000


def refuse(message: str, *, what: str = "archive") -> errors.InvalidArgument:
    """The error that refuses a whole archive."""
    return errors.InvalidArgument(f"{what} refused: {message}")


def member_name(raw: str, *, what: str = "archive") -> str:
    """A member's path, normalised; refused if it is absolute, climbs out
    (``..``), or holds a NUL or a backslash."""
    if not raw or "\0" in raw or "\\" in raw:
        raise refuse(f"bad member name {raw!r}", what=what)
    if raw.startswith("/"):
        raise refuse(f"absolute member path {raw!r}", what=what)
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise refuse(f"member path {raw!r} climbs out of the archive", what=what)
    return "/".join(parts)


def _check(member: tarfile.TarInfo, name: str, earlier: dict[str, tarfile.TarInfo]) -> None:
    if member.isdir() or member.isreg() and not member.issparse():
        return
    if member.issym():
        # Kept as they are: every later lookup through them stays within
        # the container's root (see _walk.py), whatever they point at.
        if not member.linkname or "\0" in member.linkname:
            raise refuse(f"{member.name!r} is a link to nothing")
        return
    if member.islnk():
        target = member_name(member.linkname)
        found = earlier.get(target)
        if found is None or not found.isreg():
            raise refuse(
                f"{member.name!r} is a hard link to {member.linkname!r}, "
                "which is not an earlier regular file of the archive"
            )
        return
    kind = "a device" if member.ischr() or member.isblk() else "not a file, directory or link"
    raise refuse(f"{name!r} is {kind}")


def checked_members(tar: tarfile.TarFile) -> Iterator[tuple[str, tarfile.TarInfo]]:
    """Every member with its normalised name, all checked before the first
    is handed out: a bad one anywhere refuses the archive up front."""
    members: list[tuple[str, tarfile.TarInfo]] = []
    seen: dict[str, tarfile.TarInfo] = {}
    try:
        for member in tar:
            if len(members) >= MAX_MEMBERS:
                raise refuse(f"more than {MAX_MEMBERS} members")
            name = member_name(member.name)
            if not name:
                continue  # "." or "./": the destination itself
            if name in seen and not (member.isdir() and seen[name].isdir()):
                raise refuse(f"{name!r} appears twice")
            _check(member, name, seen)
            seen[name] = member
            members.append((name, member))
    except (tarfile.TarError, EOFError, OSError, UnicodeError) as exc:
        raise refuse(f"unreadable tar: {exc}") from None
    # A member below a name the archive does not make a directory goes
    # through whatever the container has there: a directory, or a link that
    # _walk resolves within the container's root.
    return iter(members)
