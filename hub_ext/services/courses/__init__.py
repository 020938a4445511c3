"""Course pages (issue #10): each course's whole class, for its teachers and the admins.

A hub-managed service, one for all courses (``/services/courses/``):

- :mod:`.classlist`: the class from every source (catalog, rosters, the hub's groups) and
  its search, sort, pages and CSV (pure);
- :mod:`.hubapi`: the hub's users and groups through its REST API, with the service's own
  token, cached briefly;
- :mod:`.app`: the pages and the JSON API; :mod:`.hubconfig`: what the hub's config says.

Importing this package imports only :mod:`.hubconfig` (the hub's config needs no more).
"""

from .hubconfig import SERVICE_NAME, course_page_scope, courses_roles, courses_service

__all__ = ["SERVICE_NAME", "course_page_scope", "courses_roles", "courses_service"]
