"""Reload without restart: SIGHUP and POST /-/reload re-read the config, key and web config files.

Most tests reload the real exporter in this process through `POST /-/reload`; the slow ones send
SIGHUP to a real process and rotate the key under it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import NameOID

from exporter.common.logs import LogfmtFormatter, RedactSecrets
from exporter.polling.exposition import SubaccountScrape
from tests.support.callbacks import vnu, vss
from tests.support.exporters import (
    FakeClock,
    InProcessExporter,
    exporter_process,
    parse_samples,
    self_signed_certificate,
    value,
)
from tests.support.fake_api import FakeApi, Reply, number, numbers_body
from tests.support.pki import basic_authorization, bcrypt_hash
from tests.support.processes import wait_until

DEFAULT_KEY = "default-key-0000aaaa"
OLD_KEY = "prod-key-1111bbbb"
NEW_KEY = "prod-key-2222cccc"
GOOD = Reply.json(numbers_body([number()]))


def write_config(tmp_path: Path, *subaccounts: str, key_file: Path | None = None) -> Path:
    """A config file: the first subaccount with its own key file (if given), the others not."""
    lines = ["subaccounts:"]
    for index, sub in enumerate(subaccounts):
        lines.append(f"  - id: {sub}")
        if index == 0 and key_file is not None:
            lines.append(f"    api_key_file: {key_file}")
    path = tmp_path / "exporter.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def bearer_by_subaccount(api: FakeApi) -> list[tuple[str, str]]:
    return [
        (path.split("/")[4], headers["Authorization"].removeprefix("Bearer "))
        for path, headers in api.requests
    ]


def reload(url: str, **kwargs: object) -> requests.Response:
    return requests.post(url + "/-/reload", timeout=30, **kwargs)


def self_metric(exp: InProcessExporter, name: str) -> float | None:
    return value(parse_samples(exp.get().text), name)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "prod.key"
    path.write_text(OLD_KEY + "\n")
    return path


def test_rotated_key_file_is_used_after_reload_and_unchanged_caches_stay(tmp_path, key_file):
    config = write_config(tmp_path, "acme-prod", "acme-dev", key_file=key_file)
    flags = ["--config.file", str(config), "--api.base-url", "", "--cache.ttl", "1h"]
    with FakeApi(GOOD) as api:
        flags[3] = api.base_url
        with InProcessExporter(flags, api_key=DEFAULT_KEY) as exp:
            assert exp.get().status_code == 200
            assert sorted(bearer_by_subaccount(api)) == [
                ("acme-dev", DEFAULT_KEY),
                ("acme-prod", OLD_KEY),
            ]
            key_file.write_text(NEW_KEY + "\n")
            answer = reload(exp.url)
            assert (answer.status_code, answer.text) == (200, "OK\n")
            samples = parse_samples(exp.get().text)
            # acme-prod's key changed: new client, cache dropped. acme-dev: still cached.
            assert bearer_by_subaccount(api)[2:] == [("acme-prod", NEW_KEY)]
            assert value(samples, "eightbyeight_up", subaccount="acme-prod") == 1
            assert value(samples, "eightbyeight_up", subaccount="acme-dev") == 1
            assert value(samples, "eightbyeight_config_last_reload_successful") == 1
            # The self-metrics carry on over the reload.
            assert value(samples, "eightbyeight_api_requests_total", subaccount="acme-dev") == 1


def test_reload_adds_and_removes_subaccounts(tmp_path, key_file):
    config = write_config(tmp_path, "acme-prod", key_file=key_file)
    with FakeApi(GOOD) as api:
        flags = ["--config.file", str(config), "--api.base-url", api.base_url]
        with InProcessExporter(flags, api_key=DEFAULT_KEY) as exp:
            write_config(tmp_path, "acme-dev", "acme-lab")
            assert reload(exp.url).status_code == 200
            samples = parse_samples(exp.get().text)
            ups = {
                dict(labels)["subaccount"] for name, labels in samples if name == "eightbyeight_up"
            }
            assert ups == {"acme-dev", "acme-lab"}
            assert {sub for sub, _ in bearer_by_subaccount(api)} == {"acme-dev", "acme-lab"}


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        (lambda config, key: config.write_text("subaccounts: [{id: 'no way'}]\n"), "no way"),
        (lambda config, key: config.write_text("subaccounts: [\n"), "not valid YAML"),
        (lambda config, key: key.write_text(""), "is empty"),
        (lambda config, key: key.unlink(), "does not exist"),
    ],
    ids=["bad-id", "bad-yaml", "empty-key", "missing-key"],
)
def test_failed_reload_keeps_the_running_configuration(
    tmp_path, key_file, caplog, breakage, reason
):
    config = write_config(tmp_path, "acme-prod", key_file=key_file)
    with FakeApi(GOOD) as api:
        flags = ["--config.file", str(config), "--api.base-url", api.base_url]
        with InProcessExporter(flags, api_key=DEFAULT_KEY) as exp:
            loaded_at = self_metric(
                exp, "eightbyeight_config_last_reload_success_timestamp_seconds"
            )
            assert loaded_at is not None
            assert loaded_at > time.time() - 60
            breakage(config, key_file)
            with caplog.at_level(logging.INFO, logger="exporter"):
                answer = reload(exp.url)
            assert answer.status_code == 500
            assert answer.text.startswith("failed to reload config: ")
            assert reason in answer.text
            assert len(answer.text.splitlines()) == 1
            failures = [r for r in caplog.records if "reload" in r.getMessage()]
            assert len(failures) == 1, failures
            assert reason in failures[0].fields["err"]
            samples = parse_samples(exp.get().text)
            assert value(samples, "eightbyeight_config_last_reload_successful") == 0
            stamp = "eightbyeight_config_last_reload_success_timestamp_seconds"
            assert value(samples, stamp) == loaded_at
            assert value(samples, "eightbyeight_up", subaccount="acme-prod") == 1
            assert bearer_by_subaccount(api)[-1] == ("acme-prod", OLD_KEY)
            # Fixed again: the next reload succeeds.
            write_config(tmp_path, "acme-prod", key_file=key_file)
            key_file.write_text(NEW_KEY)
            assert reload(exp.url).status_code == 200
            assert self_metric(exp, "eightbyeight_config_last_reload_successful") == 1


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
def test_reload_takes_only_post(method):
    with FakeApi(GOOD) as api, InProcessExporter(["--api.base-url", api.base_url]) as exp:
        answer = requests.request(method, exp.url + "/-/reload", timeout=30)
        assert answer.status_code == 405
        assert answer.headers["Allow"] == "POST"


def test_in_flight_scrapes_finish_and_single_flight_survives_a_reload(tmp_path, key_file):
    """A scrape waiting on the API during a reload gets its answer; a scrape of an unchanged
    subaccount started after the reload joins the fetch already under way."""
    release = threading.Event()

    def slow(path: str, headers: dict[str, str]) -> Reply:
        release.wait(30)
        return GOOD

    config = write_config(tmp_path, "acme-prod", "acme-dev", key_file=key_file)
    clock = FakeClock()
    with FakeApi(slow) as api:
        flags = ["--config.file", str(config), "--api.base-url", api.base_url]
        with (
            InProcessExporter(flags, api_key=DEFAULT_KEY, clock=clock) as exp,
            ThreadPoolExecutor(1) as pool,
        ):
            before = pool.submit(exp.get, "/metrics")
            wait_until(lambda: api.count == 2, timeout=10, what="both fetches under way")
            key_file.write_text(NEW_KEY)  # acme-prod changes, acme-dev does not
            assert reload(exp.url).status_code == 200
            after: list[SubaccountScrape] = []
            joiner = threading.Thread(
                target=lambda: after.append(exp.app.scrapers.for_probe("acme-dev").scrape(30))
            )
            joiner.start()
            # Two clock reads: the scrape has started and waits (on the shared fetch, or on
            # a fetch of its own, which the request count below would show).
            wait_until(lambda: clock.reads_by(joiner) >= 2, timeout=10)
            release.set()
            joiner.join(30)
            answer = before.result(30)
            assert answer.status_code == 200
            samples = parse_samples(answer.text)
            assert value(samples, "eightbyeight_up", subaccount="acme-prod") == 1
            assert value(samples, "eightbyeight_up", subaccount="acme-dev") == 1
            assert after[0].up
            # acme-dev was fetched once, for both scrapes.
            assert sorted(sub for sub, _ in bearer_by_subaccount(api)) == ["acme-dev", "acme-prod"]
            # And the next scrape of acme-prod uses the new key.
            assert exp.get().status_code == 200
            assert ("acme-prod", NEW_KEY) in bearer_by_subaccount(api)


def test_probed_subaccounts_keep_their_cache_unless_the_default_key_changes(tmp_path):
    default_key = tmp_path / "default.key"
    default_key.write_text(OLD_KEY)
    with FakeApi(GOOD) as api:
        flags = ["--api.base-url", api.base_url, "--api.key-file", str(default_key)]
        with InProcessExporter([*flags, "--cache.ttl", "1h"]) as exp:
            assert exp.get("/probe?target=acme-ops").status_code == 200
            assert reload(exp.url).status_code == 200
            assert exp.get("/probe?target=acme-ops").status_code == 200
            assert api.count == 1  # unchanged: cache kept
            default_key.write_text(NEW_KEY)
            assert reload(exp.url).status_code == 200
            assert exp.get("/probe?target=acme-ops").status_code == 200
            assert bearer_by_subaccount(api) == [("acme-ops", OLD_KEY), ("acme-ops", NEW_KEY)]


def test_redaction_learns_new_keys_and_keeps_the_old_ones():
    redact = RedactSecrets([OLD_KEY])
    redact.learn([NEW_KEY, "prod-key-2222cccc-longer"])
    record = logging.LogRecord("exporter", logging.WARNING, __file__, 1, "x", None, None)
    record.msg = f"{OLD_KEY} {NEW_KEY} prod-key-2222cccc-longer"
    record.fields = {"detail": f"Bearer {NEW_KEY}"}
    assert redact.filter(record)
    line = LogfmtFormatter().format(record)
    assert OLD_KEY not in line
    assert NEW_KEY not in line
    assert "longer" not in line
    assert line.count("<redacted>") == 4


# --- The web config ---------------------------------------------------------------------------


def test_basic_auth_users_change_on_reload_and_reload_needs_them(tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prom: '{bcrypt_hash('old-secret')}'\n")
    with FakeApi(GOOD) as api:
        flags = ["--api.base-url", api.base_url, "--web.config.file", str(web)]
        with InProcessExporter(flags) as exp:
            assert reload(exp.url).status_code == 401
            old = {"Authorization": basic_authorization("prom:old-secret")}
            new = {"Authorization": basic_authorization("prom:new-secret")}
            web.write_text(f"basic_auth_users:\n  prom: '{bcrypt_hash('new-secret')}'\n")
            assert reload(exp.url, headers=old).status_code == 200
            assert exp.get(headers=old).status_code == 401
            assert exp.get(headers=new).status_code == 200
            assert reload(exp.url, headers=old).status_code == 401


def served_certificate_name(port: int) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def tls_config(cert: Path, key: Path) -> str:
    return f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"


def test_tls_certificate_changes_on_reload_but_tls_cannot_be_switched_off(tmp_path):
    first, second = (
        self_signed_certificate(tmp_path, "first"),
        self_signed_certificate(tmp_path, "second"),
    )
    web = tmp_path / "web.yml"
    web.write_text(tls_config(*first))
    with FakeApi(GOOD) as api:
        flags = ["--api.base-url", api.base_url, "--web.config.file", str(web)]
        with InProcessExporter(flags) as exp:
            port = exp.server.server_address[1]
            url = f"https://127.0.0.1:{port}"
            assert served_certificate_name(port) == "first"
            web.write_text(tls_config(*second))
            assert reload(url, verify=first[0]).status_code == 200
            assert served_certificate_name(port) == "second"
            # A certificate with the wrong key: refused, the running certificate stays.
            web.write_text(tls_config(second[0], first[1]))
            answer = reload(url, verify=second[0])
            assert answer.status_code == 500
            assert "cannot use cert_file" in answer.text
            web.write_text("")
            answer = reload(url, verify=second[0])
            assert answer.status_code == 500
            assert "needs a restart" in answer.text
            assert served_certificate_name(port) == "second"
            assert requests.get(url + "/metrics", verify=second[0], timeout=30).status_code == 200


# --- SIGHUP to a real process -----------------------------------------------------------------


@pytest.mark.slow
def test_sighup_rotates_the_key_and_both_keys_stay_redacted(tmp_path, key_file):
    def echo_key(path: str, headers: dict[str, str]) -> Reply:
        # An upstream that echoes the credentials it was given back in its error message.
        message = f"token {headers['Authorization']} rejected"
        return Reply.json({"statusCode": 401, "statusMessage": message}, status=401)

    config = write_config(tmp_path, "acme-prod", key_file=key_file)
    log = tmp_path / "exporter.log"
    with FakeApi(echo_key) as api:
        argv = ["--config.file", str(config), "--api.base-url", api.base_url]
        with exporter_process(argv, {}, log) as (url, pid):
            stamp = "eightbyeight_config_last_reload_success_timestamp_seconds"

            def loaded_at() -> float:
                return value(parse_samples(requests.get(url + "/metrics", timeout=30).text), stamp)

            started = loaded_at()  # start-up counts as the first successful load
            key_file.write_text(NEW_KEY)
            os.kill(pid, signal.SIGHUP)

            def reloaded() -> bool:
                return loaded_at() > started

            wait_until(reloaded, timeout=20, what="the reload after SIGHUP")

            def scraped_with_the_new_key() -> bool:
                requests.get(url + "/metrics", timeout=30)
                return bearer_by_subaccount(api)[-1][1] == NEW_KEY

            wait_until(scraped_with_the_new_key, timeout=20, what="a fetch with the new key")
    text = log.read_text()
    assert "configuration reloaded" in text
    assert OLD_KEY not in text
    assert NEW_KEY not in text
    assert text.count("<redacted>") >= 2


# --- One generation: both listeners follow a reload, together or not at all -------------------

OLD_AUTH = "Bearer callback-old-5c1e"
NEW_AUTH = "Bearer callback-new-9a7d"


def receiver_flags(tmp_path: Path, base_url: str, *extra: str) -> list[str]:
    """Flags of an exporter with its callback receiver, its value in a file that can rotate."""
    auth = tmp_path / "callback.auth"
    if not auth.exists():
        auth.write_text(OLD_AUTH + "\n")
    return [
        "--config.file",
        str(tmp_path / "exporter.yml"),
        "--api.base-url",
        base_url,
        "--webhook.listen-address",
        "127.0.0.1:0",
        "--webhook.auth-header-file",
        str(auth),
        *extra,
    ]


def rotate_auth(tmp_path: Path, value: str) -> None:
    (tmp_path / "callback.auth").write_text(value + "\n")


def callback(url: str, body: object, auth: str, **kwargs: object) -> int:
    """The status a callback gets (as 8x8 would POST it)."""
    headers = {"Content-Type": "application/json", "Authorization": auth}
    return requests.post(url, json=body, headers=headers, timeout=30, **kwargs).status_code


@pytest.fixture
def receiving(tmp_path):
    """An exporter with the callback receiver: acme-prod configured, OLD_AUTH registered."""
    write_config(tmp_path, "acme-prod")
    with FakeApi(GOOD) as api, InProcessExporter(receiver_flags(tmp_path, api.base_url)) as exp:
        assert callback(exp.callback_url, vnu("acme-prod"), OLD_AUTH) == 200
        assert callback(exp.callback_url, vnu("acme-new"), OLD_AUTH) == 403
        yield exp


def test_a_subaccount_added_by_reload_may_call_back(tmp_path, receiving):
    write_config(tmp_path, "acme-prod", "acme-new")
    assert reload(receiving.url).status_code == 200
    assert callback(receiving.callback_url, vnu("acme-new"), OLD_AUTH) == 200
    samples = parse_samples(receiving.get().text)
    assert value(samples, "eightbyeight_webhook_events_total", subaccount="acme-new",
                 event_type="vnu") == 1  # fmt: skip


def test_a_subaccount_removed_by_reload_may_no_longer_call_back(tmp_path, receiving):
    write_config(tmp_path, "acme-new")
    assert reload(receiving.url).status_code == 200
    assert callback(receiving.callback_url, vss("acme-prod"), OLD_AUTH) == 403


def test_a_rotated_callback_value_is_taken_after_reload(tmp_path, receiving):
    rotate_auth(tmp_path, NEW_AUTH)
    assert reload(receiving.url).status_code == 200
    assert callback(receiving.callback_url, vss("acme-prod"), NEW_AUTH) == 200


def test_the_old_callback_value_is_refused_after_reload(tmp_path, receiving):
    rotate_auth(tmp_path, NEW_AUTH)
    assert reload(receiving.url).status_code == 200
    assert callback(receiving.callback_url, vss("acme-prod"), OLD_AUTH) == 401


def test_the_webhook_listener_serves_the_new_certificate_after_reload(tmp_path):
    first, second = (
        self_signed_certificate(tmp_path, "first"),
        self_signed_certificate(tmp_path, "second"),
    )
    web = tmp_path / "web.yml"
    web.write_text(tls_config(*first))
    write_config(tmp_path, "acme-prod")
    with FakeApi(GOOD) as api:
        flags = receiver_flags(tmp_path, api.base_url, "--web.config.file", str(web))
        with InProcessExporter(flags) as exp:
            callbacks_port = exp.built.callbacks.server_address[1]
            url = f"https://127.0.0.1:{exp.server.server_address[1]}"
            assert served_certificate_name(callbacks_port) == "first"
            web.write_text(tls_config(*second))
            assert reload(url, verify=first[0]).status_code == 200
            assert served_certificate_name(callbacks_port) == "second"
            hook = exp.callback_url
            assert hook.startswith("https://")
            assert callback(hook, vss("acme-prod"), OLD_AUTH, verify=second[0]) == 200


def test_a_failed_reload_changes_nothing_on_either_listener(tmp_path):
    first, second = (
        self_signed_certificate(tmp_path, "first"),
        self_signed_certificate(tmp_path, "second"),
    )
    web = tmp_path / "web.yml"
    web.write_text(tls_config(*first))
    write_config(tmp_path, "acme-prod")
    with FakeApi(GOOD) as api:
        flags = receiver_flags(tmp_path, api.base_url, "--web.config.file", str(web))
        with InProcessExporter(flags) as exp:
            web_port = exp.server.server_address[1]
            callbacks_port = exp.built.callbacks.server_address[1]
            url, hook = f"https://127.0.0.1:{web_port}", exp.callback_url
            # Everything changes at once, and the certificate does not go with its key.
            write_config(tmp_path, "acme-new")
            rotate_auth(tmp_path, NEW_AUTH)
            web.write_text(tls_config(second[0], first[1]))
            answer = reload(url, verify=first[0])
            assert answer.status_code == 500
            assert "cannot use cert_file" in answer.text
            assert served_certificate_name(web_port) == "first"
            assert served_certificate_name(callbacks_port) == "first"
            assert callback(hook, vss("acme-prod"), OLD_AUTH, verify=first[0]) == 200
            assert callback(hook, vss("acme-new", "s-2"), OLD_AUTH, verify=first[0]) == 403
            assert callback(hook, vss("acme-prod", "s-3"), NEW_AUTH, verify=first[0]) == 401
            samples = parse_samples(
                requests.get(url + "/metrics", verify=first[0], timeout=30).text
            )
            assert value(samples, "eightbyeight_config_last_reload_successful") == 0
            assert value(samples, "eightbyeight_up", subaccount="acme-prod") == 1
            assert value(samples, "eightbyeight_up", subaccount="acme-new") is None


class PausedHeader(str):
    """A scrape-timeout header whose reading waits until the test lets it go: a request held
    inside the exporter, after its start and before its scrape."""

    entered: threading.Event
    release: threading.Event

    @classmethod
    def new(cls, text: str) -> PausedHeader:
        header = cls(text)
        header.entered, header.release = threading.Event(), threading.Event()
        return header

    def __float__(self) -> float:
        self.entered.set()
        assert self.release.wait(30), "never released"
        return 10.0


class PausedBody:
    """A request body whose first read waits until the test lets it go."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.entered = threading.Event()
        self.release = threading.Event()

    def read(self, size: int = -1) -> bytes:
        self.entered.set()
        assert self.release.wait(30), "never released"
        body, self.body = self.body, b""
        return body


