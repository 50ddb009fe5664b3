"""What a public deployment needs: Space detection and the visitor's login (space), confinement of what visitors
name to what is theirs (confinement), Hub checkpoints checked before download (hub_budget), one disk budget over
what visitors leave (budget; quota for unpacked uploads), the fair training queue (training_queue), memory given
back (memory) and bounded readers of visitor files (safe_npz)."""
