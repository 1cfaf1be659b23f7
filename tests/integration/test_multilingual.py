"""Chinese and English through the real broker, a worker and the real Triton: one model serves
both; intents, sentiment and entities come back with offsets into the original text."""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.console import allow_all_policy, publish_policy
from streams.records import ConversationEvent, DocumentEvent
from tests.conftest import WorkerFactory
from tests.integration import kafka_io

pytestmark = pytest.mark.integration

# (text, the intent a support agent would file it under); none of them is a training sentence
TURNS = [
    ("我的银行卡被重复扣款了两次，请帮我退款", "billing_refund"),
    ("我的快递三天了还没到，物流一直不更新", "delivery_status"),
    ("登录的时候一直提示密码错误，重置邮件也收不到", "account_access"),
    ("患者主诉胸痛三天，服用阿司匹林100mg后无缓解", "symptom_report"),
    ("我想预约下周三上午的门诊", "appointment"),
    ("谢谢你的帮助！", "thanks"),
    ("My card was charged twice, can I get the duplicate payment refunded?", "billing_refund"),
    ("Where is my package? The tracking number has not updated since Monday.", "delivery_status"),
    ("The reset email never arrives and I still cannot log in.", "account_access"),
    ("I'd like to cancel my subscription before it renews.", "cancel"),
    ("Hello there!", "greeting"),
    ("Can I get a refill of my metformin prescription?", "prescription"),
]
NOTE = (
    "患者李明，男，56岁。主诉：胸闷、气短两周。现病史：两周前劳累后出现胸闷，伴心悸。"
    "查体：双肺呼吸音清。辅助检查：心电图示窦性心律。诊断：冠心病。"
    "用药：阿司匹林肠溶片 100mg，每日一次；硝酸甘油 0.5mg 舌下含服。"
)


def test_chinese_and_english_turns_and_a_chinese_clinical_document(
    start_worker: WorkerFactory,
) -> None:
    _worker, settings = start_worker()
    asyncio.run(publish_policy(settings, "acme", allow_all_policy("acme", 1)))
    events = [
        ConversationEvent(f"ml-{i:02d}", f"conv-ml-{i}", "acme", "u1", text, time.time())
        for i, (text, _) in enumerate(TURNS)
    ]
    doc = DocumentEvent("note-zh-1", "acme", NOTE, time.time())
    kafka_io.produce(
        settings.bootstrap_servers,
        settings.topic_in,
        [(e.conversation_id.encode(), e.to_json()) for e in events],
    )
    kafka_io.produce(
        settings.bootstrap_servers, settings.topic_documents_in, [(b"note-zh-1", doc.to_json())]
    )
    got = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_out, settings.topic_documents_out],
        until=lambda r: (
            len(r[settings.topic_out]) >= len(TURNS) and len(r[settings.topic_documents_out]) >= 1
        ),
        timeout_s=180,
        settle_s=1,
    )
    results = {r["event_id"]: r for r in got[settings.topic_out]}
    assert sorted(results) == sorted(e.event_id for e in events)
    right = []
    for event, (text, want) in zip(events, TURNS, strict=True):
        r = results[event.event_id]
        assert r["status"] == "ok", r
        assert r["sentiment"]["label"] in ("positive", "negative")
        for e in r["entities"]:  # offsets into the original text, exactly
            assert 0 <= e["start"] < e["end"] <= len(text)
            assert e["text"] is None or text[e["start"] : e["end"]] == e["text"]
        right.append(r["label"] == want)
        print(f"{r['label']:>16} ({want}) {text}")
    assert sum(right) >= len(TURNS) - 2, right  # the wiring carries the model's own answers

    clinical = results["ml-03"]["entities"]
    kinds = {e["type"] for e in clinical}
    assert {"SYMPTOM", "DRUG"} <= kinds, clinical
    (result,) = got[settings.topic_documents_out]
    assert result["status"] == "ok"
    for e in result["entities"]:
        assert NOTE[e["start"] : e["end"]] == e["text"]
    grouped = result["grouped"]
    print(grouped)
    assert {"症状", "药物"} <= set(grouped), grouped
    drugs = {e["text"] for e in grouped["药物"]}
    assert drugs & {"阿司匹林肠溶片", "硝酸甘油", "阿司匹林"}, drugs
    for items in grouped.values():
        for item in items:
            assert NOTE[item["start"] : item["end"]] == item["text"]