def call_wsgi(app, environ: dict) -> tuple[str, dict[str, str], bytes]:
    answer: list = []
    body = b"".join(app(environ, lambda status, headers, *_: answer.extend([status, headers])))
    return answer[0], dict(answer[1]), body


def frame_options(value: str) -> str:
    return f"http_server_config:\n  headers:\n    X-Frame-Options: {value}\n"


def test_a_scrape_during_a_reload_answers_wholly_from_one_generation(tmp_path):
    """Held after it started, a scrape answers with the front (headers) it started with and the
    subaccounts of that same configuration, though a reload changed both meanwhile."""
    web = tmp_path / "web.yml"
    web.write_text(frame_options("DENY"))
    write_config(tmp_path, "acme-old")
    with FakeApi(GOOD) as api:
        flags = ["--config.file", str(tmp_path / "exporter.yml"), "--api.base-url",
                 api.base_url, "--web.config.file", str(web)]  # fmt: skip
        with InProcessExporter(flags) as exp, ThreadPoolExecutor(1) as pool:
            environ = {
                "REQUEST_METHOD": "GET",
                "PATH_INFO": "/metrics",
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "9881",
                "HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS": (paused := PausedHeader.new("10")),
            }
            held = pool.submit(call_wsgi, exp.server.get_app(), environ)
            assert paused.entered.wait(30)
            web.write_text(frame_options("SAMEORIGIN"))
            write_config(tmp_path, "acme-new")
            assert reload(exp.url).status_code == 200
            paused.release.set()
            status, headers, body = held.result(30)
            assert status == "200 OK"
            assert headers["X-Frame-Options"] == "DENY"
            subaccounts = {
                dict(labels)["subaccount"]
                for name, labels in parse_samples(body.decode())
                if name == "eightbyeight_up"
            }
            assert subaccounts == {"acme-old"}
            # The next scrape is wholly the new configuration's.
            after = exp.get()
            assert after.headers["X-Frame-Options"] == "SAMEORIGIN"
            assert value(parse_samples(after.text), "eightbyeight_up", subaccount="acme-new") == 1


