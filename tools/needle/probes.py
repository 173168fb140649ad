"""Needle-in-a-haystack probes for text LLMs (issue 21, part 3).

One probe = a haystack of filler sentences with a few facts "<Name> lives in <City>." hidden
among them (one about the asked name: the needle; the others about other names: distractors),
then "Question: Where does <Name> live?\\nAnswer: <Name> lives in". The target span is the
needle's city inside the text, the answer is " <City>", and the choices are the cities of every
fact in the haystack, so the model must retrieve the right one, not just any city it saw.

Deterministic: ``needle_probes(n, seed)`` gives the same probes on every machine.
"""

from __future__ import annotations

import numpy as np

from corehead.probes import Probe

NAMES = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack", "Laura", "Mark",
         "Nina", "Oscar", "Paul", "Rita", "Sam", "Tina", "Victor", "Wendy"]
CITIES = ["Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Moscow", "Cairo", "Sydney", "Dublin", "Vienna",
          "Prague", "Boston", "Chicago", "Toronto", "Lima"]
FILLER = [
    "The grass in the park was cut early this morning.",
    "A small boat drifted slowly along the quiet river.",
    "Most of the shops on the main street close at six.",
    "The old clock in the hall had stopped years ago.",
    "Rain is expected to fall over the hills tomorrow.",
    "The library added a new shelf of history books.",
    "A cat slept on the warm stones near the wall.",
    "The bakery sells fresh bread every day of the week.",
    "Children played football on the field after school.",
    "The train to the coast leaves from the second platform.",
    "Bright lamps lined the long road up to the castle.",
    "The museum is free to visit on the first Sunday.",
    "A light wind moved the leaves of the tall trees.",
    "The farmer brought apples and pears to the market.",
    "Snow covered the roofs of the village in winter.",
    "The bridge over the canal was painted green last year.",
]


def needle_probes(n: int, seed: int = 0, n_filler: int = 12, n_distractors: int = 2) -> list[Probe]:
    """`n` probes; each hides 1 + n_distractors facts among n_filler filler sentences."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        names = [str(x) for x in rng.choice(NAMES, size=1 + n_distractors, replace=False)]
        cities = [str(x) for x in rng.choice(CITIES, size=1 + n_distractors, replace=False)]
        sentences = [str(x) for x in rng.choice(FILLER, size=n_filler, replace=False)]
        slots = sorted(rng.choice(n_filler + 1, size=1 + n_distractors, replace=False).tolist())
        order = rng.permutation(1 + n_distractors).tolist()  # which fact goes in which slot
        pieces, needle_at = [], None
        facts = {slot: order[i] for i, slot in enumerate(slots)}
        text = ""
        for i in range(n_filler + 1):
            if i in facts:
                k = facts[i]
                head = f"{names[k]} lives in "
                if k == 0:
                    needle_at = len(text) + len(head)
                text += head + cities[k] + ". "
            if i < n_filler:
                text += sentences[i] + " "
            pieces.append(i)
        question = f"{text.strip()}\nQuestion: Where does {names[0]} live?\nAnswer: {names[0]} lives in"
        assert needle_at is not None and question[needle_at:needle_at + len(cities[0])] == cities[0]
        out.append(Probe(question=question, answer=" " + cities[0], choices=[" " + c for c in cities],
                         span=(needle_at, needle_at + len(cities[0])), prompt=question,
                         meta={"name": names[0], "city": cities[0], "distractors": cities[1:]}))
    return out
