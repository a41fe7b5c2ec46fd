"""What a model reads about each document: training views, salient sentences, pseudo-queries.

* :mod:`~genir.views.pairs`: the (source text, document id) pairs a generative index trains on
  (first words and spans, rehearsal contents, pseudo-queries, real queries);
* :mod:`~genir.views.salience`: salient sentences by tf-idf (rehearsal contents, keyword queries);
* :mod:`~genir.views.querygen`: query generation behind one interface (a genir-trained generator,
  a Hugging Face doc2query checkpoint, or the keyword fallback), and training a generator.
"""
