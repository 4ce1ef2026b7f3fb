"""Writes that span more than one leg: an SMS failover created beside the MMS it replaces, a conversation
(one group_mms) and its member legs, and the reference check of a redacted message's media.

Same rules as ``infra.store.legs``: read, ask a pure ``decide`` (shared/services/failover.py,
shared/services/conversation.py)
what to write, commit one batch conditioned on the versions read (or on absence, ``create``), and on a
conflict read and decide again. A mixin of ``FirestoreLegs``: it uses its client and references.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from infra import collections as C
from infra.store.balance import FirestoreBalance
from infra.store.commit import changed_fields, commit_if_unchanged
from shared.ports import ConversationDecision, ConversationMutation, SpawnDecision, Spawned
from shared.rules.records import Conversation, Leg, Tenant

T = TypeVar("T")


class LinkedWrites:
    db: firestore.Client
    balance: FirestoreBalance

    def _ref(self, message_id: str) -> Any:  # pragma: no cover - FirestoreLegs defines it
        raise NotImplementedError

    def _linked_legs(self, query: Any) -> list[Leg]:
        return [Leg.from_doc(snap.to_dict() or {}) for snap in query.stream()]

    # -- reads -----------------------------------------------------------------------------------
    def id_by_provider_and_recipient(self, provider_id: str, to: str | None) -> str | None:
        """The leg a report is about when several legs share one provider message (a conversation): the one
        with that provider id and recipient; with a single match, that leg whatever the number."""
        query = self.db.collection(C.MESSAGES).where(filter=FieldFilter("provider_id", "==", provider_id)).limit(10)
        found = [(snap.id, (snap.to_dict() or {}).get("to")) for snap in query.stream()]
        by_number = [message_id for message_id, number in found if to and number == to]
        if by_number:
            return by_number[0]
        return found[0][0] if len(found) == 1 else None

    def with_failover_due(self, due_before: dt.datetime, limit: int = 200) -> list[Leg]:
        """MMS legs whose SMS failover was decided before ``due_before`` and is not created yet."""
        return self._linked_legs(
            self.db.collection(C.MESSAGES)
            .where(filter=FieldFilter("failover_due", "<", due_before))
            .order_by("failover_due")
            .limit(limit)
        )

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        snap = self.db.collection(C.CONVERSATIONS).document(conversation_id).get()
        return Conversation.from_doc(snap.to_dict() or {}) if snap.exists else None

    def media_in_use(self, tenant_id: str, object_name: str, besides: str) -> bool:
        """Whether a leg other than ``besides`` still refers to a stored media object (redaction removes a
        leg's reference before it asks)."""
        query = (self.db.collection(C.MESSAGES)
                 .where(filter=FieldFilter("media_objects", "array_contains", object_name))
                 .limit(2))
        return any(snap.id != besides and (snap.to_dict() or {}).get("tenant_id") == tenant_id
                   for snap in query.stream())

    # -- writes ----------------------------------------------------------------------------------
    def spawn(self, parent_id: str, child_id: str, tenant_id: str,
              decide: Callable[[Leg | None, bool, Tenant], SpawnDecision]) -> Spawned:
        """In one commit: the parent's update (conditioned on the version read), the child's creation (fails if
        it exists) and the tenant's new balance (conditioned). A concurrent spawn of the same child loses the
        race at the commit, reads again, and finds the parent no longer due."""
        parent_ref, child_ref = self._ref(parent_id), self._ref(child_id)
        tenant_ref = self.db.collection(C.TENANTS).document(tenant_id)
        shard_refs = self.balance.refs(tenant_id)

        def attempt() -> Spawned:
            snaps = {s.reference.path: s for s in self.db.get_all([parent_ref, child_ref, tenant_ref, *shard_refs])}
            parent_snap, tenant_snap = snaps[parent_ref.path], snaps[tenant_ref.path]
            stored = parent_snap.to_dict() if parent_snap.exists else None
            before = Leg.from_doc(stored) if stored else None
            seen = self.balance.seen(Tenant.from_doc(tenant_id, tenant_snap.to_dict() or {}), snaps)
            decision = decide(before, snaps[child_ref.path].exists, seen.tenant)
            batch = self.db.batch()
            parent = decision.parent if before is not None else None
            if parent is not None:
                updates = changed_fields(stored, parent.to_doc())
                if updates:
                    batch.update(parent_ref, updates,
                                 option=self.db.write_option(last_update_time=parent_snap.update_time))
                else:
                    parent = None
            if decision.child is not None:
                batch.create(child_ref, decision.child.to_doc())
            if decision.balance_micros is not None and tenant_snap.exists:
                # the charge lands on one balance shard, conditioned on it as read; it counts no message
                self.balance.debit(batch, seen, child_id, decision.balance_micros, None, 0)
            if len(batch):
                batch.commit()
            return Spawned(before=before, parent=parent, child=decision.child, result=decision.result)

        return commit_if_unchanged(attempt)

    def mutate_conversation(self, conversation_id: str, group_id: str,
                            decide: Callable[[Conversation | None, list[Leg]], ConversationDecision[T]]
                            ) -> ConversationMutation[T]:
        """Read the conversation and its group's legs, decide, and write both in one conditioned commit (the
        conversation created if absent). ``decide`` gets the group's legs of this conversation."""
        conv_ref = self.db.collection(C.CONVERSATIONS).document(conversation_id)
        members_query = self.db.collection(C.MESSAGES).where(filter=FieldFilter("group_id", "==", group_id))

        def attempt() -> ConversationMutation[T]:
            conv_snap = conv_ref.get()
            leg_snaps = [snap for snap in members_query.stream()
                         if (snap.to_dict() or {}).get("conversation_id") == conversation_id]
            stored = {snap.id: snap.to_dict() or {} for snap in leg_snaps}
            versions = {snap.id: snap.update_time for snap in leg_snaps}
            before = Conversation.from_doc(conv_snap.to_dict() or {}) if conv_snap.exists else None
            legs_before = {message_id: Leg.from_doc(doc) for message_id, doc in stored.items()}
            decision = decide(before, sorted(legs_before.values(), key=lambda leg: leg.id))
            batch = self.db.batch()
            after = decision.conversation
            if after is not None:
                if before is None:
                    batch.create(conv_ref, after.to_doc())
                else:
                    updates = changed_fields(conv_snap.to_dict(), after.to_doc())
                    if updates:
                        batch.update(conv_ref, updates,
                                     option=self.db.write_option(last_update_time=conv_snap.update_time))
                    else:
                        after = None
            written = []
            for leg in decision.legs:
                if leg.id not in stored:
                    continue
                updates = changed_fields(stored[leg.id], leg.to_doc())
                if updates:
                    batch.update(self._ref(leg.id), updates,
                                 option=self.db.write_option(last_update_time=versions[leg.id]))
                    written.append(leg)
            if decision.refund_micros and before is not None:
                self.balance.refund(batch, before.tenant_id, conversation_id, decision.refund_micros)
            if len(batch):
                batch.commit()
            return ConversationMutation(before=before, after=after, legs_before=legs_before,
                                        legs_after=tuple(written), result=decision.result)

        return commit_if_unchanged(attempt)
