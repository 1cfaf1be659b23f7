"""OCR of image attachments (issue 19): what reading one image costs in-process and through
Triton, and what image turns cost the text turns they are interleaved with.

    python -m bench.ocr [--quick] [--part a|b|both] [--text-fraction 0.5] [--image-share 0.1]
        [--shared-conversations]

Part A (no Kafka): text-dense PNG pages of three sizes (a 640x480 screenshot, a 1280x960 photo,
an A4 scan at 300 dpi) and part B's image turns, read in-process (``LocalOcr`` on the networks
``ocr_det/1`` and ``ocr_rec/1`` serve, INT8 or FP32 as the build decided: OpenVINO, its default
threads) and through Triton (``ImageReader`` + ``TritonOcrClient``, as the worker reads:
decode, detect on ``ocr_det``, crop, recognise on ``ocr_rec``; one thread per model), base64 and
PNG decode included. One image at a time gives p50/p99 per image, four at a time images/s.

Part B (the full stack, one worker): text turns flat out; image turns alone (a burst: the
worker's image throughput); text only at half the flat-out rate; the same text rate with image
turns (inline 1000x400 PNGs of 2-4 lines, in conversations of their own; with
``--shared-conversations`` in the text turns', where a text turn behind an image turn of its
conversation waits for it by design) at 10 % of it. Text-turn
p50/p99 in the last two and their ratio (issue 19: p99 within 1.5x), image-turn p50/p99, CPU
per event of each process, the worker's OCR steps. Writes bench/out/ocr.json.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import math
import os
import random
import re
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import orjson
from aiokafka import AIOKafkaProducer
from PIL import Image, ImageDraw, ImageFont
from prometheus_client.parser import text_string_to_metric_families

from bench.cpu import CpuMeter, pid_file
from bench.load import Conversations, Phase, Sent
from bench.plan import Plan
from bench.scenarios import Session, quiet_kafka_logs, rate_at, run_target
from bench.stack import TENANT, Ports, Services, Worker, clean_environ, settings_from_env
from bench.stats import dist
from bench.texts import TextPool
from streams import local
from streams.settings import REPO_ROOT
from workers.attachments import Attachment, AttachmentLimits, decode_image
from workers.ocr import evalset

OUT = REPO_ROOT / "bench" / "out" / "ocr.json"
LIMITS = AttachmentLimits(max_bytes=64 * 2**20)  # an A4 page may exceed the worker's 10 MiB
CONCURRENCY = 4
TURN_SIZE = (1000, 400)  # part B's image turns


@dataclass(frozen=True)
class Size:
    name: str
    width: int
    height: int
    font_px: int  # text-dense: lines of this size fill the page


SIZES = (
    Size("640x480", 640, 480, 16),
    Size("1280x960", 1280, 960, 24),
    Size("A4 300dpi", 2480, 3508, 42),  # 10 pt
)


@dataclass(frozen=True)
class Budget:
    """How long each part A measurement runs: at least ``min_n`` images and ``seconds``."""

    seconds: float
    min_n: int
    max_n: int
    pages: int  # distinct pages per size

    @staticmethod
    def of(quick: bool) -> Budget:
        return Budget(3.0, 2, 200, 2) if quick else Budget(20.0, 10, 2000, 6)


def log(line: str) -> None:
    print(line, flush=True)


# --- text images ------------------------------------------------------------------------------


class Sentences:
    """Held-out zh and en sentences of the OCR evaluation set (clinical notes, support messages,
    intents), endless: a paragraph is 1-3 sentences of one language."""

    def __init__(self, seed: int = evalset.SEED) -> None:
        self.fonts = evalset.font_dir()
        self.rng = random.Random(seed)
        pool: dict[str, list[str]] = {}
        for lang in evalset.LANGS:
            pool[lang] = [
                s
                for src in ("clinical", "support", "intent")
                for group in itertools.islice(evalset.sentences(lang, src, seed, self.fonts), 30)
                for s in group
            ]
        self.pool = pool

    def paragraph(self) -> tuple[str, str]:
        lang = self.rng.choice(evalset.LANGS)
        picked = self.rng.sample(self.pool[lang], self.rng.randint(1, 3))
        return lang, ("" if lang == "zh" else " ").join(picked)

    def font(self, lang: str, px: int) -> ImageFont.FreeTypeFont:
        name = self.rng.choice(evalset.FONTS[lang])
        return ImageFont.truetype(str(self.fonts / name), px)


_NO_START = frozenset("，。；：、！？）》”,.;:!?)")  # hangs past the margin instead


def _wrap(text: str, lang: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    """``text`` cut into lines no wider than ``width`` px: at spaces (en), at characters but not
    inside an ASCII run nor before a closing mark (zh)."""
    pieces = re.findall(r"\S+\s*" if lang == "en" else r"[\x21-\x7e]+\s*|.", text)
    lines, cur = [], ""
    for piece in pieces:
        wide = font.getlength((cur + piece).rstrip()) > width
        if cur and wide and piece[0] not in _NO_START:
            lines.append(cur.rstrip())
            cur = ""
        cur += piece
    return [s for s in [*lines, cur.rstrip()] if s]


def page_png(
    size: tuple[int, int], font_px: int, text: Sentences, max_lines: int | None = None
) -> bytes:
    """A light page of dark lines, paragraph after paragraph, until it is full (or
    ``max_lines``); PNG."""
    rng = text.rng
    width, height = size
    margin, step = rng.randint(20, 40), round(font_px * rng.uniform(1.4, 1.7))
    paper = tuple(rng.randint(230, 255) for _ in range(3))
    im = Image.new("RGB", size, paper)
    draw, y, drawn = ImageDraw.Draw(im), margin, 0
    while y + step <= height - margin and (max_lines is None or drawn < max_lines):
        lang, para = text.paragraph()
        font = text.font(lang, font_px)
        for line in _wrap(para, lang, font, width - 2 * margin):
            if y + step > height - margin or (max_lines is not None and drawn >= max_lines):
                break
            ink = tuple(rng.randint(0, 60) for _ in range(3))
            draw.text((margin, y), line, font=font, fill=ink)
            y, drawn = y + step, drawn + 1
        y += step // 2  # between paragraphs
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def turn_pngs(text: Sentences, n: int) -> list[bytes]:
    """Part B's images: 1000x400, 2-4 lines at 26-40 px."""
    return [
        page_png(TURN_SIZE, text.rng.randint(26, 40), text, text.rng.randint(2, 4))
        for _ in range(n)
    ]


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


