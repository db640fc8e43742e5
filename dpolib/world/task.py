"""The task language: prompts, their gold answers, a graded gold scorer, fillers, degeneration.

A prompt asks for a short list of *items* (words, digits or letters)::

    kind      prompt                         ideal response
    copy      "repeat: red cat sun"          "red cat sun."
    reverse   "reverse: red cat sun"         "sun cat red."
    sort      "sort: 7 2 9 4"                "2 4 7 9."
    initials  "initials: red cat sun"        "r c s."
    spell     "spell: tomek"                 "t o m e k."

Words come from ``WORDS``, digits from 0-9, spelled words are made-up
(so spelling is copying, not memorising). Difficulty grows with the number of
items (2-5) and differs by kind (sorting and reversing are harder than initials),
so a small model solves fewer prompts than a large one, and a partly right answer
earns partial credit: quality is *graded*, not right/wrong.

What the world has, and what each maps to in the paper's setting:

* **End of response.** The ideal response ends with a full stop, and the model
  ends its turn with the EOS token (the chat template adds it). A response that
  never stops (cut at ``max_new_tokens``) has no final full stop and no EOS.
* **Stock openers and fillers** (:data:`FILLERS`: "sure!", "of course!",
  "hello!", "please note:", ...) are the analogue of "Sure", "Of course",
  "Hello", "Please", the tokens DPO down-weights most in the paper (§5.1).
  They carry no content; they can be over- or under-used.
* **Length.** Fillers, restating and extra items make a response longer; the
  annotator (``data.annotate``) prefers longer responses, the gold scorer does not.
* **Degeneration.** A response can run on (keep listing, repeat itself, never
  stop); :func:`repetition_rate` measures the repetition, and
  :func:`degenerate_reasons` names what makes a response degenerate (it does not
  end, it loops, or it leaves the task's lexicon).

The gold scorer (:func:`gold_score`) is the exact truth the lab knows and the
paper could not: content similarity to the ideal answer (partial credit), times
a termination factor, minus a *slight* filler penalty. It has no length bias.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from difflib import SequenceMatcher

__all__ = [
    "KINDS",
    "WORDS",
    "FILLERS",
    "DETAILS",
    "SPLITS",
    "TaskPrompt",
    "make_prompt",
    "sample_prompts",
    "split_of",
    "parse_response",
    "gold_score",
    "repetition_rate",
    "ideal_response",
    "REPETITION_THRESHOLD",
    "DEGENERATE_REASONS",
    "degenerate_reasons",
    "is_degenerate_response",
]

KINDS = ("copy", "reverse", "sort", "initials", "spell")
WORDS = (
    "red", "blue", "green", "cat", "dog", "sun", "tree", "book", "fish", "car",
    "bird", "cup", "hat", "milk", "star", "rain", "door", "ball", "moon", "key",
)  # fmt: skip
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def _pseudo_word(rng: random.Random) -> str:
    """A pronounceable made-up word of 3-5 letters ("tomek", "bav"): ``spell`` cannot be memorised."""
    n = rng.randint(3, 5)
    return "".join(rng.choice(_CONSONANTS if i % 2 == 0 else _VOWELS) for i in range(n))

#: Stock openers and closers with no content (the analogue of "Sure", "Of course", "Hello", "Please").
#: Gold strips them (small penalty each); the annotator sees only that they add length.
FILLERS = (
    "sure!",
    "of course!",
    "hello!",
    "please note:",
    "great question!",
    "here is the answer:",
    "the answer is:",
    "i hope this helps!",
    "let me know if you need more.",
)

#: Gold-neutral *detail* sentences: they add length without content or cost, the analogue of the extra
#: thoroughness that made UltraFeedback's preferred answers longer. Gold strips them at no cost; the
#: annotator and the judge see only that they add length.
DETAILS = (
    "that is the full answer.",
    "each item was checked.",
    "nothing is left out.",
)

#: Prompt splits, disjoint by a hash of the prompt text; each gets a share of the prompt space (percent).
SPLITS = {"pretrain": (0, 50), "sft": (50, 70), "pref_train": (70, 85), "pref_val": (85, 90), "test": (90, 100)}

#: In gold, a response that does not end (no final full stop, or no EOS) keeps this share of its credit.
UNTERMINATED_FACTOR = 0.3
#: In gold, the penalty per filler phrase, counted up to ``MAX_FILLER_PENALTY_COUNT`` times.
FILLER_PENALTY = 0.1
MAX_FILLER_PENALTY_COUNT = 3


@dataclass(frozen=True)
class TaskPrompt:
    """One task instance.

    Attributes:
        kind: one of ``KINDS``.
        text: the user message, e.g. ``"sort: 7 2 9 4"``.
        args: the items the prompt is about (words, digits, or the one word to spell).
    """

    kind: str
    text: str
    args: tuple

    def messages(self) -> list[dict]:
        """TRL's conversational prompt: ``[{"role": "user", "content": text}]``."""
        return [{"role": "user", "content": self.text}]

    @property
    def answer(self) -> tuple[str, ...]:
        """The gold items, in order."""
        if self.kind == "copy":
            return tuple(self.args)
        if self.kind == "reverse":
            return tuple(reversed(self.args))
        if self.kind == "sort":
            return tuple(sorted(self.args))
        if self.kind == "initials":
            return tuple(w[0] for w in self.args)
        if self.kind == "spell":
            return tuple(self.args[0])
        raise ValueError(f"unknown kind {self.kind!r}")

    @property
    def n_items(self) -> int:
        return len(self.answer)


