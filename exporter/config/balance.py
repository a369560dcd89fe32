"""The prepaid balance read's flags (`--balance.*`, in the flag table), validated into
`BalanceSettings`.

Off unless an account ID is given: the balance belongs to the 8x8 account (a UUID), not to a
subaccount, and only prepaid accounts have one (others answer 403, code 1201).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from exporter.config.flags import MIN_BALANCE_INTERVAL, checked, default
from exporter.config.values import ConfigError, quote_value

__all__ = ["MIN_BALANCE_INTERVAL", "BalanceSettings", "balance_settings"]

DEFAULT_BALANCE_TIMEOUT = 10.0
# The account's UUID: 32 hex digits, with or without the four dashes.
ACCOUNT_ID = re.compile(
    r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})$"
)


@dataclass(frozen=True)
class BalanceSettings:
    """The balance read's settings: `Settings.balance`, None while it is off."""

    account_id: str
    base_url: str = default("balance_base_url")
    interval: float = default("balance_interval")
    timeout: float = DEFAULT_BALANCE_TIMEOUT


def balance_settings(args: argparse.Namespace) -> BalanceSettings | None:
    """Settings of the balance read, or None when --balance.account-id is not given."""
    account = getattr(args, "balance_account_id", None)
    if account is None:
        return None
    account = account.strip()
    if not ACCOUNT_ID.match(account):
        raise ConfigError(
            f"invalid --balance.account-id {quote_value(account)}: expected the account's UUID"
        )
    return BalanceSettings(
        account_id=account,
        base_url=checked(args, "balance_base_url"),
        interval=checked(args, "balance_interval"),
    )
