"""Training: the only package that imports gensim.

- ``model``: creating, loading, growing the vocabulary of, training and saving a gensim model
- ``serialize``: the store's model format, loadable without unpickling (``.npy``, Parquet, JSON)
- ``trainer``: the training actor: spool the token stream, update the vocabulary, train, save, upload
- ``evaluate``: the quality gate that compares a candidate with its parent
"""