def test_a_callback_during_a_reload_is_judged_wholly_by_one_generation(tmp_path):
    """A callback let in by the old value is judged by the old allow-list, though a reload
    rotated the value and changed the allow-list while its body was arriving."""
    write_config(tmp_path, "acme-prod")
    with (
        FakeApi(GOOD) as api,
        InProcessExporter(receiver_flags(tmp_path, api.base_url)) as exp,
        ThreadPoolExecutor(1) as pool,
    ):
        body = json.dumps(vnu("acme-new")).encode()
        paused = PausedBody(body)
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/webhooks/8x8",
            "HTTP_AUTHORIZATION": OLD_AUTH,
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": paused,
        }
        held = pool.submit(call_wsgi, exp.built.callbacks.get_app(), environ)
        assert paused.entered.wait(30)
        write_config(tmp_path, "acme-new")
        rotate_auth(tmp_path, NEW_AUTH)
        assert reload(exp.url).status_code == 200
        paused.release.set()
        status, _, answer = held.result(30)
        assert (status, answer) == ("403 Forbidden", b"subaccount_not_allowed\n")
        assert callback(exp.callback_url, vnu("acme-new"), NEW_AUTH) == 200


# --- the prepaid balance follows the key ---------------------------------------------------------

ACCOUNT = "0b5c2f0e-4d1a-4c8e-9f3b-2a7d6e1c9b40"


