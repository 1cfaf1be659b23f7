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
    "huaxia": [
        "你好，在吗？",
        "我的银行卡被重复扣款了两次，能帮我退款吗？",
        "另外我的快递已经五天没有更新物流了，怎么回事？",
        "好的，谢谢你的帮助！",
    ],
    "clinic": [
        "患者主诉胸痛三天，服用阿司匹林100mg后没有缓解，需要担心吗？",
        "I'd like to book an appointment with Dr. Chen next Tuesday morning.",
        "Can I get a refill of my metformin prescription?",
    ],
    # no policy is published for this tenant: its requests are denied (default deny)
    "umbrella": ["Hello, I need help with my order."],
}
POLICY_TENANTS = ("acme", "globex", "initech", "huaxia", "clinic")
SAMPLE_TURNS = sum(len(turns) for turns in SAMPLE_DIALOGUES.values())
# a Chinese clinical note for the demo's document flow (entities grouped by type)
SAMPLE_NOTE = (
    "患者李明，男，56岁。主诉：胸闷、气短两周。现病史：两周前劳累后出现胸闷，伴心悸。"
    "查体：双肺呼吸音清。辅助检查：心电图示窦性心律。诊断：冠心病。"
    "用药：阿司匹林肠溶片 100mg，每日一次；硝酸甘油 0.5mg 舌下含服。联系电话 138-1234-5678。"
)


# the demo's image turn: a photographed note, Chinese and English, with a phone number to mask
SAMPLE_IMAGE_LINES = (
    "复诊预约：患者主诉头痛三天，伴有发热。",
    "Call me back at 415-555-0134 about the refund.",
    "家属电话 13812345678",
)


def sample_image_png(lines: tuple[str, ...] = SAMPLE_IMAGE_LINES) -> bytes:
    """The demo's image turn, rendered with a font of deploy/fonts/fetch.sh (set up by setup)."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    from workers.ocr.evalset import font_dir

    face = ImageFont.truetype(str(font_dir() / "wqy-zenhei.ttc"), 30)
    width = max(int(face.getlength(t)) for t in lines) + 80
    im = Image.new("RGB", (width, 50 + 60 * len(lines)), (250, 250, 246))
    draw = ImageDraw.Draw(im)
    for i, text in enumerate(lines):
        draw.text((40, 30 + 60 * i), text, font=face, fill=(25, 25, 25))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


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
