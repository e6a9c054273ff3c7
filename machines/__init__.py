"""asyncmachine runtime."""
