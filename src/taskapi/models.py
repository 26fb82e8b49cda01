"""Every table, imported in one place so the metadata is complete for Alembic and tests."""

from taskapi.auth.models import RefreshToken, User
from taskapi.categories.models import Category
from taskapi.core.models import Base
from taskapi.tasks.models import Task, task_categories

__all__ = ["Base", "Category", "RefreshToken", "Task", "User", "task_categories"]
