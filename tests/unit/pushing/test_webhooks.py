"""The webhook receiver: decoding, state, metrics, the HTTP answers, flags and the simulator.

Everything here runs in this process in milliseconds, except the tests marked slow: the
simulator pushing in real time, a standalone simulator process and the demo process.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import requests

from exporter.common.eightbyeight import parse_timestamp
from exporter.config.flags import build_parser
from exporter.config.settings import settings_from_flags
from exporter.config.values import ConfigError
from exporter.config.webhooks import webhook_settings
from exporter.polling.model import parse_inventory
from exporter.pushing.events import (
    EventError,
    decode_envelope,
    decode_number_update,
    decode_session_summary,
    pushed_numbers,
)
from exporter.pushing.state import ERROR_CODES, WebhookState
from exporter.simulator import Simulator
from tests.support.callbacks import (
    CALLBACK_AUTH,
    CallbackReceiver,
    apply_event,
    post_callback,
    state_samples,
    vnu,
    vnu_number,
    vss,
)
from tests.support.exporters import InProcessExporter, exporter_process, parse_samples, value
from tests.support.fake_api import number, numbers_body
from tests.support.processes import REPO, find_tool, free_port, running_process, wait_until

# --- decoding ---------------------------------------------------------------------------


def test_documented_examples_decode():
    update = decode_number_update(decode_envelope(json.dumps(vnu()).encode()))
    assert update.sub_account_id == "acme-prod"
    assert next(pushed_numbers(update, 1)).operational_status == "Active"
    summary = decode_session_summary(decode_envelope(json.dumps(vss(error=-2004)).encode()))
    assert summary.error_details.error_code == -2004
    assert summary.details["callA"].virtual_number == "+6531234567"
    assert summary.details["callB"].virtual_number == "+6531234567"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "malformed_json"),
        (b"{", "malformed_json"),
        (b'{"eventType": "X", "payload": ' + b"[" * 100_000, "malformed_json"),
        (b"[]", "invalid_event"),
        (b'{"eventType": 5}', "invalid_event"),
        (b'{"payload": {}}', "invalid_event"),
    ],
)
def test_bad_envelopes_have_a_reason(body, reason):
    with pytest.raises(EventError) as caught:
        decode_envelope(body)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e["payload"].update(subAccountId=7),
        lambda e: e["payload"].update(subAccountId="no spaces allowed"),
        lambda e: e["payload"].update(details=[1, 2]),
        lambda e: e["payload"].pop("sessionId"),
    ],
)
def test_wrong_types_in_a_session_are_invalid(mutate):
    event = vss()
    mutate(event)
    with pytest.raises(EventError) as caught:
        decode_session_summary(decode_envelope(json.dumps(event).encode()))
    assert caught.value.reason == "invalid_event"


def test_timestamps():
    assert parse_timestamp("2023-02-17T05:10:14.760Z") == pytest.approx(1676610614.76)
    assert parse_timestamp("yesterday") is None
    assert parse_timestamp(None) is None


@pytest.mark.parametrize(
    "text",
    [
        "2016-12-31T23:59:60Z",
        "2015-06-30t23:59:60.123z",
        "2021-01-01t00:00:00z",
        "2021-01-01T08:00:00+08:00",
        "2023-02-17T05:10:14.760Z",
        "2021-01-01T00:00:00",
    ],
)
def test_the_poll_and_the_callbacks_read_a_time_alike(text):
    """A leap second and RFC 3339's lower-case t and z, read by both paths: the same time."""
    polled = parse_inventory(json.dumps(numbers_body([number()], lastUpdatedAt=text)).encode())
    state = WebhookState(["acme-prod"])
    apply_event(state, vnu(numbers=[vnu_number("+6531234567", "Active", text)]))
    pushed = value(
        state_samples(state),
        "eightbyeight_number_pushed_status_timestamp_seconds",
        subaccount="acme-prod",
        msisdn="+6531234567",
    )
    assert polled.last_updated is not None
    assert pushed == polled.last_updated


# --- state --------------------------------------------------------------------------------


