"""Component tests: real gensim and/or a real S3 endpoint (a moto server), no Ray cluster."""
