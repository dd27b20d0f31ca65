"""SCORE: verification metrics with the one table of scores (:mod:`.metrics`), same-size
baselines (:mod:`.baselines`) and the held-out evaluation of a model (:mod:`.evaluate`)."""
