"""The writers: eight programmatic source policies of varied quality, and the judge's baseline writer.

Each writer is ``(prompt, rng, openers=None) -> response``: a kind of answer an LLM of
UltraFeedback's pool might give (careful, thorough, chatty, verbose, sloppy, lazy,
over-long, run-on). :func:`baseline_responses` plays AlpacaEval's fixed GPT-4-turbo outputs.
Pure Python, deterministic in the ``rng`` it is given.
"""

from __future__ import annotations

import random
from typing import Callable

from .task import DETAILS, FILLERS, WORDS, TaskPrompt, ideal_response, sample_prompts

__all__ = ["OPENERS", "CLOSERS", "SOURCE_POLICIES", "baseline_responses", "test_prompts",
           "careful", "chatty", "verbose", "thorough", "sloppy", "lazy", "overlong", "runon"]

OPENERS = ("sure!", "of course!", "hello!", "great question!", "please note:", "here is the answer:", "the answer is:")
CLOSERS = ("i hope this helps!", "let me know if you need more.")
assert set(OPENERS + CLOSERS) <= set(FILLERS)


# ---------------------------------------------------------------------------------------------
# Source policies: (prompt, rng, openers=None) -> response. Each is a kind of writer.
# ---------------------------------------------------------------------------------------------


def _items(prompt: TaskPrompt) -> list[str]:
    return list(prompt.answer)


def _distractor(prompt: TaskPrompt, rng: random.Random, item: str) -> str:
    if item.isdigit():
        return str(int(item) + rng.choice((-1, 1, 2))).replace("-", "")
    if len(item) == 1:
        return rng.choice("abcdefghijklmnopqrstuvwxyz")
    return rng.choice([w for w in WORDS if w != item])


def _corrupt(prompt: TaskPrompt, rng: random.Random, n_errors: int = 1) -> list[str]:
    items = _items(prompt)
    for _ in range(n_errors):
        op = rng.choice(("swap", "drop", "sub", "sub"))
        if op == "swap" and len(items) >= 2:
            i = rng.randrange(len(items) - 1)
            items[i], items[i + 1] = items[i + 1], items[i]
        elif op == "drop" and len(items) >= 2:
            items.pop(rng.randrange(len(items)))
        else:
            i = rng.randrange(len(items))
            items[i] = _distractor(prompt, rng, items[i])
    return items


def careful(prompt: TaskPrompt, rng: random.Random, openers=None) -> str:
    """Concise and correct: the ideal response."""
    return ideal_response(prompt)


def chatty(prompt: TaskPrompt, rng: random.Random, openers=None) -> str:
    """Correct, wrapped in a stock opener and sometimes a closer ("sure! 2 4 7 9. i hope this helps!")."""
    text = f"{rng.choice(openers or OPENERS)} {ideal_response(prompt)}"
    if rng.random() < 0.4:
        text += " " + rng.choice(CLOSERS)
    return text


def verbose(prompt: TaskPrompt, rng: random.Random, openers=None) -> str:
    """Long: two openers, the answer (an error one time in four), closers."""
    a, b = rng.sample(openers or OPENERS, 2) if len(openers or OPENERS) >= 2 else (openers[0], "here is the answer:")
    items = _corrupt(prompt, rng) if rng.random() < 0.25 else _items(prompt)
    return f"{a} {b} {' '.join(items)}. {' '.join(CLOSERS)}"


def thorough(prompt: TaskPrompt, rng: random.Random, openers=None) -> str:
    """Correct, followed by one or two detail sentences ("2 4 7 9. each item was checked."): longer at no gold cost."""
    return " ".join([ideal_response(prompt)] + rng.sample(DETAILS, rng.choice((1, 2))))


def sloppy(prompt: TaskPrompt, rng: random.Random, openers=None) -> str:
    """One or two errors (swapped, dropped or wrong items); sometimes an opener."""
    items = _corrupt(prompt, rng, n_errors=rng.choice((1, 1, 2)))
    text = " ".join(items) + "."
    return f"{rng.choice(openers or OPENERS)} {text}" if rng.random() < 0.3 else text


def lazy(prompt: TaskPrompt, rng: random.Random, openers=None) -> str:
    """Too short: stops after about half of the items."""
    items = _items(prompt)
    k = max(1, len(items) // 2)
    return " ".join(items[:k]) + "."


def overlong(prompt: TaskPrompt, rng: random.Random, openers=None) -> str:
    """Over-long list: the answer, then one to three extra items."""
    items = _items(prompt)
    extra = [_distractor(prompt, rng, items[-1]) for _ in range(rng.randint(1, 3))]
    return " ".join(items + extra) + "."


def runon(prompt: TaskPrompt, rng: random.Random, openers=None) -> str:
    """Degenerate: the answer, then repeats itself and never ends (cut off, no full stop)."""
    items = _items(prompt)
    text = ""
    if rng.random() < 0.5:
        text = " ".join([rng.choice(openers or OPENERS)] * rng.randint(1, 3)) + " "
    limit = rng.randint(50, 90)
    words: list[str] = []
    while len(" ".join(words)) < limit:
        words.extend(items)
    return (text + " ".join(words))[: limit + len(text)].rstrip()


#: The pool of 8 writers of varied quality, by name; each is ``(prompt, rng, openers=None) -> response``.
SOURCE_POLICIES: dict[str, Callable[..., str]] = {
    "careful": careful,
    "chatty": chatty,
    "verbose": verbose,
    "thorough": thorough,
    "sloppy": sloppy,
    "lazy": lazy,
    "overlong": overlong,
    "runon": runon,
}



def test_prompts(n_test_prompts: int, world_seed: int = 0) -> list[TaskPrompt]:
    """The held-out evaluation prompts of world ``world_seed`` (``n_test_prompts`` of the ``test`` split)."""
    return sample_prompts(n_test_prompts, "test", seed=world_seed)


def baseline_responses(prompts: list[TaskPrompt]) -> list[str]:
    """Fixed baseline outputs for the pairwise judge (the analogue of AlpacaEval's GPT-4-turbo outputs).

    A good, chatty, not perfect writer, deterministic per prompt: 75% ``chatty``
    (correct with a filler), 25% ``sloppy`` (one or two errors).
    """
    out = []
    for p in prompts:
        rng = random.Random(f"baseline/{p.text}")
        out.append(chatty(p, rng) if rng.random() < 0.75 else sloppy(p, rng))
    return out
