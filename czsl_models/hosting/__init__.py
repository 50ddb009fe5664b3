"""What a public deployment needs: Space detection and the visitor's login (space), confinement of what visitors
name to what is theirs (confinement), disk budgets (quota) and bounded readers of visitor files (safe_npz)."""