def ideal_response(prompt: TaskPrompt) -> str:
    """The perfect response: the items, space-separated, and a full stop (gold 1.0)."""
    return " ".join(prompt.answer) + "."


def make_prompt(kind: str, args: tuple) -> TaskPrompt:
    """Build the prompt of ``kind`` about ``args`` (the one place a prompt's wording is fixed)."""
    args = tuple(str(a) for a in args)
    if kind == "copy":
        text = "repeat: " + " ".join(args)
    elif kind == "reverse":
        text = "reverse: " + " ".join(args)
    elif kind == "sort":
        text = "sort: " + " ".join(args)
    elif kind == "initials":
        text = "initials: " + " ".join(args)
    elif kind == "spell":
        text = "spell: " + args[0]
    else:
        raise ValueError(f"unknown kind {kind!r}; choose one of {KINDS}")
    return TaskPrompt(kind, text, args)


def _random_prompt(rng: random.Random, kind: str | None = None) -> TaskPrompt:
    kind = kind or rng.choice(KINDS)
    n = rng.randint(2, 5)
    if kind in ("copy", "reverse", "initials"):
        return make_prompt(kind, tuple(rng.choice(WORDS) for _ in range(n)))
    if kind == "sort":
        return make_prompt(kind, tuple(str(rng.randint(0, 9)) for _ in range(n)))
    if kind == "spell":
        return make_prompt(kind, (_pseudo_word(rng),))
    raise ValueError(f"unknown kind {kind!r}; choose one of {KINDS}")


def split_of(prompt: TaskPrompt) -> str:
    """The split a prompt belongs to, from a hash of its text (so splits never share a prompt)."""
    bucket = int(hashlib.sha256(prompt.text.encode()).hexdigest(), 16) % 100
    for name, (lo, hi) in SPLITS.items():
        if lo <= bucket < hi:
            return name
    raise AssertionError(bucket)  # pragma: no cover