def test_snapshot_then_updates_and_the_newer_status_wins():
    state = WebhookState(["acme-prod"])
    apply_event(
        state,
        vnu(
            kind="SNAPSHOT",
            numbers=[
                vnu_number("+6531234567", "Active", "2026-01-01T00:00:00Z"),
                vnu_number("+6531234568", "Active", "2026-01-01T00:00:00Z"),
            ],
        ),
    )
    apply_event(
        state, vnu(numbers=[vnu_number("+6531234567", "Unhealthy", "2026-01-01T01:00:00Z")])
    )
    # An older status delivered late does not overwrite the newer one.
    apply_event(state, vnu(numbers=[vnu_number("+6531234567", "Active", "2026-01-01T00:30:00Z")]))
    s = state_samples(state)
    pushed = "eightbyeight_number_pushed_status"
    assert (
        value(
            s, pushed, subaccount="acme-prod", msisdn="+6531234567", operational_status="unhealthy"
        )
        == 1
    )
    assert (
        value(s, pushed, subaccount="acme-prod", msisdn="+6531234567", operational_status="active")
        == 0
    )
    by_status = "eightbyeight_pushed_virtual_numbers_by_status"
    assert value(s, by_status, subaccount="acme-prod", operational_status="unhealthy") == 1
    assert value(s, by_status, subaccount="acme-prod", operational_status="active") == 1
    assert value(s, by_status, subaccount="acme-prod", operational_status="inactive") == 0
    assert value(
        s,
        "eightbyeight_number_pushed_status_timestamp_seconds",
        subaccount="acme-prod",
        msisdn="+6531234567",
    ) == pytest.approx(parse_timestamp("2026-01-01T01:00:00Z"))
    assert (
        value(
            s, "eightbyeight_vnu_events_total", subaccount="acme-prod", update_event_type="updates"
        )
        == 2
    )
    # A new snapshot without a number drops it and its series.
    apply_event(
        state,
        vnu(kind="SNAPSHOT", numbers=[vnu_number("+6531234568", "Active", "2026-01-02T00:00:00Z")]),
    )
    s = state_samples(state)
    assert (
        value(s, pushed, subaccount="acme-prod", msisdn="+6531234567", operational_status="active")
        is None
    )


def test_sessions_legs_quality_and_attribution():
    state = WebhookState(["acme-prod"])
    apply_event(state, vnu(kind="SNAPSHOT"))
    apply_event(state, vss(session="a", mos=4.5))
    apply_event(state, vss(session="b", mos=2.0))
    apply_event(state, vss(session="c", status="ERROR", error=-2004, virtual="+6599999999"))
    s = state_samples(state)
    sessions = "eightbyeight_call_sessions_total"
    assert value(s, sessions, subaccount="acme-prod", country="SG", session_status="completed") == 2
    assert value(s, sessions, subaccount="acme-prod", country="SG", session_status="error") == 1
    assert (
        value(
            s,
            "eightbyeight_call_legs_total",
            subaccount="acme-prod",
            direction="inbound",
            call_status="completed",
        )
        == 3
    )
    assert (
        value(
            s, "eightbyeight_call_session_errors_total", subaccount="acme-prod", error_code="-2004"
        )
        == 1
    )
    assert value(s, "eightbyeight_call_mos_count", subaccount="acme-prod", country="SG") == 6
    assert (
        value(s, "eightbyeight_call_mos_bucket", subaccount="acme-prod", country="SG", le="3.1")
        == 2
    )
    assert value(
        s, "eightbyeight_call_jitter_seconds_sum", subaccount="acme-prod", country="SG"
    ) == pytest.approx(0.117)
    # Per number: only the owned number has series; the unknown +6599999999 adds none.
    per = "eightbyeight_number_call_legs_total"
    # One outcome per session (a and b), not per leg.
    assert value(s, per, subaccount="acme-prod", msisdn="+6531234567", outcome="answered") == 2
    assert value(
        s, "eightbyeight_number_call_mos_sum", subaccount="acme-prod", msisdn="+6531234567"
    ) == pytest.approx(13.0)
    assert not [k for k in s if ("msisdn", "+6599999999") in k[1]]


