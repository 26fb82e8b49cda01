"""What the reminder email says: the task, its due date and its link in the web app."""

from __future__ import annotations

import html
import uuid
from datetime import datetime

from taskapi.core.config import Settings
from taskapi.core.email import OutgoingEmail


def _when(value: datetime | None) -> str:
    if value is None:
        return "no due date"
    return value.strftime("%A %d %B %Y, %H:%M UTC")


def reminder_email(
    *,
    settings: Settings,
    to: str,
    full_name: str,
    task_id: uuid.UUID,
    title: str,
    due_date: datetime | None,
    message_id: str | None = None,
) -> OutgoingEmail:
    link = f"{settings.frontend_url}/tasks/{task_id}"
    due = _when(due_date)
    text = f"Hello {full_name},\n\nA reminder about your task: {title}\nDue: {due}\n\n{link}\n"
    body = (
        "<!doctype html><html><body>"
        f"<p>Hello {html.escape(full_name)},</p>"
        f"<p>A reminder about your task: <strong>{html.escape(title)}</strong><br>"
        f"Due: {html.escape(due)}</p>"
        f'<p><a href="{html.escape(link, quote=True)}">Open the task</a></p>'
        "</body></html>"
    )
    return OutgoingEmail(
        to=to,
        subject=f"Reminder: {title}",
        text=text,
        html=body,
        link=link,
        message_id=message_id,
    )
