"""The labelled examples the classifier learns from, and the split it is measured on.

`data/complaints.tsv` holds handwritten complaints, twelve per category. Every fourth one of
each category is held out: never trained on, not even as a variant, so the accuracy we report
is on phrasings the model has not seen. Training examples are the remaining complaints, each
also dressed the way channels dress them (a hotline operator's "市民来电反映：", a place name,
a closing plea) so the model learns to ignore that dressing, plus the city's own category
descriptions and example phrasings, plus whatever labelled history the city adds.
"""

import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cityos_events.config import DATA

PREFIXES = ("", "市民来电反映：", "网格员上报：", "您好，", "投诉：", "我要反映一个问题，",
            "市民通过微信小程序反映，", "110转来：", "")
PLACES = ("{place}", "在{place}附近，", "{place}这边", "{place}", "")
SUFFIXES = ("", "，请尽快处理。", "，希望有关部门管一管！", "，已经好几天了。", "，谢谢！", "。", "")
HOLD_OUT_EVERY = 4


def handwritten(path: Path = DATA / "complaints.tsv") -> list[tuple[str, str]]:
    """(category, text) rows of a TSV file; `#` lines are comments."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            category, text = line.split("\t", 1)
            rows.append((category.strip(), text.strip()))
    return rows


def split(rows: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, held out): every fourth row of each category is held out."""
    seen: dict[str, int] = {}
    train: list[tuple[str, str]] = []
    test: list[tuple[str, str]] = []
    for category, text in rows:
        index = seen.get(category, 0)
        seen[category] = index + 1
        (test if index % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1 else train).append((category, text))
    return train, test


def dress(text: str, rng: random.Random, places: Sequence[str]) -> str:
    """The text as a channel might carry it: a prefix, a place, a closing."""
    place = rng.choice(PLACES).format(place=rng.choice(places)) if places else ""
    return f"{rng.choice(PREFIXES)}{place}{text}{rng.choice(SUFFIXES)}"


def training_examples(categories: Iterable[dict[str, Any]], places: Sequence[str],
                      extra: Sequence[tuple[str, str]] = (), variants: int = 3,
                      seed: int = 7) -> list[tuple[str, str]]:
    """(text, category) pairs to train on: the training split, plain and dressed, the city's
    category descriptions and examples, and `extra` (the city's labelled history)."""
    rng = random.Random(seed)
    train, _ = split(handwritten())
    examples = []
    for category, text in [*train, *extra]:
        examples.append((text, category))
        examples += [(dress(text, rng, places), category) for _ in range(variants)]
    for c in categories:
        examples.append((c["description"], c["code"]))
        examples.append((c["name"], c["code"]))
        examples += [(e, c["code"]) for e in c.get("examples", [])]
    return examples


def held_out_examples(places: Sequence[str], seed: int = 11) -> list[tuple[str, str]]:
    """(text, category) pairs never trained on, dressed once like real input."""
    rng = random.Random(seed)
    _, test = split(handwritten())
    return [(dress(text, rng, places), category) for category, text in test]


def read_tsv(path: Path) -> list[tuple[str, str]]:
    """A city's own labelled examples (`category<TAB>text`)."""
    return handwritten(path)
