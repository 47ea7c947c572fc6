"""The built-in world's lexicon: every content word in every language, with what the grammar needs.

A table of data (see adapterx.core.tinyworld for the grammar that uses it). Each content word belongs to one
*pool*: "target" words occur only in the target task (tiny-xnli), "intermediate" words only in the English
intermediate tasks, "shared" words in both, so that the intermediate tasks share some vocabulary with the
target but not all of it.

Forms are ASCII (the tokenizer strips accents anyway). Where a language inflects, the entry says how:
  de   nouns: (word, gender m/f/n); adjectives: a stem that takes the ending -e / -en
  es   nouns: (word, gender m/f); adjectives: (masculine, feminine)
  fr   nouns: (word, gender m/f); adjectives: (masculine, feminine)
  tr   nouns: (stem, accusative suffix); verbs: (aorist, negative stem, negative suffix)
Some words are the same string in several languages ("radio", "taxi", "student", "cruel", "tasse"): the
partial vocabulary overlap real languages have (one token, so one embedding, in the built-in backbone).
"""

from __future__ import annotations

from dataclasses import dataclass

LANGUAGES: tuple[str, ...] = ("en", "de", "es", "fr", "tr")
POOLS: tuple[str, ...] = ("target", "shared", "intermediate")


@dataclass(frozen=True)
class Noun:
    concept: str
    pool: str
    animate: bool
    en: str
    de: tuple[str, str]
    es: tuple[str, str]
    fr: tuple[str, str]
    tr: tuple[str, str]


@dataclass(frozen=True)
class Verb:
    concept: str
    pool: str
    takes_animate: bool  # the object may be a person or animal ("sees the doctor")
    en: tuple[str, str, str]  # 3rd person singular, base form, past participle
    de: str
    es: str
    fr: str
    tr: tuple[str, str, str]  # aorist, negative stem, negative suffix


@dataclass(frozen=True)
class Adjective:
    concept: str
    pool: str
    polarity: int  # 1 positive, 0 negative
    en: str
    de: str
    es: tuple[str, str]
    fr: tuple[str, str]
    tr: str


N, V, A = Noun, Verb, Adjective

NOUNS: tuple[Noun, ...] = (
    # people and animals (subjects; objects of verbs that take them)
    N("teacher", "target", True, "teacher", ("lehrer", "m"), ("maestro", "m"), ("professeur", "m"), ("ogretmen", "i")),
    N("doctor", "target", True, "doctor", ("arzt", "m"), ("medico", "m"), ("medecin", "m"), ("doktor", "u")),
    N("farmer", "target", True, "farmer", ("bauer", "m"), ("granjero", "m"), ("fermier", "m"), ("ciftci", "yi")),
    N("baker", "target", True, "baker", ("backer", "m"), ("panadero", "m"), ("boulanger", "m"), ("firinci", "yi")),
    N("dog", "shared", True, "dog", ("hund", "m"), ("perro", "m"), ("chien", "m"), ("kopek", "i")),
    N("cat", "shared", True, "cat", ("katze", "f"), ("gato", "m"), ("chat", "m"), ("kedi", "yi")),
    N("child", "shared", True, "child", ("kind", "n"), ("nino", "m"), ("enfant", "m"), ("cocuk", "u")),
    N("woman", "shared", True, "woman", ("frau", "f"), ("mujer", "f"), ("femme", "f"), ("kadin", "i")),
    N("man", "intermediate", True, "man", ("mann", "m"), ("hombre", "m"), ("homme", "m"), ("adam", "i")),
    N("bird", "intermediate", True, "bird", ("vogel", "m"), ("pajaro", "m"), ("oiseau", "m"), ("kus", "u")),
    N(
        "student",
        "intermediate",
        True,
        "student",
        ("student", "m"),
        ("estudiante", "m"),
        ("etudiant", "m"),
        ("ogrenci", "yi"),
    ),
    N("king", "intermediate", True, "king", ("konig", "m"), ("rey", "m"), ("roi", "m"), ("kral", "i")),
    # things (objects)
    N("hat", "target", False, "hat", ("hut", "m"), ("sombrero", "m"), ("chapeau", "m"), ("sapka", "yi")),
    N("letter", "target", False, "letter", ("brief", "m"), ("carta", "f"), ("lettre", "f"), ("mektup", "u")),
    N("flower", "target", False, "flower", ("blume", "f"), ("flor", "f"), ("fleur", "f"), ("cicek", "i")),
    N("taxi", "target", False, "taxi", ("taxi", "n"), ("taxi", "m"), ("taxi", "m"), ("taksi", "yi")),
    N("apple", "shared", False, "apple", ("apfel", "m"), ("manzana", "f"), ("pomme", "f"), ("elma", "yi")),
    N("bread", "shared", False, "bread", ("brot", "n"), ("pan", "m"), ("pain", "m"), ("ekmek", "i")),
    N("book", "shared", False, "book", ("buch", "n"), ("libro", "m"), ("livre", "m"), ("kitap", "i")),
    N("ball", "shared", False, "ball", ("ball", "m"), ("pelota", "f"), ("balle", "f"), ("top", "u")),
    N("cup", "intermediate", False, "cup", ("tasse", "f"), ("taza", "f"), ("tasse", "f"), ("fincan", "i")),
    N("key", "intermediate", False, "key", ("schlussel", "m"), ("llave", "f"), ("cle", "f"), ("anahtar", "i")),
    N("box", "intermediate", False, "box", ("kiste", "f"), ("caja", "f"), ("boite", "f"), ("kutu", "yu")),
    N("radio", "intermediate", False, "radio", ("radio", "n"), ("radio", "f"), ("radio", "f"), ("radyo", "yu")),
)

