import numpy as np

from workers.inference.entities import (
    Entity,
    decode_bio,
    entity_records,
    group_entities,
    text_language,
)
from workers.inference.tokenizer import ModelTokenizer

LABELS = ["O", "B-PHONE", "I-PHONE", "B-SYMPTOM", "I-SYMPTOM"]


def logits_for(tags: list[str]) -> np.ndarray:
    out = np.full((len(tags), len(LABELS)), -5.0, dtype=np.float32)
    for i, tag in enumerate(tags):
        out[i, LABELS.index(tag)] = 5.0
    return out


def test_bio_spans_map_to_character_offsets() -> None:
    text = "I have chest pain, call 555-123-4567"
    enc = ModelTokenizer(64).encode([text])
    offsets = enc.offsets[0]
    words = [text[a:b] for a, b in offsets]
    tags = ["O"] * len(offsets)
    first = words.index("che")  # ▁che st: the offsets leave the space out
    tags[first] = "B-SYMPTOM"
    tags[first + 1] = tags[words.index("pain")] = "I-SYMPTOM"
    first = words.index("555")
    tags[first] = "B-PHONE"
    for i in range(first + 1, len(offsets) - 1):  # "-12", "3-4", "567"; not </s>
        tags[i] = "I-PHONE"
    ents = decode_bio(logits_for(tags), offsets, LABELS)
    assert [(e.type, text[e.start : e.end]) for e in ents] == [
        ("SYMPTOM", "chest pain"),
        ("PHONE", "555-123-4567"),
    ]
    assert all(0.99 < e.confidence <= 1.0 for e in ents)


def test_special_tokens_and_stray_inside_tags() -> None:
    offsets = [(0, 0), (0, 4), (5, 9), (0, 0)]
    ents = decode_bio(logits_for(["B-PHONE", "I-SYMPTOM", "I-PHONE", "I-PHONE"]), offsets, LABELS)
    # [CLS]/[SEP] never carry entities; an I- tag of another type starts a new entity
    assert [(e.type, e.start, e.end) for e in ents] == [("SYMPTOM", 0, 4), ("PHONE", 5, 9)]


def test_entities_never_start_or_end_with_sentence_punctuation() -> None:
    text = "Book Dr. Chen, or call (279) 968-5966. 联系电话：+86 138 0013 8000。"
    spans = {  # what a model's token tags may cover: the "." before Chen, the "," after it, ...
        "PERSON": (text.index(". Chen"), text.index(",") + 1),
        "PHONE": (text.index("(279)"), text.index("5966") + 5),
        "ID": (text.index("."), text.index(".") + 1),  # nothing but a full stop
    }
    zh_phone = (text.index("：+86"), len(text))
    offsets = [spans["PERSON"], spans["PHONE"], spans["ID"], zh_phone]
    labels = ["O", "B-PERSON", "B-PHONE", "B-ID"]
    tags = ["B-PERSON", "B-PHONE", "B-ID", "B-PHONE"]
    logits = np.full((4, 4), -5.0, dtype=np.float32)
    for i, tag in enumerate(tags):
        logits[i, labels.index(tag)] = 5.0
    untrimmed = decode_bio(logits, offsets, labels)
    assert text[untrimmed[0].start : untrimmed[0].end] == ". Chen,"
    ents = decode_bio(logits, offsets, labels, text)
    assert [(e.type, text[e.start : e.end]) for e in ents] == [
        ("PERSON", "Chen"),
        ("PHONE", "(279) 968-5966"),
        ("PHONE", "+86 138 0013 8000"),
    ]  # the lone "." is dropped; a phone keeps its "(" and "+"


def test_grouped_view_uses_the_text_language_and_original_offsets() -> None:
    text = "患者主诉胸痛三天，服用阿司匹林100mg"
    ents = [Entity("DRUG", 11, 15, 0.9), Entity("SYMPTOM", 4, 6, 0.8), Entity("DOSE", 15, 20, 0.7)]
    grouped = group_entities(text, ents)
    assert list(grouped) == ["症状", "药物", "剂量"]  # in document order
    assert grouped["药物"] == [{"text": "阿司匹林", "start": 11, "end": 15, "confidence": 0.9}]
    english = group_entities("Chest pain since Monday", [Entity("SYMPTOM", 0, 10, 0.9)])
    assert english == {
        "symptoms": [{"text": "Chest pain", "start": 0, "end": 10, "confidence": 0.9}]
    }
    assert text_language("") == "en" and text_language("请联系张伟 please") == "zh"


def test_entity_records_hide_the_words_of_masked_spans() -> None:
    text = "call Li Wei on 555-1234"
    ents = [Entity("PERSON", 5, 11, 0.9), Entity("PHONE", 15, 23, 0.9)]
    records = entity_records(text, ents, hidden=[(15, 23)])
    assert records[0]["text"] == "Li Wei" and records[1]["text"] is None
    assert (records[1]["start"], records[1]["end"]) == (15, 23)
