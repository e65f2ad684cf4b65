"""The pure parts of ChatOps: Slack's signature scheme, command and button parsing, the
user map, and the messages (blocks) per stage."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from api.auth import Role
from api.chatops.blocks import (
    HEADER_MAX,
    automation_message,
    incident_text,
    stage_message,
    status_text,
)
from api.chatops.commands import (
    APPROVE_ACTION,
    REJECT_ACTION,
    ChatInputError,
    Command,
    parse_action,
    parse_command,
    parse_users,
    who,
)
from api.chatops.config import ChatConfig, parse_hosts
from api.chatops.signing import ReplayGuard, check_signature, replay_key, sign
from kernel.approval import ApprovalPlan, AutomationStatus, TargetPause
from kernel.models import (
    Decision,
    DecisionMode,
    Evidence,
    Execution,
    MetricCheck,
    PlaybookRun,
    RankedComponent,
    RCAReport,
    RootCause,
    RunStatus,
    UnexplainedFault,
    Verification,
    VerificationStatus,
)
from kernel.state import State
from loop.store import IncidentView

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BODY = b"payload=%7B%22type%22%3A%22block_actions%22%7D"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

# -- signing --------------------------------------------------------------------------------


def test_signature_matches_slacks_documented_example() -> None:
    """The worked example of Slack's 'Verifying requests from Slack' page."""
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
        b"channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
        b"command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
        b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
        b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert sign(SECRET, "1531420618", body) == expected
    assert check_signature(SECRET, "1531420618", expected, body, now=1531420618 + 10) is None


def test_a_valid_signature_within_the_window_is_accepted() -> None:
    signature = sign(SECRET, "1000", BODY)
    assert check_signature(SECRET, "1000", signature, BODY, now=1000 + 299) is None
    assert check_signature(SECRET, "1000", signature, BODY, now=1000 - 299) is None


GOOD = sign(SECRET, "1000", BODY)


@pytest.mark.parametrize(
    ("secret", "ts", "signature", "body", "now", "reason"),
    [
        (SECRET, "1000", sign("another", "1000", BODY), BODY, 1000, "bad_signature"),
        (SECRET, "1000", GOOD, BODY + b"x", 1000, "bad_signature"),
        (SECRET, "1001", GOOD, BODY, 1000, "bad_signature"),
        (SECRET, "1000", "v1=" + GOOD[3:], BODY, 1000, "malformed_signature"),
        (SECRET, "1000", GOOD, BODY, 1301, "stale_timestamp"),
        (SECRET, "1000", GOOD, BODY, 699, "stale_timestamp"),
        (SECRET, None, GOOD, BODY, 1000, "missing_headers"),
        (SECRET, "1000", None, BODY, 1000, "missing_headers"),
        (SECRET, "soon", sign(SECRET, "soon", BODY), BODY, 1000, "malformed_timestamp"),
        ("", "1000", sign("", "1000", BODY), BODY, 1000, "not_configured"),
        # one signed request has one spelling: nothing is stripped or re-read
        (SECRET, "1000", GOOD + "\xa0", BODY, 1000, "malformed_signature"),
        (SECRET, "1000", GOOD + " ", BODY, 1000, "malformed_signature"),
        (SECRET, "1000", " " + GOOD, BODY, 1000, "malformed_signature"),
        (SECRET, "1000", GOOD + "\t", BODY, 1000, "malformed_signature"),
        (SECRET, "1000", GOOD.upper().replace("V0=", "v0="), BODY, 1000, "malformed_signature"),
        (SECRET, "1000", GOOD + "00", BODY, 1000, "malformed_signature"),
        (SECRET, " 1000", sign(SECRET, " 1000", BODY), BODY, 1000, "malformed_timestamp"),
        (SECRET, "1_000", sign(SECRET, "1_000", BODY), BODY, 1000, "malformed_timestamp"),
        (SECRET, "+1000", sign(SECRET, "+1000", BODY), BODY, 1000, "malformed_timestamp"),
        (SECRET, "１０００", sign(SECRET, "１０００", BODY), BODY, 1000, "malformed_timestamp"),
    ],
)
def test_what_is_refused_and_why(secret, ts, signature, body, now, reason) -> None:
    refusal = check_signature(secret, ts, signature, body, now=now)
    assert refusal is not None and refusal.reason == reason, refusal
    assert "\n" not in refusal.why and (signature is None or signature not in refusal.why)