def test_per_number_switch_off_keeps_only_aggregates():
    state = WebhookState(["acme-prod"], per_number=False)
    apply_event(state, vnu(kind="SNAPSHOT"))
    apply_event(state, vss())
    s = state_samples(state)
    assert not [k for k in s if any(label == "msisdn" for label, _ in k[1])]
    assert (
        value(
            s,
            "eightbyeight_pushed_virtual_numbers_by_status",
            subaccount="acme-prod",
            operational_status="active",
        )
        == 1
    )


def test_error_codes_and_statuses_are_bounded():
    state = WebhookState(["acme-prod"])
    for i in range(70):
        apply_event(state, vss(session=f"s{i}", status=f"WEIRD{i}", error=-2000 - i))
    apply_event(state, vss(session="x", error=12345678901))
    s = state_samples(state)
    codes = {
        dict(k[1])["error_code"] for k in s if k[0] == "eightbyeight_call_session_errors_total"
    }
    assert codes == {str(c) for c in range(-2010, -2000)} | {"other"}
    assert len(ERROR_CODES) == 11
    statuses = {
        dict(k[1])["session_status"] for k in s if k[0] == "eightbyeight_call_sessions_total"
    }
    assert statuses == {"other", "completed"}


def test_without_an_allow_list_subaccounts_are_bounded():
    state = WebhookState(None)
    admitted = [state.admit(f"sub-{i:03d}", None) for i in range(100)]
    assert admitted.count(True) == 64
    assert state.admit("sub-000", None)


def test_exposition_is_valid_for_prometheus(tmp_path):
    state = WebhookState(["acme-prod", 'we"ird\\sub'])
    apply_event(state, vnu(kind="SNAPSHOT"))
    apply_event(state, vss())
    text = state.exposition().decode()
    parse_samples(text)
    path = tmp_path / "metrics.txt"
    path.write_text(text)
    promtool = find_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- HTTP ---------------------------------------------------------------------------------


def outcome(receiver: CallbackReceiver, name: str) -> float:
    return value(state_samples(receiver.state), "eightbyeight_webhook_requests_total", outcome=name)


def test_receiver_answers_as_documented():
    with CallbackReceiver(max_body=64 * 1024) as r:
        assert r.post(vnu(kind="SNAPSHOT")).status_code == 200
        assert r.post(vss()).status_code == 200
        assert r.post(vss()).status_code == 200  # redelivered: counted once
        assert r.post({"eventType": "CALL_STATUS", "payload": {}}).status_code == 200
        assert r.post(b"{not json").status_code == 400
        assert r.post(vss(sub="other-sub")).status_code == 403
        assert (
            r.post({"eventType": "SESSION_SUMMARY", "payload": {"sessionId": 1}}).status_code == 422
        )
        assert r.post(b"x" * (64 * 1024 + 1)).status_code == 413
        assert r.post(vss(), auth=None).status_code == 401
        assert r.post(vss(), auth=CALLBACK_AUTH.lower()).status_code == 401
        assert r.post(vss(), auth=CALLBACK_AUTH[:-1]).status_code == 401
        assert outcome(r, "accepted") == 2
        assert outcome(r, "duplicate") == 1
        assert outcome(r, "unknown_event_type") == 1
        assert outcome(r, "malformed_json") == 1
        assert outcome(r, "subaccount_not_allowed") == 1
        assert outcome(r, "invalid_event") == 1
        assert outcome(r, "body_too_large") == 1
        s = state_samples(r.state)
        assert (
            value(s, "eightbyeight_webhook_events_total", subaccount="acme-prod", event_type="vss")
            == 1
        )
        assert value(
            s,
            "eightbyeight_webhook_last_event_timestamp_seconds",
            subaccount="acme-prod",
            event_type="vnu",
        )


# --- flags --------------------------------------------------------------------------------


def parsed(*argv: str):
    return build_parser().parse_args(["--subaccount", "acme-prod", *argv])


def test_receiver_is_off_by_default():
    args = parsed()
    assert webhook_settings(args, {}, ("acme-prod",), None, True) is None
    settings = settings_from_flags(args, {"EIGHTBYEIGHT_API_KEY": "k"})
    assert settings.webhooks is None
    assert not settings.collector_webhooks


