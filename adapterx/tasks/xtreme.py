"""The nine XTREME target tasks (Hu et al. 2020) as Phang et al. 2020 evaluate them: trained on English
(where the task has training data) and evaluated zero-shot in every language.

  xnli      facebook/xnli <lang>              (the google/xtreme `XNLI` config holds the same dev/test rows)
  pawsx     google/xtreme PAWS-X.<lang>
  udpos     google/xtreme udpos.<Language>    (UD v2.5 treebanks, as XTREME)
  panx      google/xtreme PAN-X.<lang>        (WikiANN)
  xquad     trained on SQuAD v1.1 (rajpurkar/squad), tested on google/xtreme XQuAD.<lang>
  mlqa      trained on SQuAD v1.1, dev/test google/xtreme MLQA.<lang>.<lang>
  tydiqa    google/xtreme tydiqa (GoldP), rows of a language picked by their id prefix ("english-...")
  bucc2018  the original BUCC 2018 files only (google/xtreme's bucc18 holds only the gold pairs; see
            adapterx.tasks.bucc); no training: mining on mean-pooled hidden states
  tatoeba   google/xtreme tatoeba.<iso639-3>  (no training; its only split is served as "test")

Local copies (``--data-dir``) sit at ``<data_dir>/<task>/<split>.<lang>.<ext>`` in the public formats:
XNLI/PAWS-X TSV (or JSON lines), CoNLL-U or ``token<TAB>tag`` for UDPOS, PAN-X's ``xx:token<TAB>tag``, SQuAD
JSON for the QA tasks and Tatoeba's two aligned text files; BUCC's are its shared-task files
(``bucc2018/<lang>-en.<sample|training>.<lang|en|gold>``).

Maximum lengths as jiant's XTREME scripts (Phang et al.'s toolkit): 256 tokens for classification and tagging,
384 for QA, 512 for retrieval.

Scores are XTREME's (its ``evaluate.py``): accuracy for XNLI, PAWS-X and Tatoeba, seqeval F1 for PAN-X and UDPOS
(UDPOS also reports token accuracy), SQuAD / MLQA F1 and exact match for the QA tasks, mining F1 for BUCC.
"""

from __future__ import annotations

from adapterx.tasks import register_task
from adapterx.tasks.base import Task
from adapterx.tasks.bucc import BUCC_SOURCE
from adapterx.tasks.intermediate import NLI_LABELS, QA_OPTIONS
from adapterx.tasks.sources import BySplit, Source, classification, read_panx, retrieval, span_qa, tagging