def test_replay_guard_takes_a_request_once_within_the_window() -> None:
    guard = ReplayGuard(window_s=300)
    assert guard.first_time(replay_key("1000", BODY), now=1000)
    assert not guard.first_time(replay_key("1000", BODY), now=1100)
    assert guard.first_time(replay_key("1000", BODY + b"&x=1"), now=1100)
    assert guard.first_time(replay_key("1001", BODY), now=1100)
    # past the window the entry is forgotten (the timestamp check refuses it by then)
    assert guard.first_time(replay_key("1000", BODY), now=1400)


def test_replay_guard_memory_is_bounded() -> None:
    guard = ReplayGuard(window_s=300, max_entries=3)
    for i in range(10):
        assert guard.first_time(f"v0={i}", now=1000)
    assert len(guard._seen) <= 3


# -- users and commands -----------------------------------------------------------------------


def test_user_map_by_id_only_unknown_are_viewers() -> None:
    mattermost = "k3q9x7bqifdm8jrz1eh6ctr5wa"
    users = parse_users(f" U123=alice:approver, W0BOB42=bob:operator , {mattermost}=mo:viewer,")
    assert who(users, "U123").name == "alice" and who(users, "U123").role == Role.approver
    assert who(users, "W0BOB42").role == Role.operator and who(users, mattermost).name == "mo"
    stranger = who(users, "U777")
    assert (stranger.name, stranger.role, stranger.via) == ("chat:U777", Role.viewer, "chat")
    assert who(users, "").name == "chat:unknown"


def test_a_name_can_never_pass_for_a_mapped_user() -> None:
    """Ids and names used to share one map: a user renamed to "alice" or to "U123"
    (Slack lets people pick their names) must stay an unknown viewer."""
    users = parse_users("U123=alice:approver")
    import inspect

    assert list(inspect.signature(who).parameters) == ["users", "user_id"]  # no name to match
    for id_of_the_impostor in ("U999", "alice", "alice.s"):
        assert who(users, id_of_the_impostor).role == Role.viewer


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("U1=alice", "expected CHAT_USER_ID=name:role"),
        ("U1:approver", "expected CHAT_USER_ID=name:role"),
        ("=alice:admin", "expected CHAT_USER_ID=name:role"),
        ("U1=alice:root", "unknown role"),
        # an old map keyed by user names: refused at start, saying what to write instead
        ("carol.s=carol:approver", "'carol.s' is not a chat user id"),
        ("alice=alice:admin", "user names are not accepted"),
        ("U1=alice:approver,U1=mallory:admin", "mapped twice"),
        ("U1=al ice:approver", "not a name"),
        ("U1=al\nice:approver", "not a name"),
    ],
)
def test_a_bad_user_map_is_refused(spec, why) -> None:
    with pytest.raises(ChatInputError, match=why):
        parse_users(spec)


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("", Command("help")),
        ("status", Command("status")),
        ("STATUS", Command("status")),
        ("incident abc123", Command("incident", incident_id="abc123")),
        ("approve abc123", Command("approve", incident_id="abc123")),
        (
            "approve abc123 DEADBEEF00",
            Command("approve", incident_id="abc123", plan_hash="deadbeef00"),
        ),
        ("reject abc123", Command("reject", incident_id="abc123")),
        (
            "reject abc123 not during  peak",
            Command("reject", incident_id="abc123", comment="not during peak"),
        ),
        ("pause", Command("pause")),
        ("pause all maintenance window", Command("pause", comment="maintenance window")),
        ("pause pm-site-1 db upgrade", Command("pause", target="pm-site-1", comment="db upgrade")),
        ("resume", Command("resume")),
        ("resume pm-site-1", Command("resume", target="pm-site-1")),
    ],
)
def test_commands_parse(text, command) -> None:
    assert parse_command(text) == command


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("approve", "needs an incident id"),
        ("incident", "needs an incident id"),
        ("approve abc123 nothex!", "not a plan hash"),
        ("approve abc123 deadbeef extra", "optionally a plan hash"),
        ("incident ../../etc", "not an incident id"),
        ("pause <script>", "not a target"),
        ("reboot everything", "unknown command"),
    ],
)
def test_bad_commands_say_why(text, why) -> None:
    with pytest.raises(ChatInputError, match=why):
        parse_command(text)


