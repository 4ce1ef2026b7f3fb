"""Templates in Firestore (shared/services/templating.py).

``tenants/{tenant_id}/templates/{template_id}`` holds the latest version and whether the template is archived:
a send that names no version reads that one document. Every version is also kept at
``.../templates/{template_id}/versions/{n}``, written in the same commit as the head, so an edit never loses
the text a message was sent with. The list pages in document-id order (no composite index).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from infra import collections as C
from infra.store.commit import commit_if_unchanged
from shared.rules.templates import Template


class FirestoreTemplates:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def _heads(self, tenant_id: str) -> Any:
        return self.db.collection(C.TENANTS).document(tenant_id).collection(C.TEMPLATES)

    def _version(self, tenant_id: str, template_id: str, version: int) -> Any:
        return self._heads(tenant_id).document(template_id).collection(C.TEMPLATE_VERSIONS).document(str(version))

    def create(self, template: Template) -> Template:
        batch = self.db.batch()
        batch.create(self._heads(template.tenant_id).document(template.id), template.to_doc())
        batch.create(self._version(template.tenant_id, template.id, template.version), template.to_doc())
        batch.commit()
        return template

    def get(self, tenant_id: str, template_id: str, version: int | None = None) -> Template | None:
        """The latest version, or version ``version`` carrying the head's archive state (one read, or two at once)."""
        head_ref = self._heads(tenant_id).document(template_id)
        if version is None:
            snap = head_ref.get()
            return Template.from_doc(snap.to_dict() or {}) if snap.exists else None
        version_ref = self._version(tenant_id, template_id, version)
        snaps = {snap.reference.path: snap for snap in self.db.get_all([head_ref, version_ref])}
        head, one = snaps[head_ref.path], snaps[version_ref.path]
        if not head.exists or not one.exists:
            return None
        return Template.from_doc({**(one.to_dict() or {}), "archived_at": (head.to_dict() or {}).get("archived_at")})

    def list(self, tenant_id: str, after: str | None, limit: int) -> list[Template]:
        query = self._heads(tenant_id).order_by(FieldPath.document_id())
        if after:
            query = query.start_after({FieldPath.document_id(): self._heads(tenant_id).document(after)})
        return [Template.from_doc(snap.to_dict() or {}) for snap in query.limit(limit).stream()]

    def update(self, tenant_id: str, template_id: str, edit: Any) -> Template | None:
        """``edit(latest) -> next version`` committed as the new head and version, conditioned on the head it read
        (two concurrent edits make two versions, never one lost); None when there is no such template."""
        ref = self._heads(tenant_id).document(template_id)

        def attempt() -> Template | None:
            snap = ref.get()
            if not snap.exists:
                return None
            latest = Template.from_doc(snap.to_dict() or {})
            new: Template = edit(latest)
            if new == latest:
                return latest
            batch = self.db.batch()
            batch.update(ref, new.to_doc(), option=self.db.write_option(last_update_time=snap.update_time))
            if new.version != latest.version:
                batch.create(self._version(tenant_id, template_id, new.version), new.to_doc())
            batch.commit()
            return new

        return commit_if_unchanged(attempt)

    def archive(self, tenant_id: str, template_id: str, now: dt.datetime) -> Template | None:
        """The head marked archived (an archived one stays as it was archived); None when there is none."""
        ref = self._heads(tenant_id).document(template_id)

        def attempt() -> Template | None:
            snap = ref.get()
            if not snap.exists:
                return None
            latest = Template.from_doc(snap.to_dict() or {})
            if latest.archived:
                return latest
            ref.update({"archived_at": now}, option=self.db.write_option(last_update_time=snap.update_time))
            return dataclasses.replace(latest, archived_at=now)

        return commit_if_unchanged(attempt)
