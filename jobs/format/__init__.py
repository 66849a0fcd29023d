"""The store's model format without gensim: what a reader needs to read a version, and to write its vectors out.

- ``files``: ``params.json``, the ``.npy`` arrays and the vocabulary, read and checked, bounded before
  anything is allocated (the trainer's :mod:`jobs.training.serialize` reads through it too)
- ``ngrams``: FastText's character n-gram buckets, vectorized, equal to gensim's hashing
- ``word2vec``: the word2vec text and binary formats, written with gensim's bytes
- ``export``: a version's vectors as word2vec text or binary, Parquet, or (with gensim) gensim's own file

Nothing here imports gensim or Ray: ``pip install embedding-refresh`` (numpy, pyarrow) is enough.
"""