# --- part A: one image, in-process and through Triton ------------------------------------------


def _summary(lat_ms: list[float], lines: list[int], done: int, wall: float) -> dict[str, Any]:
    return {
        "latency_ms": dist(lat_ms) if lat_ms else None,
        "lines_per_image": round(sum(lines) / len(lines), 1) if lines else None,
        "images": done,
        "images_per_s": round(done / wall, 2) if wall > 0 else None,
    }


Lane = Callable[[int], Awaitable[int]]  # reads image i (of a set, cyclically): its lines


async def measure(lanes: list[Lane], budget: Budget, meter: CpuMeter) -> dict[str, Any]:
    """The first lane one image at a time (latency), then every lane at once (throughput)."""
    lat: list[float] = []
    lines: list[int] = []
    before, start = meter.sample(), time.perf_counter()
    while len(lat) < budget.max_n and (
        len(lat) < budget.min_n or time.perf_counter() - start < budget.seconds
    ):
        t = time.perf_counter()
        lines.append(await lanes[0](len(lat)))
        lat.append((time.perf_counter() - t) * 1000)
    seq = _summary(lat, lines, len(lat), time.perf_counter() - start)
    seq["cpu"] = meter.usage(before, meter.sample(), len(lat))
    counter, deadline = itertools.count(), time.perf_counter() + budget.seconds

    async def loop(lane: Lane) -> int:
        n = 0
        while (i := next(counter)) < budget.max_n and (
            i < budget.min_n or time.perf_counter() < deadline
        ):
            await lane(i)
            n += 1
        return n

    before, start = meter.sample(), time.perf_counter()
    done = sum(await asyncio.gather(*(loop(lane) for lane in lanes)))
    conc = _summary([], [], done, time.perf_counter() - start)
    conc["cpu"] = meter.usage(before, meter.sample(), done)
    return {"sequential": seq, f"concurrency{len(lanes)}": conc}


