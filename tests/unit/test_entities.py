import numpy as np

from workers.inference.entities import decode_bio
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
