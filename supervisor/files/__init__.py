"""Files in and out of a container's root filesystem, as tar streams.

Everything here works on a directory fd that stands for the container's
root and never leaves it: each path is walked one component at a time with
``openat`` and ``O_NOFOLLOW``, symbolic links resolved by hand against that
root (``..`` at the root stays there, an absolute target starts again from
it), as if the caller were chrooted into the container::

    _walk.py    confined path resolution under a root fd
    _members.py the checks every archive member passes before anything is written
    _put.py     extracting a tar into a directory of the container
    _get.py     a tar stream of a path of the container, and its stat
    _mount.py   a snapshot's mounts, mounted and at once detached (held by an fd)

:mod:`supervisor.domain._archive` chooses the root (a running task's
``/proc/<pid>/root``, the spec's root directory, or the snapshot) and gives
:class:`~supervisor.Container` its ``put_archive``/``get_archive``.
"""
