"""Image turns through the real broker, a real worker and the real Triton (issue 19): OCR'd text is
tagged, masked, signed and kept in context like typed text; hostile attachments dead-letter."""

from __future__ import annotations

import asyncio
import base64
import io
import random
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from PIL import Image, ImageDraw, ImageFont

from streams.console import allow_all_policy, publish_policy
from streams.records import ConversationEvent
from tests import attachment_samples as samples
from tests.conftest import WorkerFactory
from tests.integration import kafka_io
from tests.integration.test_round_trip import valid_events
from workers.ocr.evalset import font_dir
from workers.provenance import textmark

pytestmark = pytest.mark.integration

# (the page's lines, the phone number on it), Chinese and English. The fonts are the clean ones:
# this test is about the pipeline; the evaluation set measures reading (bench/ocr_accuracy.py).
PAGES = [
    (["患者主诉头痛三天，伴有发热。", "请回电 13812345678 预约复诊。"], "13812345678"),
    (
        ["Patient reports chest pain and nausea.", "Call me back at 415-555-0134 please."],
        "415-555-0134",
    ),
    (["订单号 SO-2026-104233 还没有发货，", "联系电话 13998765432。"], "13998765432"),
    (["My order #A7X-22913 never arrived.", "Reach me on 212-555-0188 today."], "212-555-0188"),
    (["医生开了布洛芬，每日三次。", "家属电话 15012345678。"], "15012345678"),
]
FONTS = {"zh": ("wqy-zenhei.ttc", "wqy-microhei.ttc"), "en": ("DejaVuSans.ttf",)}


def page_png(lines: list[str], font: Path, size: int) -> bytes:
    face = ImageFont.truetype(str(font), size)
    width = max(int(face.getlength(t)) for t in lines) + 80
    im = Image.new("RGB", (width, 60 + len(lines) * size * 2), "white")
    draw = ImageDraw.Draw(im)
    for i, text in enumerate(lines):
        draw.text((40, 30 + i * size * 2), text, font=face, fill=(20, 20, 20))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def image_turn(i: int, store: Path, fonts: Path, rng: random.Random) -> tuple[bytes, str]:
    """An image turn (inline or by reference into the worker's store) and its phone number."""
    lines, phone = PAGES[i % len(PAGES)]
    lang = "zh" if any("\u4e00" <= c <= "\u9fff" for c in "".join(lines)) else "en"
    png = page_png(lines, fonts / rng.choice(FONTS[lang]), rng.choice((28, 32, 36)))
    if i % 2:
        attachment: dict[str, Any] = samples.inline(png, "image/png", "page")
    else:
        store.mkdir(parents=True, exist_ok=True)
        (store / f"page-{i}.png").write_bytes(png)
        attachment = {"id": "page", "media_type": "image/png", "ref": f"page-{i}.png"}
    event = {
        "event_id": f"img-{i:03d}",
        "conversation_id": f"conv-img-{i % 7}",
        "tenant": "tenant-0",
        "user_id": "u",
        "text": "see the photo" if i % 5 == 0 else "",
        "ts": time.time(),
        "attachments": [attachment],
    }
    return orjson.dumps(event), phone


