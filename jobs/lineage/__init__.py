"""What a lineage carries from version to version besides the model itself.

- ``ledger``: which partitions each version consumed (exactly-once selection of new partitions)
- ``counts``: the remembered counts of words still under ``min_count``
- ``standing``: the words' decayed counts, by which ``--max-vocab`` prunes
- ``replay``: the optional reservoir of old sentences mixed into updates
"""
