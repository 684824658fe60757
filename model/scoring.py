"""The scoring rule: how 12 answers become the model's input.

This is the one place the input contract is defined. Model files declare
`hollang.input = "scores-enfj/v1"`, meaning the graph takes float32 ``[batch, 4]`` =
``[E, N, F, J]`` where each value counts the questions of its group answered with 2:

- E: questions 1-3, N: 4-6, F: 7-9, J: 10-12 (each 0..3);
- the type letter is E/N/F/J when the count is >= 2, otherwise I/S/T/P.

We chose the 4 scores (not the 12 raw answers) as the graph input because that is what the
original model was trained on, it keeps the rule exact and visible in code (not buried in a
graph), and the server needs the scores anyway: they are stored with every recommendation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import product

import numpy as np

INPUT_KIND = "scores-enfj/v1"
QUESTION_COUNT = 12
AXES = ("E", "N", "F", "J")
OPPOSITES = ("I", "S", "T", "P")
_GROUP_SIZE = 3


def scores_from_answers(answers: Mapping[int, int]) -> tuple[int, int, int, int]:
    """Count answer 2 per group of three questions; `answers` maps question number -> 1|2."""
    if sorted(answers) != list(range(1, QUESTION_COUNT + 1)):
        raise ValueError("answers must cover questions 1..12 exactly once")
    counts = [0, 0, 0, 0]
    for number, answer in answers.items():
        if answer not in (1, 2):
            raise ValueError(f"answer to question {number} must be 1 or 2")
        if answer == 2:
            counts[(number - 1) // _GROUP_SIZE] += 1
    return counts[0], counts[1], counts[2], counts[3]


def mbti_from_scores(scores: Iterable[int]) -> str:
    """The type string, one letter per axis: E/N/F/J when the score is >= 2."""
    return "".join(
        high if score >= 2 else low
        for score, high, low in zip(scores, AXES, OPPOSITES, strict=True)
    )


def all_score_inputs() -> np.ndarray:
    """Every possible model input (4^4 = 256 rows), in lexicographic [E, N, F, J] order."""
    return np.array(list(product(range(4), repeat=4)), dtype=np.float32)
