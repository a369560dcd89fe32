"""Flags of the prepaid balance read (`--balance.*`), validated into `BalanceSettings`.

Off unless an account ID is given: the balance belongs to the 8x8 account (a UUID), not to a
subaccount, and only prepaid accounts have one (others answer 403, code 1201).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from exporter.config.values import ConfigError, parse_duration, quote_value, validate_base_url

DEFAULT_BALANCE_BASE_URL = "https://sms.8x8.com"
DEFAULT_BALANCE_INTERVAL = 300.0
MIN_BALANCE_INTERVAL = 60.0
DEFAULT_BALANCE_TIMEOUT = 10.0
# The account's UUID: 32 hex digits, with or without the four dashes.
ACCOUNT_ID = re.compile(
    r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})$"
)


@dataclass(frozen=True)
class BalanceSettings:
    """The balance read's settings: `Settings.balance`, None while it is off."""

    account_id: str
    base_url: str = DEFAULT_BALANCE_BASE_URL
    interval: float = DEFAULT_BALANCE_INTERVAL
    timeout: float = DEFAULT_BALANCE_TIMEOUT


def add_balance_flags(parser: argparse.ArgumentParser) -> None:
    """The balance read's flags; off until --balance.account-id is given."""
    parser.add_argument(
        "--balance.account-id",
        dest="balance_account_id",
        default=None,
        help="8x8 account ID (UUID) whose prepaid balance to export; off by default",
    )
    parser.add_argument(
        "--balance.base-url",
        dest="balance_base_url",
        default=DEFAULT_BALANCE_BASE_URL,
        help=f"base URL of the balance API (default {DEFAULT_BALANCE_BASE_URL}; regional: "
        "https://sms.us.8x8.com, https://sms.8x8.uk, https://sms.8x8.id)",
    )
    parser.add_argument(
        "--balance.interval",
        dest="balance_interval",
        default="5m",
        help="read the balance at most this often, whatever the scrape interval (default 5m, "
        "at least 1m)",
    )


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
    interval = parse_duration(args.balance_interval, "--balance.interval")
    if interval < MIN_BALANCE_INTERVAL:
        raise ConfigError("--balance.interval must be at least 1m")
    return BalanceSettings(
        account_id=account,
        base_url=validate_base_url(args.balance_base_url),
        interval=interval,
    )
