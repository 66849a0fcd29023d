"""Training: the only package that imports gensim.

- ``model``: creating, loading, growing the vocabulary of, training and saving a gensim model
- ``serialize``: the store's model format, loadable without unpickling (``.npy``, Parquet, JSON)
- ``spool``: the spooled corpus, written in whole batches of gensim's file reader
- ``epochs``: exact multi-threaded epochs over the spool (gensim's per-thread loops), counted
- ``trainer``: the training actor: spool the token stream, update the vocabulary, train, save, upload
- ``parent``: the parent version fetched, loaded and measured on the trainer's node while the corpus streams in
- ``memory``: the actor's peak memory phase by phase
- ``evaluate``: the quality gate's measurements of a candidate against its parent
- ``gate``: the quality gate's decisions: each check's band, the lineage's overlap history
- ``upkeep``: one refresh's vocabulary step for a long-lived lineage: decay, grow, cap (``prune``)
- ``prune``: removing words from a trainable model
- ``freeze``: lock factors that keep the parent's words' vectors fixed while new words learn
- ``drift``: how far the words a candidate shares with its parent moved
"""