XNLI_LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
PAWSX_LANGUAGES = ("de", "en", "es", "fr", "ja", "ko", "zh")
UDPOS_NAMES = {
    "af": "Afrikaans",
    "ar": "Arabic",
    "bg": "Bulgarian",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "et": "Estonian",
    "eu": "Basque",
    "fa": "Persian",
    "fi": "Finnish",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "hu": "Hungarian",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "kk": "Kazakh",
    "ko": "Korean",
    "mr": "Marathi",
    "nl": "Dutch",
    "pt": "Portuguese",
    "ru": "Russian",
    "ta": "Tamil",
    "te": "Telugu",
    "th": "Thai",
    "tl": "Tagalog",
    "tr": "Turkish",
    "ur": "Urdu",
    "vi": "Vietnamese",
    "yo": "Yoruba",
    "zh": "Chinese",
}
PANX_LANGUAGES = (
    "af",
    "ar",
    "bg",
    "bn",
    "de",
    "el",
    "en",
    "es",
    "et",
    "eu",
    "fa",
    "fi",
    "fr",
    "he",
    "hi",
    "hu",
    "id",
    "it",
    "ja",
    "jv",
    "ka",
    "kk",
    "ko",
    "ml",
    "mr",
    "ms",
    "my",
    "nl",
    "pt",
    "ru",
    "sw",
    "ta",
    "te",
    "th",
    "tl",
    "tr",
    "ur",
    "vi",
    "yo",
    "zh",
)
XQUAD_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
MLQA_LANGUAGES = ("ar", "de", "en", "es", "hi", "vi", "zh")
TYDIQA_NAMES = {
    "ar": "arabic",
    "bn": "bengali",
    "en": "english",
    "fi": "finnish",
    "id": "indonesian",
    "ko": "korean",
    "ru": "russian",
    "sw": "swahili",
    "te": "telugu",
}
BUCC_LANGUAGES = ("de", "fr", "ru", "zh")
TATOEBA_CODES = {
    "af": "afr",
    "ar": "ara",
    "bg": "bul",
    "bn": "ben",
    "de": "deu",
    "el": "ell",
    "es": "spa",
    "et": "est",
    "eu": "eus",
    "fa": "pes",
    "fi": "fin",
    "fr": "fra",
    "he": "heb",
    "hi": "hin",
    "hu": "hun",
    "id": "ind",
    "it": "ita",
    "ja": "jpn",
    "jv": "jav",
    "ka": "kat",
    "kk": "kaz",
    "ko": "kor",
    "ml": "mal",
    "mr": "mar",
    "nl": "nld",
    "pt": "por",
    "ru": "rus",
    "sw": "swh",
    "ta": "tam",
    "te": "tel",
    "th": "tha",
    "tl": "tgl",
    "tr": "tur",
    "ur": "urd",
    "vi": "vie",
    "zh": "cmn",
}
# UD treebanks without a dev set in XTREME's UDPOS: evaluated on test only (jiant's XTREME scripts, as XTREME)
UDPOS_TEST_ONLY = ("kk", "th", "tl", "yo")
UPOS_LABELS = (
    "ADJ",
    "ADP",
    "ADV",
    "AUX",
    "CCONJ",
    "DET",
    "INTJ",
    "NOUN",
    "NUM",
    "PART",
    "PRON",
    "PROPN",
    "PUNCT",
    "SCONJ",
    "SYM",
    "VERB",
    "X",
)
PANX_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")

SQUAD_TRAIN = Source(
    "rajpurkar/squad", formats=("json", "jsonl"), normalise=span_qa, languages=("en",), hub_note="English SQuAD v1.1"
)
PAIR_FIELDS = {"sentence1": ("sentence1", "premise"), "sentence2": ("sentence2", "hypothesis")}


def _tydiqa_language(row: dict, language: str) -> bool:
    return row["id"].split("-", 1)[0].lower() == TYDIQA_NAMES[language]


