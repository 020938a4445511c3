"""jupyterhub-idle-culler's config file on a course hub: each course's own idle timeout.

Loaded by the culler (``--config``, see :mod:`hub_ext.services.culling`).
"""

from hub_ext.services.culling import arbiter_from_environment

c = get_config()  # noqa: F821 (provided by traitlets' config loader)
c.IdleCuller.cull_arbiter_hook = arbiter_from_environment()
