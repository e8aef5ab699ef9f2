"""Privacy evidence: the candidate-set attack, the privacy–utility curve and the per-step RDP check.
Run them all with `make eval`; the unit tests exercise each on a tiny model."""
