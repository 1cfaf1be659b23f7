"""Example sentences that define each label of the zero-shot prototype head.

The head's weight row for a label is the L2-normalised mean of the (normalised) embeddings of
that label's sentences, so ``embedding @ prototypes.T`` is a cosine similarity to each label.
The label set and its order live in ``model_repo/minilm_cpu/config.pbtxt`` (parameter
``labels``); :func:`prototype_sentences` checks that this module covers exactly those labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

PROTOTYPES: Final[dict[str, tuple[str, ...]]] = {
    "greeting": (
        "hey, good evening to you",
        "hello, is anyone there?",
        "hey! hope you're having a good day",
        "good afternoon, I'd like some help please",
        "hi, thanks for picking up my chat",
        "hello again, nice to talk to you",
    ),
    "account_access": (
        "I can't log in to my account",
        "I forgot my password and the reset link doesn't work",
        "my account has been locked after too many attempts",
        "I'm not receiving the two-factor authentication code",
        "how do I change the email address I use to sign in?",
        "it says my username does not exist",
        "please help me recover access to my profile",
    ),
    "billing": (
        "I was charged twice for the same order",
        "why is there an extra fee on my invoice?",
        "I want a refund for this payment",
        "my credit card was billed but the subscription is cancelled",
        "how do I update my payment method?",
        "the amount on my bill is wrong this month",
        "can I get a copy of my receipt?",
    ),
    "technical_issue": (
        "the app keeps crashing when I open it",
        "the website shows an error when I click checkout",
        "the page won't load and just keeps spinning",
        "I get error code 500 every time I try to upload",
        "the device stopped connecting to wifi after the update",
        "the sync feature is broken and my data isn't saving",
        "the screen freezes and I have to restart it",
    ),
    "shipping": (
        "where is my package?",
        "my order hasn't arrived yet, it's a week late",
        "can I change the delivery address for my order?",
        "the tracking number doesn't show any updates",
        "how long does shipping take to Canada?",
        "the courier says it was delivered but I never got it",
        "can you send it with express delivery?",
    ),
    "complaint": (
        "this is the worst service I have ever received",
        "I'm really unhappy and I want to speak to a manager",
        "your support agent was rude to me",
        "I'm extremely disappointed, nobody ever fixes anything",
        "this is unacceptable, I've been waiting for weeks",
        "I am going to cancel and tell everyone to avoid you",
    ),
    "feedback": (
        "I love the new design of the app",
        "just wanted to say your team did a great job",
        "it would be nice if you added a dark mode",
        "a suggestion: let us export our history as a spreadsheet",
        "the new feature is really useful, thanks",
        "here's some feedback on the checkout flow, it could be simpler",
    ),
    "other": (
        "what's the weather like today?",
        "do you like music?",
        "tell me a joke",
        "who won the football game last night?",
        "what is the meaning of life?",
        "I'm just bored and wanted to chat",
        "what's your favourite movie?",
    ),
}


class PrototypeMismatchError(ValueError):
    """The prototype sentences do not cover exactly the configured labels."""


def prototype_sentences(labels: Sequence[str]) -> list[tuple[str, ...]]:
    """Return the example sentences for ``labels``, in that order.

    Raises :class:`PrototypeMismatchError` unless :data:`PROTOTYPES` has exactly these keys,
    each with at least one sentence.
    """
    wanted, have = list(labels), set(PROTOTYPES)
    if len(set(wanted)) != len(wanted):
        raise PrototypeMismatchError(f"duplicate labels in config: {wanted}")
    missing, extra = [x for x in wanted if x not in have], sorted(have - set(wanted))
    if missing or extra:
        raise PrototypeMismatchError(
            f"prototypes.py does not match the configured labels: missing={missing} extra={extra}"
        )
    empty = [x for x in wanted if not PROTOTYPES[x]]
    if empty:
        raise PrototypeMismatchError(f"labels without example sentences: {empty}")
    return [PROTOTYPES[x] for x in wanted]


# Held-out sentences (none of them is a prototype sentence): the build fails unless each one is
# classified as its label, so an edit to the prototypes cannot silently break the head.
HELD_OUT: Final[tuple[tuple[str, str], ...]] = (
    ("my card was charged twice this month", "billing"),
    ("hi there, good morning", "greeting"),
    ("I cannot sign in, it says wrong password", "account_access"),
    ("I need to reset my password", "account_access"),
    ("please refund the duplicate charge", "billing"),
    ("the app crashes on startup", "technical_issue"),
    ("the screen goes black when I press play", "technical_issue"),
    ("my parcel still has not been delivered", "shipping"),
    ("where is my order", "shipping"),
    ("you people are useless, I am furious", "complaint"),
    ("great job on the redesign, I really like it", "feedback"),
    ("what do you think about cats?", "other"),
)