VERBS: tuple[Verb, ...] = (
    V("buy", "target", False, ("buys", "buy", "bought"), "kauft", "compra", "achete", ("alir", "al", "maz")),
    V("carry", "target", False, ("carries", "carry", "carried"), "tragt", "lleva", "porte", ("tasir", "tasi", "maz")),
    V("paint", "target", True, ("paints", "paint", "painted"), "malt", "pinta", "peint", ("boyar", "boya", "maz")),
    V("eat", "shared", False, ("eats", "eat", "eaten"), "isst", "come", "mange", ("yer", "ye", "mez")),
    V("see", "shared", True, ("sees", "see", "seen"), "sieht", "ve", "voit", ("gorur", "gor", "mez")),
    V("like", "shared", True, ("likes", "like", "liked"), "mag", "quiere", "aime", ("sever", "sev", "mez")),
    V(
        "find",
        "intermediate",
        True,
        ("finds", "find", "found"),
        "findet",
        "encuentra",
        "trouve",
        ("bulur", "bul", "maz"),
    ),
    V("sell", "intermediate", False, ("sells", "sell", "sold"), "verkauft", "vende", "vend", ("satar", "sat", "maz")),
    V("open", "intermediate", False, ("opens", "open", "opened"), "offnet", "abre", "ouvre", ("acar", "ac", "maz")),
)

ADJECTIVES: tuple[Adjective, ...] = (
    A("happy", "target", 1, "happy", "glucklich", ("feliz", "feliz"), ("heureux", "heureuse"), "mutlu"),
    A("friendly", "target", 1, "friendly", "freundlich", ("amable", "amable"), ("aimable", "aimable"), "nazik"),
    A("sad", "target", 0, "sad", "traurig", ("triste", "triste"), ("triste", "triste"), "uzgun"),
    A("angry", "target", 0, "angry", "wutend", ("enojado", "enojada"), ("fache", "fachee"), "kizgin"),
    A("good", "shared", 1, "good", "gut", ("bueno", "buena"), ("bon", "bonne"), "iyi"),
    A("calm", "shared", 1, "calm", "ruhig", ("tranquilo", "tranquila"), ("calme", "calme"), "sakin"),
    A("bad", "shared", 0, "bad", "schlecht", ("malo", "mala"), ("mauvais", "mauvaise"), "kotu"),
    A("tired", "shared", 0, "tired", "mud", ("cansado", "cansada"), ("fatigue", "fatiguee"), "yorgun"),
    A("clever", "intermediate", 1, "clever", "klug", ("listo", "lista"), ("habile", "habile"), "zeki"),
    A("brave", "intermediate", 1, "brave", "tapfer", ("valiente", "valiente"), ("courageux", "courageuse"), "cesur"),
    A("honest", "intermediate", 1, "honest", "ehrlich", ("honesto", "honesta"), ("honnete", "honnete"), "durust"),
    A("cheerful", "intermediate", 1, "cheerful", "frohlich", ("alegre", "alegre"), ("joyeux", "joyeuse"), "neseli"),
    A("lazy", "intermediate", 0, "lazy", "faul", ("perezoso", "perezosa"), ("paresseux", "paresseuse"), "tembel"),
    A("rude", "intermediate", 0, "rude", "frech", ("grosero", "grosera"), ("grossier", "grossiere"), "kaba"),
    A("cruel", "intermediate", 0, "cruel", "grausam", ("cruel", "cruel"), ("cruel", "cruelle"), "zalim"),
    A("awful", "intermediate", 0, "awful", "furchtbar", ("horrible", "horrible"), ("horrible", "horrible"), "korkunc"),
)

# time adverbs (shared by every task): concept -> form per language, in LANGUAGES order
TIMES: dict[str, tuple[str, ...]] = {
    "today": ("today", "heute", "hoy", "aujourdhui", "bugun"),
    "now": ("now", "jetzt", "ahora", "maintenant", "simdi"),
}

# function words that carry meaning across languages (aligned in the built-in backbone); language -> forms
NEGATION: dict[str, tuple[str, ...]] = {
    "en": ("not",),
    "de": ("nicht",),
    "es": ("no",),
    "fr": ("ne", "pas"),
    "tr": ("-mez", "-maz"),
}
ARTICLES: dict[str, tuple[str, ...]] = {
    "en": ("the",),
    "de": ("der", "die", "das", "den"),
    "es": ("el", "la"),
    "fr": ("le", "la"),
    "tr": (),
}
# (Turkish "ve" is left out: it is the Spanish "sees")
CONJUNCTION: dict[str, tuple[str, ...]] = {"en": ("and",), "de": ("und",), "es": ("y",), "fr": ("et",), "tr": ()}
# further words of the grammar, in no aligned group: English do-support, copula and passive; Spanish "a"
# before a person object (al = a + el); the German adjective ending (suffixes are written with a leading "-")
GRAMMAR_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("does", "is", "by"),
    "de": ("-e",),
    "es": ("a", "al"),
    "fr": (),
    "tr": (),
}

# how strongly the built-in backbone pulls a language's words towards their concept (English is the anchor;
# a lower value stands for a language the "pretraining" saw less of)
ALIGNMENT: dict[str, float] = {"en": 0.8, "de": 0.8, "es": 0.8, "fr": 0.75, "tr": 0.6}
