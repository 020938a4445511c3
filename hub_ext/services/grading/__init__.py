"""The grading service: assignments fetched, handed in, graded in the sandbox, and scored.

A hub-managed service, one for all courses (``/services/grading/``):

- :mod:`.policy`: may this learner fetch or submit now (pure, with the caller's clock);
- :mod:`.store`: fetches, every submission (never deleted), grading runs, manual grades;
- :mod:`.queue`: the workers, and why a restart loses and repeats nothing;
- :mod:`.statements`: each graded run as xAPI statements in the event store;
- :mod:`.app`: the HTTP API and the pages; :mod:`.hubconfig`: what the hub's config says.
"""

from .hubconfig import SERVICE_NAME, grading_roles, grading_service

__all__ = ["SERVICE_NAME", "grading_roles", "grading_service"]
