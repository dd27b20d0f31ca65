"""SHOW: reflectivity maps with outlines (:mod:`.plot`, :mod:`.outlines`) and the one-file HTML
report (:mod:`.report`). Functions here draw results that other layers computed."""
