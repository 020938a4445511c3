"""The grading service: assignments fetched, handed in, graded in the sandbox, and scored.

- :mod:`.policy`: may this learner fetch or submit now (pure, with the caller's clock).
"""