def test_receiver_needs_the_auth_value(tmp_path):
    args = parsed("--webhook.listen-address", "127.0.0.1:0")
    with pytest.raises(ConfigError, match="Authorization value"):
        webhook_settings(args, {}, ("acme-prod",), None, True)
    secret = tmp_path / "auth"
    secret.write_text("Bearer abc def\n")
    args = parsed(
        "--webhook.listen-address", "127.0.0.1:0", "--webhook.auth-header-file", str(secret)
    )
    settings = webhook_settings(args, {}, ("acme-prod",), frozenset({"acme-dev"}), True)
    assert settings.auth_header.reveal() == "Bearer abc def"
    assert settings.allowed == {"acme-prod", "acme-dev"}
    assert "abc" not in repr(settings)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    args = parsed(
        "--webhook.listen-address", "127.0.0.1:0", "--webhook.auth-header-file", str(empty)
    )
    with pytest.raises(ConfigError, match="empty"):
        webhook_settings(args, {}, ("acme-prod",), None, True)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--webhook.listen-address", "nope"], "invalid listen address"),
        (["--webhook.listen-address", ":0", "--webhook.max-body-size", "lots"], "invalid size"),
        (["--webhook.listen-address", ":0", "--webhook.read-timeout", "0s"], "greater than 0"),
        (
            ["--webhook.listen-address", ":0", "--webhook.path", "relative"],
            "invalid --webhook.path",
        ),
    ],
)
def test_bad_flags_are_one_line_errors(flags, message):
    args = parsed(*flags)
    with pytest.raises(ConfigError, match=message):
        webhook_settings(
            args, {"EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER": "x"}, ("acme-prod",), None, True
        )


# --- the simulator pushes -----------------------------------------------------------------


@pytest.mark.slow
def test_simulator_pushes_vnu_and_vss_with_faults():
    # The numbers stand still (the pushes still go out every 0.2 s): on the real clock the victim
    # could turn unhealthy by itself, an outage or the moving unhealthy role, and never recover
    # within the wait. Fixed after every simulated number's creation date, so that the pushed
    # changes are newer than the first snapshot's times.
    frozen = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    with (
        CallbackReceiver(allowed=("acme-prod",)) as r,
        Simulator(subaccounts={"acme-prod": 30}, api_key="k", seed=5, clock=lambda: frozen) as sim,
    ):
        sim.start_push(r.url, CALLBACK_AUTH, interval=0.2)
        wait_until(lambda: outcome(r, "accepted") >= 10, timeout=30, what="pushed events accepted")
        s = state_samples(r.state)
        assert (
            value(
                s,
                "eightbyeight_vnu_events_total",
                subaccount="acme-prod",
                update_event_type="snapshot",
            )
            >= 1
        )
        assert sum(v for k, v in s.items() if k[0] == "eightbyeight_call_sessions_total") >= 5
        victim = sim.snapshot("acme-prod")["numbers"][0]["msisdn"]
        sim.set_push_faults(unhealthy=[victim], duplicate=True)
        wait_until(
            lambda: (
                value(
                    state_samples(r.state),
                    "eightbyeight_number_pushed_status",
                    subaccount="acme-prod",
                    msisdn=victim,
                    operational_status="unhealthy",
                )
                == 1
            ),
            timeout=30,
            what="the victim pushed unhealthy",
        )
        wait_until(lambda: outcome(r, "duplicate") >= 1, timeout=30, what="duplicates")
        sim.set_push_faults(wrong_auth=True)
        before = sim.push_stats().by_status.get("401", 0)
        wait_until(
            lambda: sim.push_stats().by_status.get("401", 0) > before, timeout=30, what="401s"
        )
        sim.set_push_faults(malformed=True)
        wait_until(lambda: outcome(r, "malformed_json") >= 1, timeout=30, what="malformed")
        sim.set_push_faults()
        wait_until(
            lambda: (
                value(
                    state_samples(r.state),
                    "eightbyeight_number_pushed_status",
                    subaccount="acme-prod",
                    msisdn=victim,
                    operational_status="unhealthy",
                )
                == 0
            ),
            timeout=30,
            what="the victim recovered",
        )