async def inprocess(
    pngs: list[bytes], warm: bytes, budget: Budget, meter: CpuMeter
) -> dict[str, Any]:
    """``LocalOcr`` on the served networks, one engine per thread (it is not thread-safe);
    ``warm`` is each engine's first image (not measured)."""
    from workers.ocr.local import LocalOcr

    def read(engine: LocalOcr, png: bytes) -> int:
        return len(engine.read(decode_image(png, "image/png", LIMITS).rgb))

    def lane(engine: LocalOcr) -> Lane:
        async def run(i: int) -> int:
            return await asyncio.to_thread(read, engine, pngs[i % len(pngs)])

        return run

    engines = [LocalOcr.installed(REPO_ROOT / "model_repo") for _ in range(CONCURRENCY)]
    for engine in engines:
        read(engine, warm)  # the first inference of a compiled model is slower
    return await measure([lane(e) for e in engines], budget, meter)


async def through_triton(
    endpoint: str, pngs: list[bytes], warm: bytes, budget: Budget, meter: CpuMeter
) -> dict[str, Any]:
    """``ImageReader`` on Triton's ``ocr_det``/``ocr_rec`` (it lets every lane in at once)."""
    from workers.ocr.client import TritonOcrClient
    from workers.ocr.reader import ImageReader
    from workers.retry import Backoff

    client = TritonOcrClient(endpoint, timeout_s=120.0)
    if not await client.ready():
        raise RuntimeError(f"ocr_det/ocr_rec not ready on {endpoint}")
    reader = ImageReader(client, None, LIMITS, Backoff(max_attempts=3), max_inflight=CONCURRENCY)
    atts = [Attachment("page", "image/png", data=_b64(p)) for p in pngs]

    async def read(att: Attachment) -> int:
        (image,) = await reader.read([att])
        return len(image.lines)

    async def one(i: int) -> int:
        return await read(atts[i % len(atts)])

    try:
        first = Attachment("warm", "image/png", data=_b64(warm))
        await asyncio.gather(*(read(first) for _ in range(CONCURRENCY)))  # not measured
        return await measure([one] * CONCURRENCY, budget, meter)
    finally:
        await client.close()


def part_a(ports: Ports, budget: Budget, text: Sentences) -> dict[str, Any]:
    """Each page size, then part B's image turns, in-process and through Triton."""
    settings = settings_from_env(ports.env)
    roots = {"triton": pid_file(ports.triton_pid_file), "bench": os.getpid}
    meter = CpuMeter(roots, self_only=("bench",), jvms=())
    warm = turn_pngs(text, 1)[0]
    out: dict[str, Any] = {"triton": settings.triton_endpoint, "sizes": {}}
    sets = [
        (s.name, [page_png((s.width, s.height), s.font_px, text) for _ in range(budget.pages)])
        for s in SIZES
    ]
    sets.append((f"turn {TURN_SIZE[0]}x{TURN_SIZE[1]}", turn_pngs(text, 4 * budget.pages)))
    for name, pngs in sets:
        kib = sum(len(p) for p in pngs) / len(pngs) / 1024
        log(f"  {name}: {len(pngs)} images, {kib:.0f} KiB PNG each on average")
        row: dict[str, Any] = {"png_kib": round(kib)}
        row["inprocess"] = asyncio.run(inprocess(pngs, warm, budget, meter))
        log("    " + _a_line("in-process", row["inprocess"]))
        endpoint = settings.triton_endpoint
        row["triton"] = asyncio.run(through_triton(endpoint, pngs, warm, budget, meter))
        log("    " + _a_line("Triton", row["triton"]))
        out["sizes"][name] = row
    return out


def _a_line(tag: str, res: dict[str, Any]) -> str:
    seq, conc = res["sequential"], res[f"concurrency{CONCURRENCY}"]
    lat = seq["latency_ms"]
    return (
        f"{tag:<10} 1 at a time: p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms "
        f"(n={seq['images']}, {seq['lines_per_image']} lines/image); "
        f"{CONCURRENCY} at a time: {conc['images_per_s']:.2f} images/s"
    )


# --- part B: image turns among text turns, end to end ------------------------------------------


