"""Prints which provider botocore's default credential chain picks, as JSON.

Run by tests/botocore_parity.rs in an isolated environment (temporary HOME,
cleared variables). Output, one line:

    {"kind": "method", "result": "env", ...}          credentials found
    {"kind": "exception", "result": "ProfileNotFound"} get_credentials() raised
    {"kind": "none", "result": "none"}                 get_credentials() is None

Loopback only: every socket connection and name lookup that is not a loopback
address is refused and listed in "blocked" (the test asserts it is empty).
Only `.method` is read from the credentials: for assume-role, web identity and
SSO, botocore returns DeferredRefreshableCredentials, which call STS/SSO on the
first read of a key, never on `.method` ("deferred_fetched" confirms it).
"""

import ipaddress
import json
import socket
import sys

blocked = []


def _loopback(host):
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


_getaddrinfo = socket.getaddrinfo
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host is not None and not _loopback(host.decode() if isinstance(host, bytes) else host):
        blocked.append(f"getaddrinfo {host}")
        raise socket.gaierror(socket.EAI_NONAME, f"non-loopback lookup refused: {host}")
    return _getaddrinfo(host, *args, **kwargs)


def _check(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
        blocked.append(f"connect {address[0]}:{address[1]}")
        raise ConnectionRefusedError(f"non-loopback connection refused: {address[0]}")


def _guarded_connect(self, address):
    _check(self, address)
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    _check(self, address)
    return _connect_ex(self, address)


socket.getaddrinfo = _guarded_getaddrinfo
socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex


def main():
    import botocore
    import botocore.credentials
    import botocore.session

    out = {"botocore": botocore.__version__}
    try:
        creds = botocore.session.get_session().get_credentials()
    except Exception as e:  # the chain raised: the application gets no credentials
        out.update(kind="exception", result=type(e).__name__, message=str(e))
    else:
        if creds is None:
            out.update(kind="none", result="none")
        else:
            out.update(kind="method", result=creds.method, credentials_class=type(creds).__name__)
            if isinstance(creds, botocore.credentials.DeferredRefreshableCredentials):
                # Nothing is fetched (STS, SSO) until a key is read.
                out["deferred_fetched"] = creds._frozen_credentials is not None
    out["blocked"] = blocked
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