def test_roles_commands_need() -> None:
    needs = {v: parse_command(t).needs for v, t in [("status", "status"), ("x", "incident a")]}
    assert set(needs.values()) == {Role.viewer}
    assert parse_command("approve a").needs == parse_command("reject a").needs == Role.approver
    assert parse_command("pause").needs == parse_command("resume x").needs == Role.operator


def _payload(action_id: str = APPROVE_ACTION, value: str = "abc123:" + "ab" * 32) -> dict:
    return {
        "type": "block_actions",
        "user": {"id": "U123", "username": "alice.s", "name": "alice.s"},
        "channel": {"id": "C1"},
        "container": {"type": "message", "message_ts": "1700.0002", "thread_ts": "1700.0001"},
        "message": {"ts": "1700.0002", "thread_ts": "1700.0001"},
        "response_url": "https://hooks.slack.com/actions/T1/1/x",
        "actions": [{"action_id": action_id, "value": value, "type": "button"}],
    }


def test_a_button_press_parses_with_its_plan_hash() -> None:
    action = parse_action(_payload())
    assert (action.verb, action.incident_id, action.plan_hash) == ("approve", "abc123", "ab" * 32)
    assert (action.user_id, action.channel) == ("U123", "C1")
    assert action.thread_ts == "1700.0001" and action.response_url.startswith("https://")
    assert parse_action(_payload(REJECT_ACTION)).verb == "reject"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"type": "view_submission"}, "unsupported interaction"),
        ({"actions": []}, "names no action"),
        ({"actions": [{"action_id": "delete_everything", "value": "a:"}]}, "unknown action"),
        ({"actions": [{"action_id": APPROVE_ACTION, "value": "a:zz"}]}, "malformed plan hash"),
        ({"actions": [{"action_id": APPROVE_ACTION, "value": ":" + "ab" * 32}]}, "incident id"),
        # "$" would have let a trailing newline through into ids, logs and the audit
        ({"actions": [{"action_id": APPROVE_ACTION, "value": "inc1\n:"}]}, "not an incident"),
        ({"actions": [{"action_id": APPROVE_ACTION, "value": "a:" + "ab" * 32 + "\n"}]}, "hash"),
        ({"actions": [{"action_id": APPROVE_ACTION, "value": ["a"]}]}, "no incident"),
        ({"actions": [{"action_id": ["x"], "value": "a:"}]}, "unknown action"),
        ({"user": {"id": "U1\nadmin"}}, "malformed user id"),
        ({"user": {"id": {"$ne": ""}}}, "malformed user id"),
        ({"response_url": ["https://x"]}, "malformed response_url"),
        ({"response_url": "https://x/" + "a" * 3000}, "malformed response_url"),
        ({"type": "x" * 10_000}, "unsupported"),
    ],
)
def test_bad_payloads_are_refused(change, why) -> None:
    with pytest.raises(ChatInputError, match=why) as refused:
        parse_action(_payload() | change)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


def test_hostile_command_text_is_shown_escaped_and_short() -> None:
    for text in ("incident inc\x1b[31m1", "approve a " + "f" * 70, "x\x00" * 500):
        with pytest.raises(ChatInputError) as refused:
            parse_command(text)
        shown = str(refused.value)
        assert "\x00" not in shown and "\x1b" not in shown and len(shown) < 400
    assert parse_command("reject a line one\nline two").comment == "line one line two"


RECEIVER = "http://127.0.0.1:8765"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://hooks.slack.com/actions/T1/1/x", None),
        ("https://HOOKS.SLACK.COM/commands/T1/1/x", None),
        ("https://hooks.slack.com:443/actions/T1/1/x", None),
        (RECEIVER + "/respond/1", None),  # the configured API's host (loopback: http is fine)
        ("https://chat.example.org/hooks/1", None),  # MENDLOOP_CHAT_RESPONSE_HOSTS
        ("http://hooks.slack.com/actions/T1/1/x", "not https"),
        ("https://hooks.slack.com:8443/x", "not allowed"),
        ("https://evil.example/x", "not allowed"),
        ("https://hooks.slack.com.evil.example/x", "not allowed"),
        ("https://hooks.slack.com@evil.example/x", "credentials"),
        ("http://127.0.0.1:22/x", "not allowed"),  # another loopback port: no SSRF to it
        ("http://169.254.169.254/latest/meta-data/", "not https"),
        ("https://169.254.169.254/latest/meta-data/", "not allowed"),
        ("https://hooks.slack.com\xa0/x", "not a plain URL"),
        ("https://hooks.slack.com/x\nHost: evil", "not a plain URL"),
        ("file:///etc/passwd", "not an http(s) URL"),
        ("https://[::1/x", "not a URL"),
        ("hooks.slack.com/x", "not an http(s) URL"),
    ],
)
def test_response_urls_are_allow_listed(url, why) -> None:
    config = ChatConfig(api_url=RECEIVER + "/api", response_hosts=parse_hosts("chat.example.org"))
    refusal = config.response_refusal(url)
    assert (refusal is None) if why is None else (refusal is not None and why in refusal)