class ImageTurns:
    """Sends image turns (inline PNG, empty text; one in five with a typed line too)."""

    def __init__(self, session: Session, pngs: list[bytes]) -> None:
        self.s = session
        self.data = [_b64(p) for p in pngs]
        self.producer = AIOKafkaProducer(
            bootstrap_servers=session.target.settings.bootstrap_servers,
            acks="all",
            max_request_size=4 * 2**20,
        )

    async def send(
        self, tag: str, convs: Conversations, *, rate: float | None, count: int
    ) -> list[Sent]:
        """``count`` turns at ``rate``/s (open loop), or at once when ``rate`` is None."""
        sent: list[Sent] = []
        futures: list[asyncio.Future[Any]] = []
        start = time.monotonic()
        for i in range(count):
            behind = 0.0
            if rate is not None:
                due = start + i / rate
                if (delay := due - time.monotonic()) > 0.0005:
                    await asyncio.sleep(delay)
                behind = max(0.0, time.monotonic() - due) * 1000
            cid, turn = convs.next()
            event_id, ts = f"{self.s.run_id}.{tag}.{i:07d}", time.time()
            value = {
                "schema": "inferstream.conversation/v1",
                "event_id": event_id,
                "conversation_id": cid,
                "tenant": TENANT,
                "user_id": "bench-user",
                "text": "please read the attached page" if i % 5 == 4 else "",
                "ts": ts,
                "metadata": {"turn": turn, "department": "support", "role": "agent"},
                "attachments": [
                    {"id": "page", "media_type": "image/png", "data": self.data[i % len(self.data)]}
                ],
            }
            topic = self.s.target.settings.topic_in
            futures.append(await self.producer.send(topic, orjson.dumps(value), key=cid.encode()))
            sent.append(Sent(event_id, ts, behind))
        for result in await asyncio.gather(*futures, return_exceptions=True):
            if isinstance(result, BaseException):
                raise RuntimeError(f"an image turn was not sent: {result!r}")
        self.s.load.sent_log.extend(sent)
        return sent