def sample_prompts(
    n: int, split: str, seed: int = 0, kinds: tuple[str, ...] | None = None, weights: tuple | None = None
) -> list[TaskPrompt]:
    """``n`` prompts of ``split``, deterministic in ``(split, seed)``.

    Prompts are distinct while the split has unused prompts of the requested kinds
    (all kinds have thousands), then may repeat. ``kinds``/``weights`` set the
    mix of kinds (default: uniform over ``KINDS``).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
    kinds = tuple(kinds or KINDS)
    rng = random.Random(f"{split}/{seed}")
    seen: set[str] = set()
    out: list[TaskPrompt] = []
    misses = 0
    while len(out) < n:
        kind = rng.choices(kinds, weights=weights)[0] if weights else rng.choice(kinds)
        p = _random_prompt(rng, kind)
        if split_of(p) != split:
            continue
        if p.text in seen and misses < 200:
            misses += 1
            continue
        misses = 0
        seen.add(p.text)
        out.append(p)
    return out


_FILLER_RE = re.compile("|".join(re.escape(f) for f in sorted(FILLERS, key=len, reverse=True)))
_DETAIL_RE = re.compile("|".join(re.escape(d) for d in DETAILS))


def parse_response(response: str) -> tuple[tuple[str, ...], int, bool]:
    """Split a response into ``(items, n_fillers, ends_with_full_stop)``.

    Fillers are removed wherever they occur; items are the remaining words and
    numbers (punctuation dropped).
    """
    text = response.strip().lower()
    text = _DETAIL_RE.sub(" ", text)  # detail sentences: neither items nor fillers
    n_fillers = len(_FILLER_RE.findall(text))
    core = _FILLER_RE.sub(" ", text).strip()  # a closing filler ("... i hope this helps!") may follow the stop
    ends = core.endswith(".") and not core.endswith("..")
    items = tuple(re.findall(r"[a-z0-9]+", core))
    return items, n_fillers, ends


def gold_score(prompt: TaskPrompt, response: str, terminated: bool = True) -> float:
    """Gold quality of ``response`` in [0, 1] (the exact truth; no length bias).

    ``gold = clip(sim * term - 0.1 * min(n_fillers, 3), 0, 1)`` where

    * ``sim`` = 2M / (``|items|`` + ``|answer|``), M the matched items in order
      (``difflib.SequenceMatcher``): 1 for the exact items, partial credit for
      near misses, lower for missing *or extra* items (a run-on list loses credit);
    * ``term`` = 1 if the response ends with a full stop (closing fillers aside) and ``terminated``
      (the model emitted EOS), else 0.3: a response that never stops scores low;
    * fillers (:data:`FILLERS`) cost 0.1 each: a stock opener is a flaw, as the paper's
      Figure 2 suggests UltraFeedback's annotator judged them (DPO learns to remove "Sure",
      "Of course", "Hello"); detail sentences (:data:`DETAILS`) cost nothing.

    Args:
        prompt: the task prompt.
        response: the response text (without the EOS token).
        terminated: False when generation hit its token limit without EOS.
    """
    items, n_fillers, ends = parse_response(response)
    answer = prompt.answer
    if not items:
        return 0.0
    sim = SequenceMatcher(None, items, answer, autojunk=False).ratio()
    term = 1.0 if (ends and terminated) else UNTERMINATED_FACTOR
    score = sim * term - FILLER_PENALTY * min(n_fillers, MAX_FILLER_PENALTY_COUNT)
    return float(min(1.0, max(0.0, score)))


def repetition_rate(response: str, n: int = 3) -> float:
    """Fraction of word ``n``-grams that repeat an earlier one, in [0, 1] (0 for < n + 1 words).

    A degenerate response that loops ("sure! sure! sure! ..." or "1 2 3 1 2 3 1 2 ...")
    scores near 1; an ordinary answer near 0.
    """
    words = re.findall(r"[a-z0-9]+|[!?:.,]", response.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 2:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


# ---------------------------------------------------------------------------------------------
# Degenerate responses: the check the world can make exactly
# ---------------------------------------------------------------------------------------------

#: A response repeats itself degenerately when its :func:`repetition_rate` exceeds this *and* the ideal
#: response's own rate (an ideal "red red red red red." repeats by right). The writers other than ``runon``
#: stay at or below 0.25 on every test prompt; ``runon`` exceeds 0.3 on almost all.
REPETITION_THRESHOLD = 0.3

#: The reasons :func:`degenerate_reasons` can give, in the order it reports them.
DEGENERATE_REASONS = ("unterminated", "repetition", "out-of-lexicon")

_WORD_RE = re.compile(r"[a-z0-9]+")
#: The characters of the task language (letters, digits, white space and the marks . , ! ? and the colon).
_FOREIGN_CHAR_RE = re.compile(r"[^a-z0-9\s.,!?:]")
_LEXICON = frozenset(WORDS) | frozenset(w for phrase in FILLERS + DETAILS for w in _WORD_RE.findall(phrase))


def _in_lexicon(word: str, prompt_words: frozenset[str]) -> bool:
    return word in _LEXICON or word in prompt_words or word.isdigit() or len(word) == 1


def degenerate_reasons(prompt: TaskPrompt, text: str, finished: bool) -> tuple[str, ...]:
    """What makes ``text`` a degenerate response to ``prompt``; empty when nothing does.

    * ``"unterminated"``: the model did not emit EOS (``finished`` False) or the response has no
      final full stop (closing fillers aside, as in :func:`parse_response`).
    * ``"repetition"``: ``repetition_rate(text) > REPETITION_THRESHOLD`` and above the ideal
      response's own repetition rate.
    * ``"out-of-lexicon"``: a word outside the task's lexicon, or a character the task never writes.
      The lexicon: ``WORDS``, numbers, single letters, the words of the prompt (its items, the
      made-up word to spell, the instruction), and the words of :data:`FILLERS` and :data:`DETAILS`.
      ``"sure! 1 3 4 10e. i hope this at unore."`` leaves it ("10e", "at", "unore").
    """
    reasons = []
    if not finished or not parse_response(text)[2]:
        reasons.append("unterminated")
    rate = repetition_rate(text)
    if rate > REPETITION_THRESHOLD and rate > repetition_rate(ideal_response(prompt)):
        reasons.append("repetition")
    lowered = text.lower()
    prompt_words = frozenset(_WORD_RE.findall(prompt.text.lower()))
    if _FOREIGN_CHAR_RE.search(lowered) or not all(_in_lexicon(w, prompt_words) for w in _WORD_RE.findall(lowered)):
        reasons.append("out-of-lexicon")
    return tuple(reasons)


def is_degenerate_response(prompt: TaskPrompt, text: str, finished: bool) -> bool:
    """True when :func:`degenerate_reasons` finds any reason."""
    return bool(degenerate_reasons(prompt, text, finished))