# -- messages ---------------------------------------------------------------------------------


def _report(incident_id: str = "inc0001") -> RCAReport:
    cause = RootCause(
        fault="cache_saturation",
        component="cache",
        score=0.9,
        confidence=0.8,
        summary="cache memory saturated",
        why="cache memory <above> crit for 5 s & evictions rising",
        evidence=(
            Evidence(
                series="cache_memory_used_pct",
                value=97.0,
                threshold=90.0,
                direction="high",
                since=1.0,
            ),
        ),
    )
    other = cause.model_copy(update={"fault": "db_io_wait", "score": 0.3})
    return RCAReport(
        incident_id=incident_id,
        target="pm-site-1",
        candidates=(cause, other),
        latency_ms=0.5,
        sqi=62.0,
        time_to_report_s=4.2,
    )


def _plan(diff: tuple[str, ...] = ("--- before\n+++ after\n-maxmemory 1g\n+maxmemory 2g",)):
    return ApprovalPlan.build(
        incident_id="inc0001",
        solution_id="sol-cache-scale-out",
        title="Scale the cache out",
        risk="high",
        target="pm-site-1",
        playbook="cache_scale_out.yml",
        extra_vars={"target": "pm-site-1", "twin_url": "http://127.0.0.1:9108", "nodes": 2},
        hosts=("localhost",),
        check_mode=True,
        check_status=RunStatus.successful,
        changed=1,
        changed_tasks=("localhost: Scale out",),
        diff=diff,
        rollback_playbook="cache_scale_out_rollback.yml",
        rollback_vars={"target": "pm-site-1"},
        requested_by="mendloop",
    )


def _run() -> PlaybookRun:
    return PlaybookRun(
        playbook="cache_scale_out.yml",
        check_mode=False,
        status=RunStatus.successful,
        rc=0,
        changed=1,
        changed_tasks=("localhost: Scale out",),
        started=T0,
        ended=T0,
    )


def _incident(state: State = State.analyzed, **extra) -> IncidentView:
    values = {
        "id": "inc0001",
        "target": "pm-site-1",
        "state": state,
        "fault": "cache_saturation",
        "reason": "",
        "opened_at": T0,
        "updated_at": T0,
        "findings": (),
        "report": _report(),
        "decision": Decision(
            incident_id="inc0001",
            solution_id="sol-cache-scale-out",
            mode=DecisionMode.approval,
            reason="high risk",
        ),
        "execution": None,
        "verification": None,
    }
    return IncidentView(**(values | extra))


def _all_text(message) -> str:
    return json.dumps(message.payload())


def _fits_slack(message) -> None:
    """Slack's limits: 50 blocks, 3000 characters a section, 150 a header, 2000 a value."""
    assert len(message.blocks) <= 50
    for block in message.blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= HEADER_MAX
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
        for f in block.get("fields", []):
            assert len(f["text"]) <= 2000
        for element in block.get("elements", []):
            assert len(element.get("value", "")) <= 2000


def test_new_incident_names_the_top_root_cause_escaped() -> None:
    message = stage_message(State.analyzed, "root cause ...", _incident(), None)
    assert message is not None
    assert message.blocks[0]["type"] == "header"
    assert "New incident" in message.blocks[0]["text"]["text"]
    cause = message.blocks[1]["text"]["text"]
    assert "*cache_saturation* on component *cache*" in cause
    assert "&lt;above&gt;" in cause and "&amp; evictions" in cause  # data never becomes markup
    assert "`cache_memory_used_pct` = 97 (above 90)" in cause
    assert "db_io_wait" in cause  # the runners-up
    assert "inc0001" in message.text and "cache_saturation" in message.text
    assert "SQI 62" in message.blocks[2]["elements"][0]["text"]
    again = stage_message(State.analyzed, "re-analysed by bob: ...", _incident(), None)
    assert again is not None and "Re-analysed" in again.text
    _fits_slack(message)


