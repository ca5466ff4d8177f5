"""The command's error lines: containerd's socket is blamed only for a
failure of the containerd connection; a registry failure names the registry."""

from __future__ import annotations

import httpx
import pytest

from supervisor import errors
from supervisor.cli._errors import EXIT_FAILED, describe, exit_code, registry_of

SOCKET = "/run/containerd/containerd.sock"


def _from_httpx(error: errors.SupervisorError, url: str) -> errors.SupervisorError:
    # What the registry code raises: its error, chained to what httpx raised.
    try:
        try:
            raise httpx.ConnectError(
                "All connection attempts failed", request=httpx.Request("GET", url)
            )
        except httpx.ConnectError as exc:
            raise error from exc
    except errors.SupervisorError as raised:
        return raised


def test_a_refused_registry_is_named_and_containerd_is_not() -> None:
    exc = _from_httpx(
        errors.Unavailable("manifest nothing:1: ConnectError: refused"),
        "http://127.0.0.1:5999/v2/nothing/manifests/1",
    )
    text = describe(exc, SOCKET)
    assert "cannot reach the registry at 127.0.0.1:5999" in text
    assert "containerd" not in text
    assert exit_code(exc) == EXIT_FAILED


def test_a_registry_named_by_the_error_itself() -> None:
    exc = errors.Unavailable("token: refused", registry="registry.example:443")
    assert registry_of(exc) == "registry.example:443"
    assert "cannot reach the registry at registry.example:443" in describe(exc, SOCKET)


def test_other_registry_failures_name_it_too() -> None:
    exc = _from_httpx(
        errors.FailedPrecondition("manifest x:1: the registry's certificate is not trusted"),
        "https://registry.example:5000/v2/x/manifests/1",
    )
    text = describe(exc, SOCKET)
    assert text.startswith("supervisor: FailedPrecondition: the registry at registry.example:5000")
    assert "containerd" not in text


@pytest.mark.parametrize(
    "cause",
    [ConnectionRefusedError(111, "Connection refused"), FileNotFoundError(2, "No such file")],
)
def test_a_containerd_failure_still_names_its_socket(cause: OSError) -> None:
    try:
        try:
            raise cause
        except OSError as exc:
            raise errors.Unavailable(f"containerd connection failed: {exc}") from exc
    except errors.Unavailable as raised:
        text = describe(raised, SOCKET)
    assert f"cannot reach containerd at {SOCKET}" in text
    assert "registry" not in text
