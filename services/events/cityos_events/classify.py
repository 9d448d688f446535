"""Which of the city's categories a report is, with a confidence.

The model: character 1–3-grams (Chinese has no spaces; character n-grams need no word
segmenter and catch 井盖, 油烟, 渣土车 as they are), TF-IDF weighted with sublinear term
frequency, and a multinomial logistic regression. Linear, so each category's weights on
n-grams can be read and explained; probabilities are what a threshold can be set on; it
retrains in a second or two from a city's own labelled history. On top, keyword rules a city
edits (`data/rules.json`): a matching rule decides the category, for urgent categories and
words the model has not learnt. Below the threshold, or for text that is not Chinese, the case
waits for an operator.
"""

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from cityos_contracts.cases import CategoryScore, Classification
from cityos_events.config import EventsSettings
from cityos_kit.city import City

# What channels and callers wrap every complaint in: carries no category, so it is dropped
# before the n-grams are counted (as are place names, which say where, not what).
BOILERPLATE = ("市民来电反映", "市民来电", "网格员上报", "网格员巡查发现", "110转来",
               "市民通过微信小程序反映", "我要反映一个问题", "请尽快处理", "希望有关部门管一管",
               "谢谢", "您好", "投诉")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_WORD = re.compile(r"[^\W\d_\u3400-\u4dbf\u4e00-\u9fff]+")


@dataclass(frozen=True)
class Rule:
    id: str
    category: str
    pattern: re.Pattern[str]
    confidence: float = 0.9
    unless: re.Pattern[str] | None = None

    def matches(self, text: str) -> bool:
        return bool(self.pattern.search(text)) and not (self.unless and self.unless.search(text))


def load_rules(path: Path, categories: Iterable[str]) -> list[Rule]:
    known = set(categories)
    rules = []
    for r in json.loads(path.read_text(encoding="utf-8"))["rules"]:
        if r["category"] not in known:
            raise ValueError(f"rule {r['id']} names unknown category {r['category']}")
        rules.append(Rule(r["id"], r["category"], re.compile(r["pattern"]),
                          float(r.get("confidence", 0.9)),
                          re.compile(r["unless"]) if r.get("unless") else None))
    return rules


def normalise(text: str) -> str:
    """Full-width to half-width, lower case, no spaces (they carry nothing in Chinese)."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).lower()


def is_chinese(text: str) -> bool:
    """Most of the text is Chinese: its characters outnumber the words of other scripts."""
    chinese = len(_CJK.findall(text))
    return chinese > 0 and chinese >= len(_WORD.findall(text))


def noise_pattern(places: Iterable[str]) -> re.Pattern[str]:
    phrases = sorted({normalise(p) for p in (*places, *BOILERPLATE) if p}, key=len, reverse=True)
    return re.compile("|".join(re.escape(p) for p in phrases))


class Classifier:
    def __init__(self, vectorizer: TfidfVectorizer, model: LogisticRegression,
                 rules: Sequence[Rule]) -> None:
        self.vectorizer = vectorizer
        self.model = model
        self.rules = list(rules)
        self.classes: list[str] = [str(c) for c in model.classes_]
        # The fitted model as plain arrays: scoring one text this way skips scikit-learn's
        # per-call validation and sparse-matrix building, most of the cost for a single text.
        self._analyse = vectorizer.build_analyzer()
        self._vocabulary: dict[str, int] = vectorizer.vocabulary_
        self._idf: np.ndarray = vectorizer.idf_
        self._weights = np.ascontiguousarray(model.coef_.T)  # features × classes
        self._intercept: np.ndarray = model.intercept_
        if len(self.classes) < 3 or not (vectorizer.sublinear_tf and vectorizer.use_idf
                                          and vectorizer.norm == "l2"):
            raise ValueError("the classifier expects a multinomial model on sublinear, "
                             "l2-normalised TF-IDF features")

    @classmethod
    def train(cls, examples: Sequence[tuple[str, str]], rules: Sequence[Rule] = (),
              places: Iterable[str] = ()) -> "Classifier":
        """Fit on (text, category) pairs; `places` (gazetteer names) are not category words."""
        noise = noise_pattern(places)

        def preprocess(text: str) -> str:
            return noise.sub("", normalise(text))

        vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True,
                                     preprocessor=preprocess, min_df=1)
        features = vectorizer.fit_transform([t for t, _ in examples])
        # Weak regularisation: the examples are clean, and sharper probabilities make the
        # operator threshold meaningful.
        model = LogisticRegression(C=20.0, max_iter=3000)
        model.fit(features, [c for _, c in examples])
        return cls(vectorizer, model, rules)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's probability of each class (as the model's `predict_proba`)."""
        return np.stack([self._probabilities(t) for t in texts])

    def _probabilities(self, text: str) -> np.ndarray:
        counts: dict[int, int] = {}
        for gram in self._analyse(text):
            column = self._vocabulary.get(gram)
            if column is not None:
                counts[column] = counts.get(column, 0) + 1
        scores = self._intercept.copy()
        if counts:
            columns = np.fromiter(counts, dtype=np.intp, count=len(counts))
            weights = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64,
                                                count=len(counts)))) * self._idf[columns]
            weights /= np.sqrt(weights @ weights)
            scores += weights @ self._weights[columns]
        scores = np.exp(scores - scores.max())
        result: np.ndarray = scores / scores.sum()
        return result

    def classify(self, text: str, top: int = 5) -> Classification:
        if not is_chinese(text):
            return Classification(category=None, confidence=0.0, method="none",
                                  note="text is not Chinese: an operator classifies it")
        probs = self._probabilities(text)
        order = np.argsort(-probs)[:top]
        alternatives = [CategoryScore(self.classes[i], round(float(probs[i]), 4)) for i in order]
        normalised = normalise(text)
        matched = [r for r in self.rules if r.matches(normalised)]
        if matched:
            # Several rules: the one whose category the model finds likeliest.
            rule = max(matched, key=lambda r: (self._probability(probs, r.category),
                                               r.confidence))
            confidence = max(rule.confidence, self._probability(probs, rule.category))
            return Classification(category=rule.category, confidence=round(confidence, 4),
                                  method="rule", rule=rule.id, alternatives=alternatives)
        best = alternatives[0]
        return Classification(category=best.category, confidence=best.probability,
                              method="model", alternatives=alternatives)

    def _probability(self, probs: np.ndarray, category: str) -> float:
        try:
            return float(probs[self.classes.index(category)])
        except ValueError:
            return 0.0

    def explain(self, category: str, top: int = 15) -> list[tuple[str, float]]:
        """The n-grams that weigh most for a category (what an operator can be shown)."""
        row = self.model.coef_[self.classes.index(category)]
        names = self.vectorizer.get_feature_names_out()
        return [(str(names[i]), round(float(row[i]), 3)) for i in np.argsort(-row)[:top]]


_TRAINED: dict[tuple[Any, ...], Classifier] = {}


def for_city(city: City, places: list[str], settings: EventsSettings) -> Classifier:
    """The city's classifier: the shipped examples plus the city's own, its rules; trained
    once per process and data set."""
    from cityos_events import corpus

    key = (str(city.directory), settings.training, settings.rules)
    if key not in _TRAINED:
        codes = [c["code"] for c in city.categories]
        extra = corpus.read_tsv(settings.training) if settings.training else []
        examples = corpus.training_examples(city.categories, places, extra)
        _TRAINED[key] = Classifier.train(examples, load_rules(settings.rules, codes), places)
    return _TRAINED[key]