def test_an_unknown_fault_is_announced_as_such_not_as_a_signature() -> None:
    unexplained = UnexplainedFault(
        components=(
            RankedComponent(
                component="database", score=0.8, confidence=0.8, anomaly=5.0, anomalous=True
            ),
            RankedComponent(
                component="api", score=0.2, confidence=0.2, anomaly=1.0, anomalous=True
            ),
        ),
        window_start=1.0,
        window_end=60.0,
    )
    signature = _report().candidates[0].model_copy(update={"fired": False})
    report = _report().model_copy(update={"candidates": (signature,), "unexplained": unexplained})
    incident = _incident(report=report, fault="unknown", decision=None)
    message = stage_message(State.analyzed, "unknown fault ...", incident, None)
    assert message is not None
    body = message.blocks[1]["text"]["text"]
    assert "*unknown fault on component database (confidence 80%)*" in body
    assert "nothing is run" in body and "• api 20%" in body
    assert "cache_saturation" not in body  # the signature is no root cause
    assert message.text.endswith("unknown fault on component database (confidence 80%)")
    _fits_slack(message)


def test_approval_request_carries_the_exact_plan_and_buttons_bound_to_its_hash() -> None:
    plan = _plan()
    incident = _incident(State.awaiting_approval, plan=plan)
    message = stage_message(State.awaiting_approval, "needs a person's approval", incident, plan)
    assert message is not None
    text = _all_text(message)
    for shown in (
        "cache_scale_out.yml",
        "localhost",
        "twin_url",
        "maxmemory 2g",
        "cache_scale_out_rollback.yml",
        plan.plan_hash,
        "high",
        "mendloop",
    ):
        assert shown in text, shown
    actions = [b for b in message.blocks if b["type"] == "actions"]
    assert len(actions) == 1
    approve, reject = actions[0]["elements"]
    assert approve["action_id"] == APPROVE_ACTION and reject["action_id"] == REJECT_ACTION
    assert approve["value"] == reject["value"] == f"inc0001:{plan.plan_hash}"
    assert approve["confirm"]["title"]["text"] == "Run this fix?"
    # a button press hands back exactly this plan
    pressed = parse_action(_payload(value=approve["value"]))
    assert pressed.plan_hash == plan.plan_hash
    # the text twin (Mattermost, notifications) has the plan and the command to approve it
    assert f"approve inc0001 {plan.plan_hash[:12]}" in message.text
    assert "cache_scale_out.yml" in message.text and "localhost" in message.text
    assert "+maxmemory 2g" in message.text and "cache_scale_out_rollback.yml" in message.text
    _fits_slack(message)


def test_a_huge_diff_is_cut_to_fit_a_section() -> None:
    plan = _plan(diff=tuple(f"+line {i} " + "x" * 200 for i in range(200)))
    message = stage_message(State.awaiting_approval, "", _incident(plan=plan), plan)
    assert message is not None
    _fits_slack(message)
    assert "(cut; the whole of it" in _all_text(message)


def test_approval_request_without_a_plan_has_no_buttons() -> None:
    message = stage_message(State.awaiting_approval, "waiting", _incident(), None)
    assert message is not None
    assert not [b for b in message.blocks if b["type"] == "actions"]
    assert "incident inc0001" in _all_text(message)


def test_execution_and_verification_results() -> None:
    execution = Execution(
        id="e1",
        incident_id="inc0001",
        playbook="cache_scale_out.yml",
        check_result=None,
        run=_run(),
        status=RunStatus.successful,
        started=T0,
        ended=T0,
    )
    ran = stage_message(State.verifying, "ran; verifying", _incident(execution=execution), None)
    assert ran is not None and "successful (rc 0), 1 task(s) changed" in _all_text(ran)
    verification = Verification(
        execution_id="e1",
        status=VerificationStatus.passed,
        checks=(MetricCheck(series="cache_memory_used_pct", healthy=True, value=60, threshold=80),),
        waited_s=7.5,
    )
    done = stage_message(
        State.resolved, "1 check(s) healthy", _incident(verification=verification), None
    )
    assert (
        done is not None
        and "Resolved" in _all_text(done)
        and "passed after 7.5 s" in (_all_text(done))
    )
    for state, label in [(State.rolled_back, "Rolled back"), (State.escalated, "Escalated")]:
        message = stage_message(state, "verification failed", _incident(), None)
        assert message is not None and label in message.text and "inc0001" in message.text


