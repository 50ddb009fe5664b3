"""What a public deployment needs: Space detection and the visitor's login (space), confinement of what visitors
name to what is theirs (confinement), disk budgets (quota) and bounded readers of visitor files (safe_npz).

Nothing is imported here: `space.configure_storage` must run before huggingface_hub is first imported."""
