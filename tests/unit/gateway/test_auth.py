"""API keys from a key file: who calls, for which account, with which role."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway.auth import ApiKeys, KeyFileError, Principal, Role
from ordermesh.model import AccountId, OrdermeshError, RejectReason

TRADER_KEY = "trader-key-0123456789"
ADMIN_KEY = "admin-key-0123456789ab"
KEYS = f"""
[[keys]]
name = "alice"
key = "{TRADER_KEY}"
account_id = 11
role = "trader"

[[keys]]
key_sha256 = "{hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}"
role = "admin"
"""


@pytest.fixture
def keys() -> ApiKeys:
    return ApiKeys.parse(KEYS)


def _refused(keys: ApiKeys, metadata) -> OrdermeshError:
    with pytest.raises(OrdermeshError) as raised:
        keys.authenticate(metadata)
    return raised.value


def test_a_key_in_x_api_key_or_authorization(keys: ApiKeys) -> None:
    alice = keys.authenticate([("x-api-key", TRADER_KEY)])
    assert alice == Principal("alice", Role.TRADER, AccountId(11))
    assert keys.authenticate([("authorization", f"ApiKey {TRADER_KEY}")]) == alice
    assert keys.authenticate([("authorization", f"apikey  {TRADER_KEY} ")]) == alice
    admin = keys.authenticate([("user-agent", "x"), ("x-api-key", ADMIN_KEY)])
    assert (admin.role, admin.account_id) == (Role.ADMIN, None)
    assert admin.name.startswith("key-")


@pytest.mark.parametrize(
    "metadata",
    [
        [],
        [("x-api-key", "")],
        [("x-api-key", "not-a-key-of-ours-at-all")],
        [("x-api-key", TRADER_KEY + "x")],
        [("x-api-key", TRADER_KEY[:-1])],
        [("authorization", TRADER_KEY)],
        [("authorization", f"Basic {TRADER_KEY}")],
        [("authorization", "Bearer eyJhbGciOi.x.y")],
        [("x-api-key-bin", TRADER_KEY.encode())],
        [("x-api-key", "k" * 10_000)],
    ],
)
def test_missing_or_unknown_keys_are_unauthenticated(keys: ApiKeys, metadata) -> None:
    refusal = _refused(keys, metadata)
    assert refusal.reason is RejectReason.UNAUTHENTICATED
    assert TRADER_KEY not in refusal.message


def test_roles_and_accounts(keys: ApiKeys) -> None:
    alice = keys.authenticate([("x-api-key", TRADER_KEY)])
    assert alice.trading_account() == 11
    with pytest.raises(OrdermeshError) as raised:
        alice.require_admin("Deposit")
    assert raised.value.reason is RejectReason.PERMISSION_DENIED
    admin = keys.authenticate([("x-api-key", ADMIN_KEY)])
    admin.require_admin("Deposit")
    with pytest.raises(OrdermeshError) as raised:
        admin.trading_account()
    assert raised.value.reason is RejectReason.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "at least one [[keys]]"),
        ("keys = 1", "at least one [[keys]]"),
        ("[[users]]\nname='x'", "unknown table"),
        ("[[keys]]\nrole='trader'\naccount_id=1", "exactly one of key and key_sha256"),
        (f"[[keys]]\nkey='{TRADER_KEY}'\nkey_sha256='{'0' * 64}'\nrole='admin'", "exactly one"),
        ("[[keys]]\nkey='short'\nrole='admin'", "16 to 256 characters"),
        ("[[keys]]\nkey_sha256='abc'\nrole='admin'", "64 hex digits"),
        (f"[[keys]]\nkey='{TRADER_KEY}'\nrole='root'", "role must be trader or admin"),
        (f"[[keys]]\nkey='{TRADER_KEY}'\nrole='trader'", "needs an account_id"),
        (f"[[keys]]\nkey='{TRADER_KEY}'\nrole='trader'\naccount_id=0", "0 is the fee account"),
        (f"[[keys]]\nkey='{TRADER_KEY}'\nrole='trader'\naccount_id='1'", "must be an integer"),
        (f"[[keys]]\nkey='{TRADER_KEY}'\nrole='admin'\nsecret=1", "unknown key 'secret'"),
        (
            f"[[keys]]\nkey='{TRADER_KEY}'\nrole='admin'\n[[keys]]\nkey='{TRADER_KEY}'\n"
            "role='admin'",
            "listed twice",
        ),
        ("[[keys]\n", "not valid TOML"),
    ],
)
def test_bad_key_files_are_refused_with_the_rule(text: str, complaint: str) -> None:
    with pytest.raises(KeyFileError, match="keys") as raised:
        ApiKeys.parse(text, origin="keys.toml")
    assert complaint in str(raised.value)


def test_load_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read the API key file"):
        ApiKeys.load(tmp_path / "none.toml")
    path = tmp_path / "keys.toml"
    path.write_text(KEYS, encoding="utf-8")
    assert len(ApiKeys.load(path)) == 2
