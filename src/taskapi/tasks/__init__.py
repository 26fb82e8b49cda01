"""Tasks: the user's own tasks with filters, search, sorting, pagination, optimistic
locking, soft delete, and the categories assigned to them."""
