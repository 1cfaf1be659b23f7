"""Sample conversations for `inferstream produce --sample` and the demo."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator

from streams.records import ConversationEvent

SAMPLE_DIALOGUES: dict[str, list[str]] = {
    "acme": [
        "Hi there, good morning!",
        "I can't log in to my account, it says my password is wrong.",
        "I already reset it twice and the reset email never arrives.",
        "Thanks, that worked. Have a nice day!",
    ],
    "globex": [
        "My card was charged twice for the same order this month.",
        "Can you refund the duplicate payment?",
        "Also, where is my package? The tracking number hasn't updated in a week.",
        "Call me on +44 20 7946 0958, the card was 4111 1111 1111 1111.",
        "This is the third time I'm writing about this, it's really unacceptable.",
    ],
    "initech": [
        "The app crashes every time I open the settings page.",
        "I'm on version 4.2 on Android 14, I already reinstalled it.",
        "By the way, I love the new dark mode, great job!",
        "What's your favourite movie?",
    ],
    # no policy is published for this tenant: its requests are denied (default deny)
    "umbrella": ["Hello, I need help with my order."],
}
POLICY_TENANTS = ("acme", "globex", "initech")


def sample_events(run_id: str | None = None, repeat: int = 1) -> Iterator[ConversationEvent]:
    """Turns of the sample dialogues, `repeat` conversations per tenant, in dialogue order."""
    run_id = run_id or uuid.uuid4().hex[:8]
    counter = itertools.count()
    for rep in range(repeat):
        for tenant, turns in SAMPLE_DIALOGUES.items():
            conversation_id = f"{run_id}-{tenant}-{rep}"
            for turn, text in enumerate(turns):
                yield ConversationEvent(
                    event_id=f"{run_id}-{next(counter):06d}",
                    conversation_id=conversation_id,
                    tenant=tenant,
                    user_id=f"user-{rep}",
                    text=text,
                    ts=time.time(),
                    metadata={"turn": turn},
                )