def test_simulated_sessions_are_deterministic_from_the_seed():
    from exporter.simulator.push import PushFaults, PushSender

    def sessions(seed):
        numbers = [{"msisdn": "+6531234567", "countryCode": "SG", "operationalStatus": "Active"}]
        sender = PushSender(
            ["acme-prod"], lambda s: {}, "http://127.0.0.1:9/", "x", seed=seed, clock=lambda: 1.7e9
        )
        return [sender._session("acme-prod", numbers, PushFaults()) for _ in range(30)]

    assert sessions(1) == sessions(1)
    assert sessions(1) != sessions(2)
    statuses = {s["payload"]["sessionStatus"] for s in sessions(1)}
    assert "ERROR" in statuses
    assert "COMPLETED" in statuses


@pytest.mark.slow
def test_standalone_simulator_pushes_to_a_url(tmp_path):
    import sys

    with CallbackReceiver() as r:
        auth = tmp_path / "auth"
        auth.write_text(CALLBACK_AUTH + "\n")
        port = free_port()
        argv = [
            sys.executable, "-m", "exporter.simulator",
            "--web.listen-address", f"127.0.0.1:{port}",
            "--subaccount", "acme-prod=20",
            "--api-key", "k",
            "--push.url", r.url,
            "--push.auth-header-file", str(auth),
            "--push.interval", "0.2",
        ]  # fmt: skip
        ready = f"http://127.0.0.1:{port}/admin/healthy"
        with running_process(argv, ready, cwd=REPO, log_path=tmp_path / "sim.log"):
            wait_until(lambda: outcome(r, "accepted") >= 3, timeout=30, what="callbacks")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--push.url", "ftp://x"], "is not an http"),
        (["--push.url", "http://127.0.0.1:1/x"], "needs the Authorization value"),
        (["--push.url", "http://127.0.0.1:1/x", "--push.interval", "0"], "between"),
    ],
)
def test_simulator_push_flags_are_checked(flags, message, monkeypatch):
    from exporter.simulator.cli import UsageError, parse_settings

    monkeypatch.delenv("EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER", raising=False)
    with pytest.raises(UsageError, match=message):
        parse_settings(["--api-key", "k", *flags], "sim")


# --- --collector.webhooks -----------------------------------------------------------------


class _FakeClient:
    def __init__(self, answer):
        self.answer = answer

    def fetch_webhooks(self, subaccount, timeout=None):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def config_samples(collector):
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(collector)
    return parse_samples(generate_latest(registry).decode())


def test_webhook_list_becomes_gauges_and_failures_keep_the_last():
    from exporter.common.errors import FetchError
    from exporter.polling.configured import WebhookConfigCollector

    collector = WebhookConfigCollector()
    listed = {
        "subAccountId": "acme-prod",
        "count": 3,
        "webhooks": [
            {"type": "VNU", "url": "https://x/h", "enabled": True, "httpAuthHeaderAvailable": True},
            {
                "type": "VSS",
                "url": "https://x/h",
                "enabled": False,
                "httpAuthHeaderAvailable": True,
            },
            {
                "type": "VCA",
                "url": "https://x/h",
                "enabled": True,
                "httpAuthHeaderAvailable": False,
            },
        ],
        "statusCode": 0,
        "statusMessage": "ok",
    }
    # What a scraper's after_fetch hook starts: a read in the background, on its own budget.
    collector.start_read(_FakeClient(json.dumps(listed).encode()), "acme-prod").join(30)
    s = config_samples(collector)
    assert value(s, "eightbyeight_webhook_config_up", subaccount="acme-prod") == 1
    assert value(s, "eightbyeight_webhook_enabled", subaccount="acme-prod", event_type="vnu") == 1
    assert value(s, "eightbyeight_webhook_enabled", subaccount="acme-prod", event_type="vss") == 0
    assert (
        value(s, "eightbyeight_webhook_auth_header_set", subaccount="acme-prod", event_type="vss")
        == 1
    )
    assert (
        value(s, "eightbyeight_webhook_configured", subaccount="acme-prod", event_type="vca")
        is None
    )
    for failure in (FetchError("timeout", "slow"), b"{not json", b'{"webhooks": 5}'):
        collector.read(_FakeClient(failure), "acme-prod", 1.0)
        s = config_samples(collector)
        assert value(s, "eightbyeight_webhook_config_up", subaccount="acme-prod") == 0
        assert (
            value(s, "eightbyeight_webhook_enabled", subaccount="acme-prod", event_type="vnu") == 1
        )