def balance_reply(path: str, headers: dict[str, str]) -> Reply:
    """The balance for the key the request carries: each key reads its own figure."""
    if "/balance" not in path:
        return GOOD
    figures = {OLD_KEY: 120.5, NEW_KEY: 80.25}
    key = headers.get("Authorization", "").removeprefix("Bearer ")
    if key not in figures:
        return Reply(status=401, body=b'{"code": 1002, "message": "unauthorized"}')
    return Reply.json({"balance": figures[key], "currency": "USD"})


def balance_keys(api: FakeApi) -> list[str]:
    return [
        headers["Authorization"].removeprefix("Bearer ")
        for path, headers in api.requests
        if "/balance" in path
    ]


def balance_of(exp: InProcessExporter) -> float | None:
    return value(parse_samples(exp.get().text), "eightbyeight_account_balance", currency="USD")


@contextmanager
def reading_the_balance(key_file: Path) -> Iterator[tuple[FakeApi, InProcessExporter]]:
    """An exporter reading the balance with the key file's key, once its first read is in."""
    flags = ["--subaccount", "acme-prod", "--api.key-file", str(key_file),
             "--balance.account-id", ACCOUNT]  # fmt: skip
    with FakeApi(balance_reply) as api:
        flags += ["--api.base-url", api.base_url, "--balance.base-url", api.base_url]
        with InProcessExporter(flags) as exp:
            exp.get()  # starts the first read, in the background
            wait_until(lambda: balance_keys(api) == [OLD_KEY], timeout=10, what="first read")
            wait_until(lambda: balance_of(exp) == 120.5, timeout=10, what="first balance")
            yield api, exp


def test_a_reload_that_rotates_the_key_reads_the_balance_with_the_new_one(tmp_path, key_file):
    with reading_the_balance(key_file) as (api, exp):
        key_file.write_text(NEW_KEY + "\n")
        assert reload(exp.url).status_code == 200
        # The interval (5m) has not passed, yet the next scrape reads with the new key.
        exp.get()
        wait_until(
            lambda: balance_keys(api) == [OLD_KEY, NEW_KEY],
            timeout=10,
            what="read with the new key",
        )
        wait_until(lambda: balance_of(exp) == 80.25, timeout=10, what="new balance")
        samples = parse_samples(exp.get().text)
        assert value(samples, "eightbyeight_account_balance_up") == 1
        # ...and only once: the reader keeps its schedule from then on.
        assert balance_keys(api) == [OLD_KEY, NEW_KEY]


def test_a_reload_that_changes_nothing_keeps_the_balance_schedule(tmp_path, key_file):
    with reading_the_balance(key_file) as (api, exp):
        assert reload(exp.url).status_code == 200
        exp.get()
        exp.get()
        assert balance_keys(api) == [OLD_KEY]
