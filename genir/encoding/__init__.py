"""Text encoding shared by every layer that needs vectors or encoder states: the pretrained text
encoder (:mod:`~genir.encoding.encoder`), its row banks on disk (:mod:`~genir.encoding.row_bank`),
work sharded over devices (:mod:`~genir.encoding.sharded`) and document embeddings stored in an
index folder (:mod:`~genir.encoding.stored`). Stands on nothing of the retrieval harness."""