def test_the_api_client_reads_the_webhook_list():
    from exporter.config.values import Secret
    from exporter.polling.client import ApiClient
    from exporter.polling.configured import WebhooksClient

    hooks = [{"type": "VNU", "url": "https://h/x", "enabled": True}]
    with Simulator(subaccounts={"acme-prod": 5}, api_key="k", seed=1) as sim:
        sim.set_webhooks("acme-prod", hooks)
        client = ApiClient(sim.base_url, Secret("k"))
        assert isinstance(client, WebhooksClient)
        listed = json.loads(client.fetch_webhooks("acme-prod", 5.0))
    assert listed["webhooks"] == hooks


def test_only_configured_subaccounts_read_their_webhook_list():
    from exporter.app import build_app

    clients = {}

    def new_client(subaccount):
        clients[subaccount] = client = _FakeClient(b'{"webhooks": []}')
        client.fetch_numbers = lambda sub, timeout=None: json.dumps({"numbers": []}).encode()
        return client

    args = build_parser().parse_args(["--subaccount", "acme-prod", "--collector.webhooks"])
    settings = settings_from_flags(args, {"EIGHTBYEIGHT_API_KEY": "k"})
    assert settings.collector_webhooks
    app = build_app(settings, new_client)
    assert app.scrapers.configured[0].after_fetch is not None
    assert app.scrapers.for_probe("acme-dev").after_fetch is None
    assert set(clients) == {"acme-prod", "acme-dev"}
    plain = build_app(settings_from_flags(build_parser().parse_args(["--subaccount", "acme-prod"]),
                                          {"EIGHTBYEIGHT_API_KEY": "k"}), new_client)  # fmt: skip
    assert plain.scrapers.configured[0].after_fetch is None


def test_collector_webhooks_flag_exports_the_registration():
    with Simulator(subaccounts={"acme-prod": 20, "acme-dev": 20}, api_key="k", seed=1) as sim:
        sim.set_webhooks(
            "acme-prod",
            [
                {
                    "type": "VSS",
                    "url": "https://h/x",
                    "enabled": True,
                    "httpAuthHeaderAvailable": True,
                }
            ],
        )
        argv = ["--api.base-url", sim.base_url, "--subaccount", "acme-prod", "--subaccount",
                "acme-dev", "--collector.webhooks"]  # fmt: skip
        with InProcessExporter(argv) as exporter:
            # The lists are read beside the first scrape: they show from a later one on.
            s = wait_until(
                lambda: (
                    (s := parse_samples(exporter.get().text))
                    and value(s, "eightbyeight_webhook_config_up", subaccount="acme-dev")
                    and value(s, "eightbyeight_webhook_config_up", subaccount="acme-prod")
                    and s
                ),
                timeout=30,
                what="the webhook lists read",
            )
    assert value(s, "eightbyeight_up", subaccount="acme-prod") == 1
    assert value(s, "eightbyeight_webhook_enabled", subaccount="acme-prod", event_type="vss") == 1
    assert (
        value(s, "eightbyeight_webhook_configured", subaccount="acme-prod", event_type="vnu") == 0
    )
    assert value(s, "eightbyeight_webhook_configured", subaccount="acme-dev", event_type="vss") == 0
    assert value(s, "eightbyeight_webhook_config_up", subaccount="acme-dev") == 1


# --- the receiver as part of the exporter -------------------------------------------------


