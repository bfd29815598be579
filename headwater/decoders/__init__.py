"""Decoders: a whole batch of raw messages in, one Arrow table (plus rejects) out."""
