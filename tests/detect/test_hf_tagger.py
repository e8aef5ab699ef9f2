"""The Hugging Face token-classification adapter, on tiny BERT models built offline in a temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from dpfusion_chains.core.detect import make_detector  # noqa: E402
from dpfusion_chains.core.detectors.hf_tagger import HFTokenClassifierDetector, decode_tags, expand_to_words, split_label  # noqa: E402
from dpfusion_chains.core.detectors.union import UnionDetector  # noqa: E402

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-BADGE"]
WORDS = ["patient", "jane", "roe", "was", "seen", "in", "leeds", "on", "march", "badge", "then", "went", "home"]
TEXT = "Patient Jane Roe was seen in Leeds on 12 March, then went home."


def _save_model(directory: Path, bias: list[float] | None, seed: int = 0) -> Path:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz0123456789.,:-"]
    vocab += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(vocab))
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True)
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={label: i for i, label in enumerate(LABELS)},
    )
    torch.manual_seed(seed)
    model = transformers.BertForTokenClassification(config)
    if bias is not None:
        # A constant classifier: every token gets the same label distribution, so the expected
        # spans are known exactly.
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor(bias))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-ner")
    return {
        "random": _save_model(root / "random", None),
        "person": _save_model(root / "person", [0, 6, 0, 0, 0, 0]),
        "outside": _save_model(root / "outside", [6, 0, 0, 0, 0, 0]),
        "inside_loc": _save_model(root / "inside_loc", [0, 0, 0, 0, 6, 0]),
        "weak_person": _save_model(root / "weak_person", [0, 1, 0, 0, 0, 0]),
        "badge": _save_model(root / "badge", [0, 0, 0, 0, 0, 6]),
    }


def words(text: str) -> list[str]:
    import re

    return re.findall(r"[^\W_]+", text)


def test_split_label_and_decode_tags() -> None:
    assert split_label("B-PER") == ("B", "PER")
    assert split_label("i_loc") == ("I", "loc")
    assert split_label("PER") == ("", "PER")
    assert split_label("O") == ("O", "")
    tags = [("B-PER", 0.9, 0, 4), ("I-PER", 0.7, 5, 8), ("O", 0.9, 9, 12), ("I-LOC", 0.8, 13, 18), ("B-LOC", 0.6, 19, 22), ("I-PER", 0.5, 23, 25)]
    assert decode_tags(tags) == [(0, 8, "PER", pytest.approx(0.8)), (13, 18, "LOC", 0.8), (19, 22, "LOC", 0.6), (23, 25, "PER", 0.5)]
    bioes = [("S-PER", 0.9, 0, 3), ("B-LOC", 0.8, 4, 6), ("E-LOC", 0.6, 7, 9), ("E-LOC", 0.5, 10, 12)]
    assert decode_tags(bioes) == [(0, 3, "PER", 0.9), (4, 9, "LOC", pytest.approx(0.7)), (10, 12, "LOC", 0.5)]
    assert decode_tags([("PER", 0.9, 0, 3), ("PER", 0.7, 4, 6), ("LOC", 0.8, 7, 9)]) == [(0, 6, "PER", pytest.approx(0.8)), (7, 9, "LOC", 0.8)]


def test_expand_to_words() -> None:
    assert expand_to_words("Okonkwo went", 2, 4) == (0, 7)
    assert expand_to_words("a Roe.", 2, 5) == (2, 5)


def test_constant_person_model_tags_every_word(models: dict[str, Path]) -> None:
    detector = HFTokenClassifierDetector(models["person"])
    spans = detector.detect(TEXT)
    assert [TEXT[s.start : s.end] for s in spans] == words(TEXT)  # punctuation stays public
    assert {s.entity_type for s in spans} == {"PERSON"} and all(s.score > 0.9 for s in spans)


def test_outside_model_finds_nothing(models: dict[str, Path]) -> None:
    assert HFTokenClassifierDetector(models["outside"]).detect(TEXT) == []
    assert HFTokenClassifierDetector(models["outside"]).detect("   ") == []


def test_inside_tags_join_across_windows(models: dict[str, Path]) -> None:
    # I- tags with no B- start a span that continues; windows of 12 tokens (stride 4) overlap and
    # the union covers the whole text as one LOCATION span.
    long_text = " ".join([TEXT] * 4)
    detector = HFTokenClassifierDetector(models["inside_loc"], max_length=12, stride=4)
    assert len(detector.tokenizer(long_text)["input_ids"]) > 3 * 12
    spans = detector.detect(long_text)
    assert len(spans) == 1 and spans[0].entity_type == "LOCATION"
    assert long_text[spans[0].start : spans[0].end] == long_text.rstrip(".")


def test_score_threshold_and_label_map(models: dict[str, Path]) -> None:
    # p(B-PER) = e / (e + 5) ~ 0.35 with the weak model
    assert HFTokenClassifierDetector(models["weak_person"], score_threshold=0.5).detect(TEXT) == []
    assert len(HFTokenClassifierDetector(models["weak_person"], score_threshold=0.3).detect(TEXT)) == len(words(TEXT))
    unmapped = HFTokenClassifierDetector(models["badge"]).detect("badge 12")
    assert {s.entity_type for s in unmapped} == {"BADGE"}  # unknown labels keep their own name
    mapped = HFTokenClassifierDetector(models["badge"], label_map={"badge": "ID"}).detect("badge 12")
    assert {s.entity_type for s in mapped} == {"ID"}


def test_random_model_gives_valid_spans_deterministically(models: dict[str, Path]) -> None:
    detector = HFTokenClassifierDetector(models["random"], score_threshold=0.0)
    first = detector.detect(TEXT)
    assert first == detector.detect(TEXT)
    for span in first:
        piece = TEXT[span.start : span.end]
        assert piece and piece[0].isalnum() and piece[-1].isalnum()
        assert span.entity_type in {"PERSON", "LOCATION", "BADGE"}
    assert first == sorted(first) and all(a.end < b.start for a, b in zip(first, first[1:], strict=False))


def test_factory_union_and_errors(models: dict[str, Path], tmp_path: Path) -> None:
    tagger = make_detector("hf", model_path=str(models["person"]))
    assert make_detector("hf", model_path=str(models["person"])) is tagger
    text = "Call 0161 496 0123 now"
    # every word from the tagger, and the regex's phone span joins the three digit groups into one
    assert [text[s.start : s.end] for s in UnionDetector("regex", tagger).detect(text)] == ["Call", "0161 496 0123", "now"]
    quiet = UnionDetector("regex", HFTokenClassifierDetector(models["outside"]), profile="general")
    assert [(text[s.start : s.end], s.entity_type) for s in quiet.detect(text)] == [("0161 496 0123", "PHONE_NUMBER")]
    with pytest.raises(FileNotFoundError, match="local models only"):
        HFTokenClassifierDetector(tmp_path / "missing")
    with pytest.raises(ValueError, match="stride"):
        HFTokenClassifierDetector(models["person"], max_length=8, stride=8)