def test_50_image_turns_among_500_text_turns(start_worker: WorkerFactory) -> None:
    worker, settings = start_worker()
    texts = valid_events(500)
    for tenant in {e.tenant for e in texts}:
        asyncio.run(publish_policy(settings, tenant, allow_all_policy(tenant, 1)))
    rng, fonts = random.Random(19), font_dir()
    records: list[tuple[bytes | None, bytes]] = [
        (e.conversation_id.encode(), e.to_json()) for e in texts
    ]
    phones: dict[str, str] = {}
    for i in range(50):
        raw, phone = image_turn(i, settings.attachment_path, fonts, rng)
        phones[f"img-{i:03d}"] = phone
        records.insert(rng.randrange(len(records) + 1), (f"conv-img-{i % 7}".encode(), raw))
    assert kafka_io.produce(settings.bootstrap_servers, settings.topic_in, records) == 550

    out = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_out, settings.topic_deadletter],
        until=lambda r: len(r[settings.topic_out]) + len(r[settings.topic_deadletter]) >= 550,
        timeout_s=300,
    )
    results, dead = out[settings.topic_out], out[settings.topic_deadletter]
    assert dead == [], [(d["reason"], d["detail"]) for d in dead]
    ids = [r["event_id"] for r in results]
    assert len(ids) == 550 and set(ids) == {e.event_id for e in texts} | set(phones)

    images = [r for r in results if r["event_id"] in phones]
    assert all(r["status"] == "ok" for r in images)
    assert {r["source"] for r in images} == {"image", "text+image"}
    assert all(r["source"] == "text" and r["ocr"] is None for r in results if r not in images)
    masked, unmasked = 0, []
    for r in images:
        digits = phones[r["event_id"]].replace("-", "")
        pieces = {digits[k : k + 4] for k in range(len(digits) - 3)}
        (view,) = r["ocr"]
        assert view["attachment"] == "page" and len(view["lines"]) >= 2
        for line in view["lines"]:
            assert line["confidence"] > 0.5 and len(line["box"]) == 4
        assert all(len(x["box"]) == 4 for x in view["redactions"])
        shown = textmark.strip(r["text"]).replace("-", "")  # no 4 digits of it in clear
        if view["redactions"] and not any(p in shown for p in pieces):
            masked += 1
        else:
            unmasked.append((r["text"], view["redactions"], r["entities"]))
        spans = [(line["start"], line["end"]) for line in view["lines"]]
        for e in r["entities"] or []:  # offsets into the recognised text fall inside a line
            assert any(lo <= e["start"] < e["end"] <= hi for lo, hi in spans), (e, spans)
    assert masked == 50, f"only {masked}/50 image turns had their phone number masked: {unmasked}"
    tagged = [e for r in images for e in r["entities"] or []]
    assert {"PHONE", "SYMPTOM"} <= {e["type"] for e in tagged}
    # context: an image turn's recognised text is remembered like a typed turn's
    later = [r for r in images if r["context"] and len(r["context"]["turn_ids"]) > 1]
    assert later, "no image turn selected an earlier turn as context"
    assert "Traceback" not in worker.log_path.read_text(), worker.tail(60)


def test_hostile_attachments_dead_letter_and_the_worker_goes_on(
    start_worker: WorkerFactory,
) -> None:
    worker, settings = start_worker()
    asyncio.run(publish_policy(settings, "t", allow_all_policy("t", 1)))
    cases = samples.hostile_cases()
    records: list[tuple[bytes | None, bytes]] = []
    for case in cases:
        event = {
            "event_id": f"bad-{case.name}",
            "conversation_id": "c-bad",
            "tenant": "t",
            "user_id": "u",
            "text": "",
            "ts": time.time(),
            "attachments": [case.item],
        }
        records.append((b"c-bad", orjson.dumps(event)))
    upright = {
        "event_id": "exif-6",
        "conversation_id": "c-bad",
        "tenant": "t",
        "user_id": "u",
        "text": "rotated photo",
        "ts": time.time(),
        "attachments": [samples.inline(samples.exif_rotated_jpeg(6), "image/jpeg", "photo")],
    }
    after = ConversationEvent("after", "c-bad", "t", "u", "a typed turn after them", time.time())
    records += [(b"c-bad", orjson.dumps(upright)), (b"c-bad", after.to_json())]
    kafka_io.produce(settings.bootstrap_servers, settings.topic_in, records)

    out = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_out, settings.topic_deadletter],
        until=lambda r: (
            len(r[settings.topic_deadletter]) >= len(cases) and len(r[settings.topic_out]) >= 2
        ),
        timeout_s=120,
    )
    got = {d["event_id"]: d["reason"] for d in out[settings.topic_deadletter]}
    assert got == {f"bad-{c.name}": c.code for c in cases}
    for d in out[settings.topic_deadletter]:
        raw = base64.b64decode(d["original_b64"])
        assert orjson.loads(raw)["event_id"] == d["event_id"]  # the original, for replay
    results = {r["event_id"]: r for r in out[settings.topic_out]}
    assert set(results) == {"exif-6", "after"}
    (view,) = results["exif-6"]["ocr"]
    w, h = samples.UPRIGHT_SIZE
    assert (view["width"], view["height"], view["orientation"]) == (w, h, 6)
    assert worker.pid() is not None, worker.tail()


