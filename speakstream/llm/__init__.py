"""The language model: where its weights come from, loading it, streaming replies, the models users pick."""