register_task(
    Task(
        name="xnli",
        role="target",
        head="classification",
        metric="accuracy",
        labels=NLI_LABELS,
        text_fields=("premise", "hypothesis"),
        max_length=256,
        languages=XNLI_LANGUAGES,
        loader=Source(
            "facebook/xnli",
            config="{lang}",
            formats=("tsv", "jsonl"),
            normalise=classification(
                {"premise": ("premise", "sentence1"), "hypothesis": ("hypothesis", "sentence2")},
                label=("label", "gold_label"),
                aliases={"contradictory": "contradiction"},
            ),
        ),
        description="cross-lingual NLI; English training data is MultiNLI's",
    )
)
register_task(
    Task(
        name="pawsx",
        role="target",
        head="classification",
        metric="accuracy",
        labels=("0", "1"),
        text_fields=("sentence1", "sentence2"),
        max_length=256,
        languages=PAWSX_LANGUAGES,
        loader=Source(
            "google/xtreme", config="PAWS-X.{lang}", formats=("tsv", "jsonl"), normalise=classification(PAIR_FIELDS)
        ),
        description="cross-lingual paraphrase adversaries (1 = paraphrase)",
    )
)
register_task(
    Task(
        name="udpos",
        role="target",
        head="tagging",
        metric="pos_f1",
        labels=UPOS_LABELS,
        text_fields=("tokens",),
        label_field="tags",
        max_length=256,
        languages=tuple(sorted(UDPOS_NAMES)),
        loader=Source(
            "google/xtreme",
            config=lambda lang: f"udpos.{UDPOS_NAMES[lang]}",
            formats=("conllu", "conll", "jsonl"),
            normalise=tagging(),
        ),
        options={"test_only_languages": UDPOS_TEST_ONLY},
        description="Universal Dependencies v2.5 part-of-speech tagging (UPOS)",
    )
)
register_task(
    Task(
        name="panx",
        role="target",
        head="tagging",
        metric="ner_f1",
        labels=PANX_LABELS,
        text_fields=("tokens",),
        label_field="tags",
        max_length=256,
        languages=PANX_LANGUAGES,
        loader=Source(
            "google/xtreme",
            config="PAN-X.{lang}",
            formats=("conll", "jsonl"),
            normalise=tagging(),
            readers={"conll": read_panx},
        ),
        description="WikiANN named entities (PER/ORG/LOC, IOB2), entity-level F1",
    )
)
register_task(
    Task(
        name="xquad",
        role="target",
        head="span_qa",
        metric="squad",
        max_length=384,
        languages=XQUAD_LANGUAGES,
        text_fields=("question", "context"),
        label_field="answers",
        loader=BySplit(
            {
                "test": Source(
                    "google/xtreme",
                    config="XQuAD.{lang}",
                    splits={"test": "validation"},
                    formats=("json", "jsonl"),
                    normalise=span_qa,
                )
            },
            default=SQUAD_TRAIN,
        ),
        options=dict(QA_OPTIONS),
        description="cross-lingual QA; trained and validated on SQuAD v1.1 (English), tested on XQuAD",
    )
)
register_task(
    Task(
        name="mlqa",
        role="target",
        head="span_qa",
        metric="mlqa",
        max_length=384,
        languages=MLQA_LANGUAGES,
        text_fields=("question", "context"),
        label_field="answers",
        loader=BySplit(
            {"train": SQUAD_TRAIN},
            default=Source("google/xtreme", config="MLQA.{lang}.{lang}", formats=("json", "jsonl"), normalise=span_qa),
        ),
        options=dict(QA_OPTIONS),
        description="cross-lingual QA (context and question in one language); trained on SQuAD v1.1",
    )
)
register_task(
    Task(
        name="tydiqa",
        role="target",
        head="span_qa",
        metric="squad",
        max_length=384,
        languages=tuple(sorted(TYDIQA_NAMES)),
        text_fields=("question", "context"),
        label_field="answers",
        loader=Source(
            "google/xtreme",
            config="tydiqa",
            splits={"test": "validation"},
            formats=("json", "jsonl"),
            normalise=span_qa,
            hub_filter=_tydiqa_language,
        ),
        options={**QA_OPTIONS, "dev_is_test": "TyDiQA-GoldP's dev set is the set XTREME reports as test"},
        description="TyDiQA-GoldP; English training set; validation and test are both the GoldP dev set",
    )
)
register_task(
    Task(
        name="bucc2018",
        role="target",
        head="retrieval",
        metric="bucc_f1",
        languages=BUCC_LANGUAGES,
        train_language=None,
        splits=("validation", "test"),
        max_length=512,
        text_fields=("source_sentence", "target_sentence"),
        loader=BUCC_SOURCE,
        options={"scoring": "margin", "neighbours": 4, "layer": None},
        description="BUCC 2018 bitext mining (xx-en); margin scoring, threshold chosen on the dev split",
    )
)
register_task(
    Task(
        name="tatoeba",
        role="target",
        head="retrieval",
        metric="tatoeba_accuracy",
        languages=tuple(sorted(TATOEBA_CODES)),
        train_language=None,
        splits=("test",),
        max_length=512,
        text_fields=("source_sentence", "target_sentence"),
        loader=Source(
            "google/xtreme",
            config=lambda lang: f"tatoeba.{TATOEBA_CODES[lang]}",
            splits={"test": "validation"},
            formats=("source.txt", "jsonl"),
            normalise=retrieval,
        ),
        options={"scoring": "cosine", "neighbours": 4, "layer": None},
        description="Tatoeba sentence retrieval (English queries, xx index), top-1 accuracy by cosine similarity",
    )
)
