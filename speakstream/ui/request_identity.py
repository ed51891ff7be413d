"""Who sent a request: the client's address (for the rate limit), and whether its page runs on
this machine (its browser shares our cores)."""

from __future__ import annotations

import ipaddress
import urllib.parse

import gradio as gr


def client_address(request: gr.Request | None, proxy_hops: int = 0) -> str:
    """Who sent a message, for the rate limit: a network address.

    Behind ``proxy_hops`` proxies that each add the address they saw to X-Forwarded-For, it is
    the address the outermost of them saw: the entries further left came from the client,
    who can write anything there. Otherwise the connection's own address.
    """
    headers = getattr(request, "headers", None)
    if proxy_hops > 0 and headers is not None:
        forwarded = [
            address.strip()
            for value in headers.getlist("x-forwarded-for")
            for address in value.split(",")
            if address.strip()
        ]
        if forwarded:
            return forwarded[-min(proxy_hops, len(forwarded))]
    client = getattr(request, "client", None)
    return str(getattr(client, "host", None) or "local")


def page_on_this_machine(request: gr.Request | None, proxy_hops: int = 0) -> bool:
    """Whether the page that sent a message runs on this machine (the local link), so that its
    browser renders the reply on the cores the model uses.

    Both ends must be loopback: the connection, and the address the page was opened at (the
    Host header). A share link's tunnel connects from this machine too, but its pages were
    opened at their public name; behind a proxy (``proxy_hops``) the connection is the proxy's.
    """
    client = getattr(getattr(request, "client", None), "host", None)
    headers = getattr(request, "headers", None)
    if proxy_hops > 0 or not client or headers is None or not _is_loopback(client):
        return False
    try:
        opened_at = urllib.parse.urlsplit("//" + (headers.get("host") or "")).hostname or ""
    except ValueError:  # a malformed Host header
        return False
    return opened_at == "localhost" or _is_loopback(opened_at)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
