"""SQLAlchemy 2: ORM rows as cache-key arguments, and tag invalidation driven by commits.

- :func:`row_identity`: an ORM instance passed to a cached function is keyed by its mapped class and primary
  key, never by its loaded state.
- :func:`invalidate_on_commit`: writes of a model (unit of work and bulk statements, sync and async sessions)
  invalidate the rows' tags after the transaction commits; see the how-to "Invalidation from SQLAlchemy".

>>> from stashly.integrations.sqlalchemy import invalidate_on_commit, row_identity
"""

from .identity import row_identity
from .rules import TagsOf
from .watch import UntrackedWriteError, Watch, invalidate_on_commit

__all__ = ["TagsOf", "UntrackedWriteError", "Watch", "invalidate_on_commit", "row_identity"]
