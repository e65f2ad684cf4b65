"""ChatOps: Slack-compatible (and Mattermost-compatible) messages per incident stage, and
signed approvals and commands from chat. docs/CHATOPS.md has the set-up and the shapes.

    chat = ChatOps.from_settings(settings, engine.store, engine.operations)  # None: not set
    engine.listeners.append(chat.notify)
    app = create_app(..., chat=chat.router)

Pure parts: ``signing`` (Slack's HMAC scheme), ``blocks`` (messages), ``commands``
(commands, button payloads, the user map). Adapters: ``sender`` (HTTP transports, the
SQL thread map, the background sender), ``router`` (the endpoints), ``ops`` (assembly).
"""

from api.chatops.config import ChatConfig
from api.chatops.ops import ChatActions, ChatOps

__all__ = ["ChatActions", "ChatConfig", "ChatOps"]
