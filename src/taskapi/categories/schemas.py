from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class CategoryRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "01937a4e-8c2b-7e41-9a57-3c1d2b4e5f60",
                "name": "Work",
                "color": "#6366F1",
                "created_at": "2026-11-21T08:00:00Z",
                "updated_at": "2026-11-21T08:00:00Z",
            }
        },
    )

    id: uuid.UUID
    name: str
    color: str
    created_at: datetime
    updated_at: datetime
