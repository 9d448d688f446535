"""Classification into the city's categories: accuracy on complaints never trained on, the
keyword rules, and what an operator must look at."""

import json

import pytest

from cityos_events import corpus
from cityos_events.classify import Classifier, for_city, is_chinese
from cityos_events.config import DATA, EventsSettings
from cityos_kit.city import City
from cityos_kit.config import load_settings

ACCURACY_FLOOR = 0.75


@pytest.fixture(scope="module")
def places() -> list[str]:
    return [p["name"] for p in json.loads((DATA / "gazetteer.json").read_text())["places"]]


@pytest.fixture(scope="module")
def classifier(places: list[str]) -> Classifier:
    return for_city(City(load_settings("events").city_dir), places, EventsSettings())


def test_accuracy_on_the_held_out_split(classifier: Classifier, places: list[str]) -> None:
    held_out = corpus.held_out_examples(places)
    trained = {t for t, _ in corpus.training_examples([], places)}
    assert not {t for t, _ in held_out} & trained, "held-out complaints leaked into training"
    assert len({c for _, c in held_out}) == 33
    results = [(classifier.classify(text), category) for text, category in held_out]
    accuracy = sum(r.category == c for r, c in results) / len(results)
    threshold = EventsSettings().classify_threshold
    confident = [(r, c) for r, c in results if r.confidence >= threshold]
    auto_accuracy = sum(r.category == c for r, c in confident) / len(confident)
    print(f"\nclassification: {len(results)} held-out complaints, accuracy {accuracy:.3f}; "
          f"{len(confident) / len(results):.0%} above the {threshold} threshold, classified "
          f"automatically with accuracy {auto_accuracy:.3f}; the rest wait for an operator")
    assert accuracy >= ACCURACY_FLOOR
    assert auto_accuracy >= 0.85


def test_rules_decide_urgent_categories(classifier: Classifier) -> None:
    found = classifier.classify("三楼楼道里一股很浓的煤气味，邻居都不敢开火")
    assert (found.category, found.method, found.rule) == ("0801", "rule", "gas-smell")
    assert found.confidence >= 0.95
    assert classifier.classify("电线杆上贴满了小广告").rule == "flyers"
    # `unless` keeps a rule from firing on the wrong thing.
    assert classifier.classify("汽车轮胎漏气了停在路边").rule != "gas-smell"


def test_text_that_is_not_chinese_goes_to_an_operator(classifier: Classifier) -> None:
    assert not is_chinese("There is a big pothole on Renmin Road")
    assert is_chinese("人民路上有个大坑 near the bus stop")
    found = classifier.classify("There is a big pothole on Renmin Road")
    assert (found.category, found.method) == (None, "none") and "not Chinese" in found.note


def test_the_model_can_be_explained(classifier: Classifier) -> None:
    grams = [g for g, _ in classifier.explain("0602", top=30)]
    assert any("油烟" in g or "烟" in g for g in grams)


def test_the_fast_scoring_is_the_models_own(classifier: Classifier, places: list[str]) -> None:
    texts = [t for t, _ in corpus.held_out_examples(places)[:200]] + ["no chinese", "", "垃圾"]
    expected = classifier.model.predict_proba(classifier.vectorizer.transform(texts))
    assert abs(classifier.probabilities(texts) - expected).max() < 1e-9
