"""Categories: a user's own labels for tasks, unique by name per user."""