def big_page_turn(event_id: str, conversation: str, fonts: Path) -> bytes:
    """A dense page (28 lines, 1300 px high): seconds of OCR on these CPUs."""
    lines = [f"Line {n}: the patient reports a headache, fever and chest pain." for n in range(28)]
    png = page_png(lines, fonts / "DejaVuSans.ttf", 22)
    event = {
        "event_id": event_id,
        "conversation_id": conversation,
        "tenant": "tenant-0",
        "user_id": "u",
        "text": "",
        "ts": time.time(),
        "attachments": [samples.inline(png, "image/png", "page")],
    }
    return orjson.dumps(event)


def test_text_turns_overtake_an_image_turn_still_in_ocr(start_worker: WorkerFactory) -> None:
    """One input partition: a page that takes seconds of OCR, then 40 text turns of other
    conversations and one of the page's own. The others' results come before the page's (they
    do not wait behind it); the page's conversation keeps its order: its next turn comes after
    the page."""
    worker, settings = start_worker()
    asyncio.run(publish_policy(settings, "tenant-0", allow_all_policy("tenant-0", 1)))
    warm = ConversationEvent("warm", "conv-warm", "tenant-0", "u", "hello", time.time())
    kafka_io.produce_to_partitions(
        settings.bootstrap_servers, settings.topic_in, [(0, b"conv-warm", warm.to_json())]
    )
    kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_out],
        until=lambda r: len(r[settings.topic_out]) >= 1,
        timeout_s=60,
        settle_s=0.0,
    )
    others = [
        ConversationEvent(f"t-{i:02d}", f"conv-{i}", "tenant-0", "u", f"where is order {i}?", 0.0)
        for i in range(40)
    ]
    own = ConversationEvent("own-next", "conv-page", "tenant-0", "u", "did you read it?", 0.0)
    records = [(0, b"conv-page", big_page_turn("page", "conv-page", font_dir()))]
    records += [(0, e.conversation_id.encode(), e.to_json()) for e in others]
    records += [(0, b"conv-page", own.to_json())]
    kafka_io.produce_to_partitions(settings.bootstrap_servers, settings.topic_in, records)

    out = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_out, settings.topic_deadletter],
        until=lambda r: len(r[settings.topic_out]) >= 43,
        timeout_s=180,
    )
    assert out[settings.topic_deadletter] == []
    results = {r["event_id"]: r for r in out[settings.topic_out]}
    assert len(out[settings.topic_out]) == 43 and len(results) == 43
    page, after = results["page"], results["own-next"]
    assert page["source"] == "image" and len(page["ocr"][0]["lines"]) >= 20
    first = sorted(results[e.event_id]["produced_at"] for e in others)
    ocr_s = page["produced_at"] - first[0]
    print(f"\npage read in {ocr_s:.2f} s after the first text result; text results spread over "
          f"{first[-1] - first[0]:.2f} s")  # fmt: skip
    assert ocr_s > 1.0, "the page took too little OCR time to test anything"
    assert first[-1] < page["produced_at"], "a text turn waited for the page"
    assert after["produced_at"] > page["produced_at"]  # the page's own conversation: in order
    assert worker.pid() is not None, worker.tail()


