"""Chat callbacks as an attacker sends them (issue 13, item 5), against the real endpoints,
the engine's real approval code over SQLite and a real local HTTP receiver standing in for
the chat service: a captured callback re-spelled to pass the replay guard, an unmapped user
who renames themselves after an approver, a ``response_url`` pointing elsewhere, an
approval that names no plan, and malformed payloads (fuzzed with Hypothesis): never a 500,
every refusal counted by reason, nothing raw in the log."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.chatops import ChatConfig
from api.chatops.signing import sign
from kernel.config import Settings
from kernel.errors import ConfigError
from kernel.state import State

from .test_chatops import NOW, SECRET, Chat, ChatReceiver, waiting

ACTIONS, COMMANDS = "/v1/chat/actions", "/v1/chat/commands"


@pytest.fixture
def receiver() -> Iterator[ChatReceiver]:
    with ChatReceiver() as receiver:
        yield receiver


@pytest.fixture
def store(tmp_path):
    from loop.store import IncidentStore

    store = IncidentStore(f"sqlite:///{tmp_path / 'hostile.db'}")
    yield store
    store.close()


@pytest.fixture
def chat(store, receiver) -> Iterator[Chat]:
    chat = Chat(store, receiver)
    yield chat
    chat.close()


def _post(chat: Chat, path: str, body: bytes, ts: str, signature: str):
    """Headers sent byte for byte (latin-1, as HTTP carries them)."""
    headers = {
        b"content-type": b"application/x-www-form-urlencoded",
        b"x-slack-request-timestamp": ts.encode("latin-1"),
        b"x-slack-signature": signature.encode("latin-1"),
    }
    return chat.client.post(path, content=body, headers=headers)


# -- 1. the replay guard and the spelling of the signature -----------------------------------


@pytest.mark.parametrize("suffix", ["\xa0", " ", "\t", "\x85"])
def test_a_captured_callback_cannot_be_replayed_by_respelling_its_signature(
    chat, store, suffix
) -> None:
    """The guard used to key on the raw header but compare a stripped one: the same
    request with a trailing no-break space passed as new within the 5 minutes."""
    incident_id, _ = waiting(store)
    body = urlencode({"text": f"reject {incident_id} no", "user_id": "U100"}).encode()
    signature = sign(SECRET, str(NOW), body)
    assert _post(chat, COMMANDS, body, str(NOW), signature).json()["outcome"] == "ok"
    respelled = _post(chat, COMMANDS, body, str(NOW), signature + suffix)
    assert respelled.status_code == 401, respelled.text
    assert "malformed signature" in respelled.json()["detail"]
    again = _post(chat, COMMANDS, body, str(NOW), signature)
    assert again.status_code == 401 and "replayed" in again.json()["detail"]
    assert chat.ops.refusals == {"malformed_signature": 1, "replayed": 1}
    exported = chat.client.get("/metrics").text  # the counters reach /metrics, typed
    assert 'mendloop_chat_refusals_total{reason="replayed"} 1.0' in exported
    assert 'mendloop_chat_refusals_total{reason="malformed_signature"} 1.0' in exported
    assert 'mendloop_chat_messages_total{outcome="sent"}' in exported


def test_the_replay_guard_keys_on_what_was_signed(chat, store) -> None:
    """A valid approval replayed with the timestamp re-spelled ("0" + ts) is not the same
    signed text, so it needs a signature of its own: the attacker has none (401)."""
    incident_id, plan = waiting(store)
    chat.press("reject", incident_id, plan.plan_hash)
    payload = json.dumps({"type": "block_actions", "user": {"id": "U100"}, "actions": []})
    body = urlencode({"payload": payload}).encode()
    signature = sign(SECRET, str(NOW), body)
    assert _post(chat, ACTIONS, body, "0" + str(NOW), signature).status_code == 401
    assert chat.ops.refusals["bad_signature"] == 1


# -- 2. who a chat user is: by id only ---------------------------------------------------------


def test_an_unmapped_user_renamed_after_an_approver_stays_a_viewer(chat, store) -> None:
    """``user_name`` used to be looked up in the same map as ids: anyone could rename
    themselves ``U100`` (alice's id) and approve, or pass the two-person rule."""
    incident_id, plan = waiting(store, requested_by="alice")
    payload = {
        "type": "block_actions",
        "user": {"id": "U999", "username": "U100", "name": "U100"},
        "response_url": chat.response_url,
        "actions": [{"action_id": "mendloop_approve", "value": f"{incident_id}:{plan.plan_hash}"}],
    }
    button = chat.signed(ACTIONS, {"payload": json.dumps(payload)})
    assert button.json()["outcome"] == "refused", button.json()
    assert "chat:U999 is viewer" in button.json()["text"]
    command = chat.command(f"approve {incident_id} {plan.plan_hash}", user="U998", user_name="U100")
    said = command.json()
    assert said["outcome"] == "refused" and "chat:U998 is viewer" in said["text"]
    assert store.get(incident_id).state == State.awaiting_approval


def test_a_user_map_keyed_by_names_is_refused_at_start() -> None:
    old = Settings(chat_signing_secret="s", chat_users="U100=alice:approver,carol.s=carol:admin")
    with pytest.raises(ConfigError, match=r"'carol\.s' is not a chat user id"):
        ChatConfig.from_settings(old)


# -- 3. response_url: only to the allow-list, never fetched otherwise -------------------------


def test_a_response_url_off_the_allow_list_is_never_posted_to(chat, store, receiver) -> None:
    incident_id, plan = waiting(store)
    with ChatReceiver() as elsewhere:  # another local service: not the chat service's port
        payload = {
            "type": "block_actions",
            "user": {"id": "U100"},
            "response_url": elsewhere.url + "/internal/admin",
            "actions": [
                {"action_id": "mendloop_approve", "value": f"{incident_id}:{plan.plan_hash}"}
            ],
        }
        answer = chat.signed(ACTIONS, {"payload": json.dumps(payload)})
        assert answer.json()["outcome"] == "ok"  # the approval stands; only the URL is refused
        chat.settle()
        assert elsewhere.posts == []
    assert chat.ops.refusals == {"response_url_refused": 1}
    assert store.get(incident_id).state == State.approved
    assert not [p for p in receiver.posts if p["path"].startswith("/internal")]


def test_an_allowed_response_url_is_answered(chat, store, receiver) -> None:
    incident_id, plan = waiting(store)
    assert chat.press("reject", incident_id, plan.plan_hash).json()["outcome"] == "ok"
    chat.settle()
    assert [p for p in receiver.delivered() if p["path"] == "/respond/T1/1"]
    assert "response_url_refused" not in chat.ops.refusals


# -- 4. an approval names its plan ---------------------------------------------------------


def test_approving_from_chat_without_the_plan_hash_is_refused_with_it(chat, store) -> None:
    incident_id, plan = waiting(store)
    answer = chat.command(f"approve {incident_id}", user="U400").json()
    assert answer["outcome"] == "refused", answer
    assert f"/mendloop approve {incident_id} {plan.plan_hash[:12]}" in answer["text"]
    assert store.get(incident_id).state == State.awaiting_approval
    prefix = chat.command(f"approve {incident_id} {plan.plan_hash[:8]}", user="U400").json()
    assert prefix["outcome"] == "ok" and store.get(incident_id).approval.plan_hash == plan.plan_hash


def test_a_button_without_a_plan_hash_approves_nothing(chat, store) -> None:
    incident_id, plan = waiting(store)
    answer = chat.press("approve", incident_id, "").json()
    assert answer["outcome"] == "refused" and plan.plan_hash[:12] in answer["text"]
    assert store.get(incident_id).state == State.awaiting_approval


# -- 5. hostile text: nothing raw in the log, the audit or a template; never a 500 -------------


def test_chat_text_is_kept_as_text(chat, store, receiver, tmp_path) -> None:
    """Template syntax, mentions and links in a reject or pause reason are stored as typed,
    posted escaped (blocks and the plain text Mattermost shows), and nothing evaluates
    them."""
    incident_id, _ = waiting(store)
    canary = tmp_path / "pwned"
    jinja = "{{ lookup('pipe', 'touch " + str(canary) + "') }}"
    hostile = f"{jinja} <!channel> @here <https://evil.example|click>"
    answer = chat.command(f"reject {incident_id} {hostile}").json()
    assert answer["outcome"] == "ok"
    assert store.get(incident_id).reason == f"rejected by alice: {hostile}"
    assert chat.command(f"pause pm-site-1 {hostile}", user="U200").json()["outcome"] == "ok"
    chat.settle()
    bodies = [p["body"] for p in receiver.delivered("/api/chat.postMessage")]
    assert len(bodies) == 2
    for body in bodies:
        for text in [body["text"]] + [b["text"]["text"] for b in body["blocks"]]:
            assert "<!channel>" not in text and "<https://" not in text
            assert "&lt;!channel&gt;" in text and jinja in text
        assert "@here" not in body["text"]  # Mattermost would notify the whole channel
    assert not canary.exists()


@pytest.mark.parametrize(
    ("path", "form", "why"),
    [
        (COMMANDS, {"text": "status", "user_id": "U1\nadmin"}, "malformed user id"),
        (COMMANDS, {"text": "status", "user_id": "U1\x1b[2J"}, "malformed user id"),
        (ACTIONS, {"payload": "[" * 100_000 + "]" * 100_000}, "not JSON"),
        (ACTIONS, {"payload": "{not json"}, "not JSON"),
        (ACTIONS, {"payload": json.dumps({"type": "block_actions", "actions": "x"})}, "no action"),
        (ACTIONS, {"payload": json.dumps([1, 2])}, "not a JSON object"),
        (ACTIONS, {"payload": json.dumps({"type": {"a": 1}})}, "unsupported"),
    ],
)
def test_a_malformed_signed_request_is_a_counted_400(chat, store, path, form, why, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    answer = chat.signed(path, form)
    assert answer.status_code == 400 and why in answer.json()["detail"], answer.text
    assert chat.ops.refusals == {"malformed_request": 1}
    assert all("\n" not in r.getMessage() and "\x1b" not in r.getMessage() for r in caplog.records)
    (entry,) = [e for e in _audit(store) if e.status == 400]
    assert "\n" not in entry.detail and "\x1b" not in entry.detail


def test_a_body_that_is_not_utf8_is_a_400(chat) -> None:
    body = b"text=status&user_id=U1\xff\xfe"
    answer = _post(chat, COMMANDS, body, str(NOW), sign(SECRET, str(NOW), body))
    assert answer.status_code == 400 and "url-encoded" in answer.json()["detail"]


def _audit(store) -> list:
    from api.auth import AuditLog

    return AuditLog(store.engine).entries()


FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
payloads = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["block_actions", "view_submission"]) | json_values,
        "user": st.fixed_dictionaries({}, optional={"id": st.text(max_size=20) | json_values}),
        "response_url": st.text(max_size=60) | json_values,
        "actions": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "action_id": st.sampled_from(["mendloop_approve", "mendloop_reject"])
                    | json_values,
                    "value": st.text(max_size=80) | json_values,
                },
            )
            | json_values,
            max_size=2,
        ),
        "message": json_values,
        "channel": json_values,
    },
)


