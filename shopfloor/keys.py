"""API keys: generate, hash and match. Keys are stored as SHA-256 hashes, never in clear."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import secrets
from typing import Any

import yaml

from shopfloor.config import ApiKey, Role

KEY_PREFIX = "sfk_"


def new_key() -> str:
    """Return a fresh random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """Return the SHA-256 hex digest under which a key is stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def find_key(keys: list[ApiKey], presented: str) -> ApiKey | None:
    """Return the stored key matching a presented key, comparing hashes in constant time."""
    digest = hash_key(presented)
    found = None
    for key in keys:
        if hmac.compare_digest(key.sha256, digest):
            found = key
    return found


def _keygen(args: argparse.Namespace) -> int:
    key = new_key()
    entry: dict[str, Any] = {"name": args.name, "sha256": hash_key(key), "role": args.role}
    if args.tenant:
        entry["tenant"] = args.tenant
    ApiKey.model_validate(entry)
    print(f"API key (shown once, give it to its user): {key}")
    print("Add this entry under api_keys: in the site file:")
    print(yaml.safe_dump([entry], sort_keys=False).rstrip())
    return 0


def add_parser(sub: Any) -> None:
    """Register `shopfloor keygen`."""
    p = sub.add_parser("keygen", help="make a new API key and print its site-file entry")
    p.add_argument("--name", required=True, help="a name for the key, e.g. acme-portal")
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p.add_argument("--tenant", help="tenant id (tenant keys only)")
    p.set_defaults(func=_keygen)