def ocr_counts(web_port: int) -> dict[str, float]:
    """The worker's OCR counters: images by outcome, lines read, seconds per OCR step."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=5).read()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == "inferstream_ocr_images_total":
                key = f"images_{sample.labels.get('outcome')}"
                out[key] = out.get(key, 0.0) + sample.value
            elif sample.name == "inferstream_ocr_lines_total":
                out["lines"] = out.get("lines", 0.0) + sample.value
            elif sample.name in ("inferstream_ocr_seconds_sum", "inferstream_ocr_seconds_count"):
                key = f"{sample.labels.get('step')}_{sample.name.rsplit('_', 1)[1]}"
                out[key] = out.get(key, 0.0) + sample.value
    return out


async def settle(s: Session) -> None:
    """As Session.phase does: no backlog shared between phases (waits drain_max_s at most)."""
    deadline = time.monotonic() + s.plan.drain_max_s
    while s.unanswered() and time.monotonic() < deadline:
        if not s.target.alive():
            break
        await asyncio.sleep(0.1)


def _summarise(
    s: Session, tag: str, rate: float | None, sent: list[Sent], ok: bool
) -> dict[str, Any]:
    return Phase(
        tag=tag,
        offered=rate,
        sent=sent,
        results=s.collector.results,
        dead=s.collector.dead,
        drained=ok,
        batch_size=s.collector.batch_size,
        warmup_s=s.plan.rate_warmup_s if rate else 0.0,
    ).summary()


async def mixed(
    s: Session,
    images: ImageTurns,
    tag: str,
    rate: float | None,
    image_rate: float | None,
    n_images: int,
    shared: bool = False,
) -> dict[str, Any]:
    """Text turns at ``rate`` for plan.rate_s (none when None) and ``n_images`` image turns at
    ``image_rate`` (all at once when None), in conversations of their own or (``shared``) in the
    text turns' conversations, where a text turn behind an image turn of its conversation waits
    for it by design; each kind summarised on its own (all at once: the images' drain rate is
    the worker's image throughput)."""
    await settle(s)
    assert s.cpu is not None
    web, itag = s.target.settings.web_port, f"{tag}img"
    before, counts = s.cpu.sample(), ocr_counts(web)
    convs = Conversations(f"{s.run_id}-{tag}")
    pics = images.send(
        itag, convs if shared else Conversations(f"{s.run_id}-{itag}"), rate=image_rate,
        count=n_images,
    )  # fmt: skip
    sent_text: list[Sent] = []
    if rate is None:
        sent_img = await pics
    else:
        texts = s.load.send(tag, s.pool.texts(64), convs, rate=rate, duration_s=s.plan.rate_s)
        sent_text, sent_img = await asyncio.gather(texts, pics)
    kinds = {"text": (tag, rate, sent_text), "image": (itag, image_rate, sent_img)}
    out: dict[str, Any] = {}
    for kind, (t, r, sent) in kinds.items():
        if sent:
            wait_s = s.plan.drain_max_s + 2.0 * n_images  # a backlog of images drains slowly
            ok = await s.collector.wait(f"{s.run_id}.{t}", len(sent), wait_s, s.target.alive, 60.0)
            out[kind] = _summarise(s, t, r, sent, ok)
            log(f"    {_b_line(t, out[kind])}")
    got = {k: v - counts.get(k, 0.0) for k, v in ocr_counts(web).items()}
    out |= {"ocr_counts": got, "ocr_step_ms": _step_ms(got)}
    out["cpu"] = s.cpu.usage(before, s.cpu.sample(), len(sent_text) + len(sent_img))
    return out


def _step_ms(counts: dict[str, float]) -> dict[str, float]:
    """Mean milliseconds per image of each OCR step (decode, detect, recognize, total)."""
    return {
        k.removesuffix("_sum"): round(1000 * v / counts[f"{k.removesuffix('_sum')}_count"], 1)
        for k, v in counts.items()
        if k.endswith("_sum") and counts.get(f"{k.removesuffix('_sum')}_count")
    }


def _b_line(tag: str, p: dict[str, Any]) -> str:
    lat = p["latency_ms"]
    offered = "at once" if p["offered_per_s"] is None else f"{p['offered_per_s']:.1f}/s"
    odd = "" if p["drained"] and p["answered"] == p["sent"] else "  (NOT all answered)"
    if p["dead_letters"]:
        odd += f"  (dead letters: {p['dead_letter_reasons']})"
    return (
        f"{tag:<22} offered {offered:>8}: {p['answered']}/{p['sent']} answered, "
        f"{p['throughput_per_s']:.1f}/s, p50 {lat.get('p50', math.nan):.0f} ms, "
        f"p99 {lat.get('p99', math.nan):.0f} ms{odd}"
    )


def part_b(
    plan: Plan,
    ports: Ports,
    fraction: float,
    share: float,
    text: Sentences,
    shared: bool,
    text_rate: float | None = None,
) -> dict[str, Any]:
    services = Services(ports)
    services.start(log)
    pngs = turn_pngs(text, 32)
    log(f"  image turns: {len(pngs)} PNGs of {TURN_SIZE[0]}x{TURN_SIZE[1]}, "
        f"{sum(map(len, pngs)) / len(pngs) / 1024:.0f} KiB each on average")  # fmt: skip
    try:
        worker = Worker(ports, plan.worker_env, name="bench-ocr")

        async def body(s: Session) -> dict[str, Any]:
            images = ImageTurns(s, pngs)
            await images.producer.start()
            try:
                flat = await s.phase("flat64", flat=True)
                rate = text_rate or rate_at(fraction, flat["throughput_per_s"])
                if rate is None:
                    raise RuntimeError("no flat-out figure to take a fraction of")
                image_rate = share * rate
                # the worker's first image turns (its OCR client, Triton's first calls)
                await mixed(s, images, "ocrwarm", None, None, 4)
                alone = await mixed(s, images, "alone", None, None, plan.warmup_n // 25)
                base = await s.phase(f"text{rate:.0f}", rate=rate)
                n_images = max(1, round(image_rate * plan.rate_s))
                mix = await mixed(s, images, f"mix{rate:.0f}", rate, image_rate, n_images, shared)
            finally:
                await images.producer.stop()
            return {
                "text_rate": rate,
                "shared": shared,
                "image_rate": image_rate,
                "flat": flat,
                "base": base,
                "images_alone": alone,
                "mixed": mix,
            }

        return run_target(worker, plan, TextPool(), log, body)
    finally:
        services.stop()


# --- report -----------------------------------------------------------------------------------


def _cpu(cpu: dict[str, Any] | None) -> str:
    per = (cpu or {}).get("cpu_ms_per_event") or {}
    return ", ".join(f"{k} {v:.2f}" for k, v in per.items() if not k.endswith("_jit"))


def report_a(res: dict[str, Any]) -> list[str]:
    lines = [
        f"Part A: one image, decode included; Triton at {res['triton']}",
        "",
        "| size | engine | p50 / p99 ms, 1 at a time | lines | images/s, 4 at a time |"
        " CPU ms per image, 4 at a time |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in res["sizes"].items():
        for engine in ("inprocess", "triton"):
            seq, conc = row[engine]["sequential"], row[engine][f"concurrency{CONCURRENCY}"]
            lat = seq["latency_ms"]
            lines.append(
                f"| {name} | {engine} | {lat['p50']:.0f} / {lat['p99']:.0f} (n={seq['images']})"
                f" | {seq['lines_per_image']} | {conc['images_per_s']:.2f} | {_cpu(conc['cpu'])} |"
            )
        ip, tr = row["inprocess"], row["triton"]
        p50 = tr["sequential"]["latency_ms"]["p50"] / ip["sequential"]["latency_ms"]["p50"]
        thr = tr[f"concurrency{CONCURRENCY}"]["images_per_s"]
        thr /= ip[f"concurrency{CONCURRENCY}"]["images_per_s"]
        lines.append(f"| {name} | Triton / in-process | p50 {p50:.2f}x | | {thr:.2f}x | |")
    return lines


def report_b(res: dict[str, Any], share: float) -> list[str]:
    if res.get("error"):
        return [f"Part B failed: {res['error']}", res.get("log_tail", "")]
    base, mix = res["base"], res["mixed"]
    text, image = mix["text"], mix["image"]
    p50 = text["latency_ms"]["p50"] / base["latency_ms"]["p50"]
    p99 = text["latency_ms"]["p99"] / base["latency_ms"]["p99"]
    flat = res["flat"]["throughput_per_s"]
    counts, alone = mix["ocr_counts"], res["images_alone"]
    capacity = alone["image"]["throughput_per_s"]
    over = res["image_rate"] > capacity
    verdict = "meets" if p99 <= 1.5 else "MISSES"
    of = f"{res['text_rate'] / flat:.0%}" if flat else "?"
    return [
        f"Part B: one worker; text flat out {flat:.0f}/s, phases at {of} of that "
        f"({res['text_rate']:.0f}/s), the second with image turns at {share:.0%} of it, in "
        f"{'the same' if res.get('shared') else 'other'} conversations "
        f"({res['image_rate']:.1f}/s, {TURN_SIZE[0]}x{TURN_SIZE[1]} PNG, 2-4 lines)",
        "",
        "| phase | turns | answered | p50 / p99 ms | CPU ms per event (all turns of the phase) |",
        "|---|---|---|---|---|",
        _row("text only", "text", base, base["cpu"]),
        _row("text + images", "text", text, mix["cpu"]),
        _row("text + images", "image", image, None),
        _row("images alone, all at once", "image", alone["image"], alone["cpu"]),
        "",
        f"text turns with images / without: p50 {p50:.2f}x, p99 {p99:.2f}x "
        f"({verdict} issue 19's p99 within 1.5x)",
        f"images the worker read: {counts.get('images_read', 0):.0f} of {image['sent']}, "
        f"{counts.get('lines', 0):.0f} lines; image turns dead-lettered: {image['dead_letters']}",
        f"extra CPU ms per image turn: {_extra_cpu(base, mix)}",
        f"the worker's OCR steps, mean ms per image, phase 2: {_steps(mix['ocr_step_ms'])}; "
        f"images alone: {_steps(alone['ocr_step_ms'])}",
        f"the worker reads {capacity:.2f} images/s with no text turns; phase 2 offered "
        f"{res['image_rate']:.1f}/s"
        + (": MORE than it can read, image turns queue" if over else ""),
    ]


def _steps(ms: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in ms.items()) or "-"


def _row(phase: str, kind: str, p: dict[str, Any], cpu: dict[str, Any] | None) -> str:
    lat = p["latency_ms"]
    return (
        f"| {phase} | {kind} | {p['answered']}/{p['sent']} | {lat.get('p50', math.nan):.0f} / "
        f"{lat.get('p99', math.nan):.0f} | {_cpu(cpu) if cpu else ''} |"
    )


def _extra_cpu(base: dict[str, Any], mix: dict[str, Any]) -> str:
    """Per process: the mixed phase's CPU less what its text turns cost in the text-only
    phase, per image turn."""
    b = (base.get("cpu") or {}).get("cpu_ms_per_event") or {}
    m = (mix.get("cpu") or {}).get("cpu_ms_per_event") or {}
    n_text, n_img = mix["text"]["sent"], mix["image"]["sent"]
    parts = []
    for k in m:
        if k in b and not k.endswith("_jit") and n_img:
            extra = (m[k] * (n_text + n_img) - b[k] * n_text) / n_img
            parts.append(f"{k} {extra:.1f}")
    noisy = " (few image turns: a rough figure)" if n_img < 20 else ""
    return (", ".join(parts) or "-") + noisy


@click.command()
@click.option("--quick", is_flag=True, help="Short phases (Plan.quick(), 4 s per OCR figure).")
@click.option("--part", type=click.Choice(["a", "b", "both"]), default="both", show_default=True)
@click.option(
    "--text-fraction",
    type=float,
    default=0.5,
    show_default=True,
    help="Part B's text rate, as a fraction of its flat-out rate.",
)
@click.option("--text-rate", type=float, default=None,
              help="Part B's text rate in turns/s (instead of --text-fraction); "
              "20 with --image-share 0.1 is issue 19's 500 text + 50 image turns.")  # fmt: skip
@click.option("--image-share", type=float, default=0.1, show_default=True,
              help="Image turns per text turn in part B's second phase.")  # fmt: skip
@click.option("--shared-conversations", is_flag=True,
              help="Part B's image turns in the text turns' conversations.")  # fmt: skip
@click.option("--kafka-port", type=int, default=45092, show_default=True)
@click.option("--triton-port", type=int, default=44000, show_default=True)
@click.option("--web-port", type=int, default=44066, show_default=True)
@click.option("--run-dir", type=click.Path(path_type=Path), default=REPO_ROOT / ".run" / "bench")
def main(
    quick: bool,
    part: str,
    text_fraction: float,
    text_rate: float | None,
    image_share: float,
    shared_conversations: bool,
    kafka_port: int,
    triton_port: int,
    web_port: int,
    run_dir: Path,
) -> None:
    for key in [k for k in os.environ if k.startswith("INFERSTREAM_")]:
        del os.environ[key]  # every setting of the processes under test is set explicitly
    os.environ.update(clean_environ())
    quiet_kafka_logs()
    plan = Plan.quick() if quick else Plan.full()
    ports = Ports(kafka_port, triton_port, web_port, run_dir.resolve())
    began = time.monotonic()
    res: dict[str, Any] = {"mode": plan.mode}
    res |= {"text_fraction": text_fraction, "text_rate": text_rate, "image_share": image_share}
    res |= {"shared_conversations": shared_conversations}
    text = Sentences()
    settings = settings_from_env(ports.env)
    started = not local.port_open(settings.triton_http_port)
    local.triton(settings, "start")  # part B's stack reuses it
    log(f"{'started' if started else 'reusing'} Triton on port {settings.triton_http_port}")
    try:
        if part in ("a", "both"):
            log("Part A: in-process vs Triton, one image")
            res["a"] = part_a(ports, Budget.of(quick), text)
        if part in ("b", "both"):
            log("Part B: image turns among text turns, one worker")
            res["b"] = part_b(
                plan, ports, text_fraction, image_share, text, shared_conversations, text_rate
            )
    finally:
        if started:
            local.triton(settings, "stop")
    res["minutes"] = round((time.monotonic() - began) / 60, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=1, default=str))
    log("")
    lines = [*report_a(res["a"]), ""] if "a" in res else []
    lines += report_b(res["b"], image_share) if "b" in res else []
    for line in lines:
        log(line)
    log(f"wrote {OUT} in {res['minutes']} min")
    if (res.get("b") or {}).get("error"):
        raise click.ClickException(res["b"]["error"])


if __name__ == "__main__":
    main()