@FUZZ
@given(payload=payloads | json_values, raw=st.none() | st.binary(max_size=200))
def test_fuzzed_signed_interactions_never_make_a_500(chat, payload, raw, caplog) -> None:
    """Whatever a signed interaction carries: 200 (read and acted on) or 400 (counted as
    malformed), never a 500; what is sent = what is answered 200 + what is counted."""
    before = chat.ops.refusals.copy()
    chat.ops.replays._seen.clear()  # the same example may be drawn twice
    body = raw if raw is not None else urlencode({"payload": json.dumps(payload)}).encode()
    answer = _post(chat, ACTIONS, body, str(NOW), sign(SECRET, str(NOW), body))
    assert answer.status_code in (200, 400), answer.text
    counted = chat.ops.refusals - before
    if answer.status_code == 400:
        assert counted == {"malformed_request": 1}
    else:  # read; its response_url may have been refused (and counted) on top
        assert set(counted) <= {"response_url_refused"} and sum(counted.values()) <= 1
    assert all("\n" not in r.getMessage() for r in caplog.records if r.name == "mendloop.chat")


@FUZZ
@given(
    form=st.dictionaries(
        st.sampled_from(["text", "user_id", "user_name", "response_url", "command", "x"]),
        st.text(max_size=60),
    )
)
def test_fuzzed_signed_commands_never_make_a_500(chat, store, form) -> None:
    before = chat.ops.refusals.copy()
    chat.ops.replays._seen.clear()
    answer = chat.signed(COMMANDS, form)
    assert answer.status_code in (200, 400), answer.text
    counted = chat.ops.refusals - before
    if answer.status_code == 400:
        assert counted == {"malformed_request": 1}
    else:
        assert set(counted) <= {"invalid_command"}
        assert (answer.json()["outcome"] == "invalid") == bool(counted)


@FUZZ
@given(ts=st.text(max_size=20), signature=st.text(max_size=80), body=st.binary(max_size=100))
def test_fuzzed_headers_are_a_counted_401(chat, ts, signature, body) -> None:
    before = sum(chat.ops.refusals.values())
    try:
        answer = _post(chat, COMMANDS, body, ts, signature)
    except UnicodeEncodeError:  # not sendable as an HTTP header at all
        return
    assert answer.status_code == 401
    assert sum(chat.ops.refusals.values()) == before + 1
