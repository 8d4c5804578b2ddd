"""3-2-1: every snapshot copied to the further destinations of ATLAS_COPIES, each copy
read back where it lies, retried until it is, and pruned by each destination's own
retention (`copier` does the I/O, `plan` holds the rules)."""