def test_settings_carry_the_receiver_and_its_secret():
    args = build_parser().parse_args(
        ["--subaccount", "acme-prod", "--probe.allowed-subaccounts", "acme-dev",
         "--webhook.listen-address", "127.0.0.1:0", "--no-collector.per-number"]
    )  # fmt: skip
    env = {"EIGHTBYEIGHT_API_KEY": "k", "EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER": CALLBACK_AUTH}
    settings = settings_from_flags(args, env)
    assert settings.webhooks is not None
    assert settings.webhooks.allowed == {"acme-prod", "acme-dev"}
    assert not settings.webhooks.per_number
    assert settings.webhooks.web_tls
    # Every secret is redacted from the logs: the API key and the Authorization value.
    assert {s.reveal() for s in settings.secrets} == {"k", CALLBACK_AUTH}
    assert CALLBACK_AUTH not in repr(settings)


def test_config_check_reports_a_bad_receiver_flag(monkeypatch, capsys):
    from exporter.cli.main import main

    monkeypatch.setenv("EIGHTBYEIGHT_API_KEY", "k")
    monkeypatch.delenv("EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER", raising=False)
    monkeypatch.delenv("EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER_FILE", raising=False)
    code = main(["--subaccount", "acme-prod", "--webhook.listen-address", ":0", "--config.check"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "needs the Authorization value" in err


def test_callbacks_reach_the_exporters_metrics():
    env = {"EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER": CALLBACK_AUTH}
    with Simulator(subaccounts={"acme-prod": 5}, api_key="k", seed=1) as sim:
        argv = ["--api.base-url", sim.base_url, "--subaccount", "acme-prod",
                "--webhook.listen-address", "127.0.0.1:0"]  # fmt: skip
        with InProcessExporter(argv, env=env) as exporter:
            assert exporter.callback_url.endswith("/webhooks/8x8")
            assert post_callback(exporter.callback_url, vss()).status_code == 200
            assert post_callback(exporter.callback_url, vss(sub="other")).status_code == 403
            assert post_callback(exporter.callback_url, vss(), auth="Bearer x").status_code == 401
            # The callback listener serves nothing else; /metrics serves no callbacks.
            assert (
                requests.get(exporter.callback_url.rsplit("/", 2)[0] + "/metrics").status_code
                == 404
            )
            assert post_callback(exporter.url + "/webhooks/8x8", vss()).status_code == 405
            s = parse_samples(exporter.get().text)
    assert value(s, "eightbyeight_up", subaccount="acme-prod") == 1
    assert value(s, "eightbyeight_webhook_requests_total", outcome="accepted") == 1
    assert value(s, "eightbyeight_webhook_requests_total", outcome="subaccount_not_allowed") == 1
    assert value(s, "eightbyeight_call_sessions_total", subaccount="acme-prod", country="SG",
                 session_status="completed") == 1  # fmt: skip


def test_a_taken_callback_address_is_a_config_error():
    from exporter.app import build_exporter

    with CallbackReceiver() as taken:
        port = taken.server.server_address[1]
        args = build_parser().parse_args(
            ["--subaccount", "acme-prod", "--web.listen-address", "127.0.0.1:0",
             "--webhook.listen-address", f"127.0.0.1:{port}"]
        )  # fmt: skip
        env = {"EIGHTBYEIGHT_API_KEY": "k", "EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER": CALLBACK_AUTH}
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            build_exporter(settings_from_flags(args, env))


@pytest.mark.slow
def test_demo_metrics_with_callbacks_are_valid_exposition(tmp_path):
    promtool = find_tool("promtool")
    with exporter_process(["--demo"], {}, tmp_path / "log") as (url, _):

        def with_calls():
            text = requests.get(url + "/metrics", timeout=10).text
            return text if "eightbyeight_number_call_mos_count{" in text else None

        text = wait_until(with_calls, timeout=30, what="pushed calls on /metrics")
    s = parse_samples(text)
    assert value(s, "eightbyeight_up", subaccount="demo-apac") == 1
    assert value(s, "eightbyeight_webhook_requests_total", outcome="accepted") > 0
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    log = (tmp_path / "log").read_text()
    assert "receiving 8x8 callbacks" in log
    assert "tls=off" in log
