"""One ID: resolve raw identifiers (user_id, phone, email, device, openid) into people.

>>> from mktlab.identity import resolve, IdentityMap
>>> imap = resolve(observations)            # record_id, ts, id_type, id_value
>>> events = imap.attach_uid(events)        # adds a nullable uint32 ``uid``
>>> imap.save(); IdentityMap.load()
"""

from mktlab.identity.engine import resolve
from mktlab.identity.map import IdentityMap, Person, UnresolvedIdentifiersWarning, attach_uid
from mktlab.identity.merge_rules import IdentityRules, IdTypeRule
from mktlab.identity.report import IdentityReport
from mktlab.identity.scoring import assign_records, pairwise_scores

__all__ = [
    "IdTypeRule",
    "IdentityMap",
    "IdentityReport",
    "IdentityRules",
    "Person",
    "UnresolvedIdentifiersWarning",
    "assign_records",
    "attach_uid",
    "pairwise_scores",
    "resolve",
]