def test_only_the_stages_that_matter_are_posted() -> None:
    posted = {s for s in State if stage_message(s, "n", _incident(state=s), None) is not None}
    assert State.open not in posted and State.decided not in posted
    assert State.executing not in posted
    assert {State.analyzed, State.awaiting_approval, State.approved, State.rejected} <= posted
    assert {State.verifying, State.resolved, State.rolled_back, State.escalated} <= posted


def test_status_incident_and_automation_texts() -> None:
    waiting = _incident(State.awaiting_approval, plan=_plan())
    automation = AutomationStatus(
        targets=(TargetPause(target="pm-site-2", by="bob", reason="db upgrade", since=T0),)
    )
    text = status_text([waiting, _incident(State.verifying, id="inc0002")], automation)
    assert "2 incident(s) in flight" in text and "waiting for approval: inc0001" in text
    assert "paused on pm-site-2 by bob: db upgrade" in text
    assert "automation running" in status_text([], AutomationStatus())
    detail = incident_text(waiting, waiting.plan)
    assert "cache_saturation on cache" in detail and waiting.plan.plan_hash in detail
    assert "paused" in automation_message("automation paused everywhere by bob").text


# -- settings -----------------------------------------------------------------------------


def test_chat_settings_are_validated_at_start() -> None:
    from api.chatops import ChatConfig
    from kernel.config import Settings
    from kernel.errors import ConfigError

    off = ChatConfig.from_settings(Settings())
    assert not off.outgoing and not off.incoming
    on = ChatConfig.from_settings(
        Settings(
            chat_api_url="https://slack.com/api",
            chat_bot_token="xoxb-1",
            chat_channel="C1",
            chat_signing_secret="s3cret",
            chat_users="U1=alice:approver",
        )
    )
    assert on.threaded and on.outgoing and on.incoming
    assert on.users == {"U1": ("alice", Role.approver)}
    assert on.allowed_response_hosts() == {("hooks.slack.com", 443), ("slack.com", 443)}
    extended = ChatConfig.from_settings(
        Settings(
            chat_webhook_url="https://mm.example/hooks/x",
            chat_response_hosts="proxy.example, Other.Example:8443",
        )
    )
    assert extended.allowed_response_hosts() == {
        ("hooks.slack.com", 443),
        ("mm.example", 443),
        ("proxy.example", 443),
        ("other.example", 8443),
    }
    assert "xoxb-1" not in repr(on) and "s3cret" not in repr(on)
    webhook = ChatConfig.from_settings(Settings(chat_webhook_url="https://hooks.example/x"))
    assert webhook.outgoing and not webhook.threaded
    bad = [
        ({"chat_api_url": "https://slack.com/api"}, "needs MENDLOOP_CHAT_BOT_TOKEN"),
        ({"chat_webhook_url": "ftp://x"}, "not an http"),
        ({"chat_users": "U1=alice:root", "chat_signing_secret": "s"}, "unknown role"),
        ({"chat_users": "U1=alice:admin"}, "SIGNING_SECRET is not"),
        (
            {"chat_users": "U1=alice:approver,bob.s=bob:admin", "chat_signing_secret": "s"},
            "MENDLOOP_CHAT_USERS: 'bob.s=bob:admin': 'bob.s' is not a chat user id",
        ),
        ({"chat_response_hosts": "https://x.example/"}, "CHAT_RESPONSE_HOSTS"),
        ({"chat_response_hosts": "x.example:99999"}, "bad port"),
        (
            {
                "chat_webhook_url": "http://hooks.example/x",
                "environment": "production",
                "neo4j_password": "real",
            },
            "https in production",
        ),
    ]
    for values, why in bad:
        with pytest.raises(ConfigError, match=why):
            ChatConfig.from_settings(Settings(**values))


def test_closed_and_automation_messages() -> None:
    closed = stage_message("closed", "closed by bob: duplicate", _incident(), None)
    assert closed is not None and "closed by bob" in closed.text and "inc0001" in closed.text
    note = automation_message("automation paused on <b> by bob")
    assert "&lt;b&gt;" in note.blocks[0]["text"]["text"]