def test_kill_9_with_images_in_ocr_gives_each_event_one_result(
    start_worker: WorkerFactory,
) -> None:
    """Text turns overtake image turns still in OCR and commit while the offset stays at the
    oldest image: a kill -9 then replays them. Each still gets exactly one result (the replay
    finds their dedupe rows), and every image turn is answered after the restart."""
    worker, settings = start_worker()
    texts = valid_events(400)
    for tenant in {e.tenant for e in texts} | {"tenant-0"}:
        asyncio.run(publish_policy(settings, tenant, allow_all_policy(tenant, 1)))
    rng, fonts = random.Random(7), font_dir()
    records: list[tuple[bytes | None, bytes]] = [
        (e.conversation_id.encode(), e.to_json()) for e in texts
    ]
    pages = [f"page-{i}" for i in range(6)]
    for i, event_id in enumerate(pages):  # the dense pages first: they hold the offsets back
        records.insert(
            i * 3, (f"conv-page-{i}".encode(), big_page_turn(event_id, f"conv-page-{i}", fonts))
        )
    images = [f"img-{i:03d}" for i in range(1, 40, 2)]  # inline ones
    for i in range(1, 40, 2):
        raw, _ = image_turn(i, settings.attachment_path, fonts, rng)
        records.insert(rng.randrange(len(records) + 1), (f"conv-img-{i % 7}".encode(), raw))
    want = {e.event_id for e in texts} | set(pages) | set(images)
    kafka_io.produce(settings.bootstrap_servers, settings.topic_in, records)

    seen = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_out],
        until=lambda r: len(r[settings.topic_out]) >= 150,
        timeout_s=120,
        settle_s=0.0,
    )[settings.topic_out]
    worker.stop(grace_s=0, sig=signal.SIGKILL)
    before = {r["event_id"] for r in seen}
    assert not set(pages) <= before, "every page was read before the kill: nothing tested"
    worker, _ = start_worker()
    out = kafka_io.consume(
        settings.bootstrap_servers,
        [settings.topic_out, settings.topic_deadletter],
        until=lambda r: len({x["event_id"] for x in r[settings.topic_out]}) >= len(want),
        timeout_s=300,
        settle_s=3.0,
    )
    ids = [r["event_id"] for r in out[settings.topic_out]]
    doubled = sorted({i for i in ids if ids.count(i) > 1})
    print(f"\n{len(before)} results before the kill -9, {len(ids)} in all for {len(want)} events")
    assert out[settings.topic_deadletter] == []
    assert not doubled, f"{len(doubled)} event ids with two results, e.g. {doubled[:5]}"
    assert set(ids) == want
    assert worker.pid() is not None, worker.tail()


def _stub_niceness(triton_pid: int) -> dict[str, set[int]]:
    """The scheduler niceness of every thread of each python-backend stub that ``triton_pid``
    started, by the model folder its command line names."""
    out: dict[str, set[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(") ", 1)[1].split()[1])
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if ppid != triton_pid or not any(b"python_backend_stub" in a for a in argv):
                continue
            model = Path(argv[1].decode()).parent.parent.name  # <repo>/<model>/1/model.py
            for task in (proc / "task").iterdir():
                fields = (task / "stat").read_text().rsplit(") ", 1)[1].split()
                out.setdefault(model, set()).add(int(fields[16]))  # field 19: nice
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return out


def test_ocr_models_run_at_a_lower_cpu_priority_than_the_text_model(services: Any) -> None:
    """The OCR stubs' every thread (OpenVINO's included) at the configs' nice 10, the text
    model's at 0: on shared cores the scheduler serves text turns first."""
    pid_file = services.run_dir / f"triton-{services.triton_grpc_port}" / "triton.pid"
    niceness = _stub_niceness(int(pid_file.read_text().strip()))
    assert niceness.get("ocr_det") == {10}, niceness
    assert niceness.get("ocr_rec") == {10}, niceness
    assert niceness.get("inferstream_cpu") == {0}, niceness
